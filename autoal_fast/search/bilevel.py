"""The first-order bi-level search of one AL round (docs/method.md, steps 2 and 7).

Private worker: inputs are validated by ``AutoAL.fit``. Everything here works on
tensors already on the search device: half A (``x_a``, ``y_a``) trains FitNet, half B
(``x_b``, ``y_b``) with its candidate inputs (computed once per split, before this is
called) trains SearchNet and the loss-prediction head.

One alternating step, on one sample order ``idx`` of B shared by every tensor in it:
1. FitNet forward on B: per-sample loss ``l(x)`` (kept with its graph).
2. SearchNet forward: weights W, predicted loss; aggregated score ``a``; soft top-k
   ``s`` with ``sum(s) = k_b``.
3. SearchNet + loss head step: minimise ``-lift + count_weight * L_re + rank_weight *
   L_rank`` where ``lift = (sum s l / k_b) / mean(l)`` (the mean FitNet loss of the soft
   selection relative to B's mean: scale-free, so it does not fade as FitNet's loss falls),
   ``L_re`` the count penalty on SearchNet's threshold mask and ``L_rank`` the
   learning-loss ranking loss of the loss head against ``l`` (detached).
4. FitNet step: minimise ``CE(A batch) + mean(s.detach() * l)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .relax import aggregate, count_penalty, ranking_loss, soft_topk

__all__ = ["SearchConfig", "FitReport", "pretrain_fitnet", "alternate", "selection_value", "sample_values",
           "input_norm_scale", "influence_values", "judged_values", "relative_mean_value", "spread_value", "relative_selection_value", "candidate_values",
           "effect_credit"]


@dataclass
class SearchConfig:
    """Settings of the search; see ``AutoAL`` for what each means and why its default."""

    pretrain_steps: int = 200
    search_steps: int = 400
    batch_size: int = 1024
    temperature: float = 0.05
    theta: float = 0.5
    rank_mix: float = 0.1
    count_weight: float = 0.1
    rank_weight: float = 1.0
    rank_margin: float = 1.0
    entropy_weight: float = 0.0
    #: "max_loss" (the first build: put the selection on FitNet's hardest samples) or
    #: "value" (the bi-level problem taken literally: FitNet's loss on the judge set C
    #: after one differentiable update on the soft selection of B with its labels).
    objective: str = "max_loss"
    #: SGD step size and number of unrolled steps of the differentiable FitNet update.
    inner_lr: float = 0.1
    inner_steps: int = 1
    #: With one inner step: use its first-order (small step) form, the per-sample
    #: alignment ``v_i = <grad l_i, grad L_C>`` computed once per split with FitNet
    #: fixed, so that a step costs no double backward (see ``sample_values``).
    first_order: bool = True
    #: With the first-order value: "dot" (the alignment), "cosine" (its cosine; see
    #: ``sample_values``), "influence" or "unit_input" (see ``judged_values``).
    sample_value: str = "dot"
    #: The first-order value's unit: "mean" (``relative_mean_value``, the selection's mean
    #: value over |mean value of B|; 1 = uniform) or "spread" (``spread_value``: how far the
    #: selection's mean value lies above B's, in units of B's standard deviation; 0 = uniform).
    value_scale: str = "mean"
    #: Prior strategy weights (K,) that SearchNet starts from and is pulled back to by
    #: ``entropy_weight * KL(W(x) || prior)``; None is uniform (then the term is the
    #: entropy bonus of the first build, up to a constant).
    prior: tuple | None = None
    soft_topk_iters: int | None = None
    #: Credit of each candidate from the real pool (K,), ``effect_credit`` accumulated
    #: over rounds, and its weight: SearchNet's objective gains
    #: ``credit_weight * <mean W, credit>``. None: no such term.
    credit: tuple | None = None
    credit_weight: float = 0.0
    #: The simulation's evidence of the earlier rounds (K,): the mean over them of each
    #: candidate's ``effect_credit`` on its round's B (how far the mean value of its picks
    #: lay above B's mean, in units of B's spread), and the share of the rounds it stands
    #: for. With the first-order value objective it becomes ``(1 - memory_share) * this
    #: round's value + memory_share * <mean W, sign(mean v) + memory * std(v) / |mean v|>``
    #: (the earlier rounds' evidence in this round's units, v being B's sample values): the
    #: value averaged over every round's B. None: this round's B alone.
    memory: tuple | None = None
    memory_share: float = 0.0
    #: Gradients of each net are clipped to this 2-norm (the reported norms are
    #: the ones before clipping). Without it the loss head's piecewise-linear
    #: ranking loss can feed back through the shared trunk and diverge under
    #: SGD with momentum (seen on a 20-label digits round: inf by step 97).
    max_grad_norm: float = 10.0


@dataclass
class FitReport:
    """What one ``AutoAL.fit`` did. Per-step lists are over the alternating steps.

    Attributes
    ----------
    pretrain_loss : list of float
        FitNet cross-entropy on half A during pre-training.
    search_loss, lift, count_penalty, rank_loss, fit_loss : list of float
        SearchNet's total loss; the lift it maximises (mean FitNet loss of the soft
        selection over B's mean; 1 = no better than uniform); ``value``: with
        ``objective="value"``, the drop of the judge set's loss after FitNet's update on
        the soft selection, over the drop after the same update on a uniform selection
        of the same size (1 = no better than uniform); the count penalty; the
        loss head's ranking loss; FitNet's loss.
    grad_norm_search, grad_norm_loss_head, grad_norm_fit : list of float
        Gradient 2-norms of SearchNet (trunk + weight head), the loss-prediction head
        and FitNet at each step.
    soft_count : list of float
        ``sum_x sigmoid(a(x)/T)``: how many samples SearchNet's own threshold selects.
    topk_count : list of float
        ``sum_x s(x)`` of the soft top-k (equals the target up to the solver's precision).
    target_count : float
        ``k_b``, the soft count asked of each step (t times the batch size).
    weight_totals : dict
        Strategy name -> sum over B of its weight W_k(x) after the search (sums to |B|).
    weight_share : dict
        The same, divided by |B| (the data of the paper's figure of weights over rounds).
    real_credit : dict
        With ``credit="effect"`` and the newly labelled samples given to ``fit``: strategy
        name -> ``effect_credit`` of last round's real batch (NaN for a candidate that
        picked none of it): the evidence this round added.
    credit : dict
        Strategy name -> the credit accumulated over rounds that the search used.
    n_new : int
        Newly labelled samples the credit was measured on (0: none).
    margins : dict
        How last round's batch looks now against the pool (issue 11 item 5): mean top-2
        softmax margins (1 = certain). "fitnet_batch": this round's FitNet on the batch's
        rows (it has not trained on them, but the task model whose embeddings it reads
        has); "fitnet_pool": the same FitNet on up to 4096 pool rows (set by ``query``);
        "task_batch_at_query": the task model on the batch when it was queried, as part of
        the pool; "task_batch_now": this round's task model on it; "task_pool": this
        round's task model on the pool rows (set by ``query``). Empty before a batch is
        named by ``new=``; the pool's entries only on one process.
    candidate_value : dict
        With ``objective="value"``: strategy name -> the value of its own hard picks on
        B (C's loss drop after FitNet's update on them, over the drop for a uniform
        selection of the same size), measured after the search: what the simulation
        says of each candidate, for the fidelity report.
    memory : dict
        With ``memory="rounds"``: strategy name -> its evidence averaged over the earlier
        rounds that the search weighed (``AutoAL.memory_now``: ``effect_credit`` of its picks
        on each round's B, in units of B's spread; empty in the first round).
    n_a, n_b, k_b, ratio : sizes of the halves, B's selection size ceil(t |B|) and t.
    times : dict
        Seconds per phase (split, pretrain, candidates, search).
    """

    pretrain_loss: list = field(default_factory=list)
    search_loss: list = field(default_factory=list)
    lift: list = field(default_factory=list)
    value: list = field(default_factory=list)
    count_penalty: list = field(default_factory=list)
    rank_loss: list = field(default_factory=list)
    fit_loss: list = field(default_factory=list)
    grad_norm_search: list = field(default_factory=list)
    grad_norm_loss_head: list = field(default_factory=list)
    grad_norm_fit: list = field(default_factory=list)
    soft_count: list = field(default_factory=list)
    topk_count: list = field(default_factory=list)
    target_count: float = 0.0
    weight_totals: dict = field(default_factory=dict)
    weight_share: dict = field(default_factory=dict)
    candidate_value: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    sample_values: object = None
    real_credit: dict = field(default_factory=dict)
    credit: dict = field(default_factory=dict)
    n_new: int = 0
    margins: dict = field(default_factory=dict)
    n_a: int = 0
    n_b: int = 0
    k_b: int = 0
    ratio: float = 0.0
    strategies: tuple = ()
    times: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _batch(n: int, batch_size: int, gen: torch.Generator, device) -> torch.Tensor | None:
    """A random batch of indices, or None for the whole set (no indexing needed)."""
    if n <= batch_size:
        return None
    return torch.randperm(n, generator=gen)[:batch_size].to(device)


def pretrain_fitnet(fitnet, opt_fit, x_a, y_a, steps: int, batch_size: int, gen) -> list:
    """FitNet on half A with cross-entropy; returns the per-step losses."""
    fitnet.train()
    losses = []
    for _ in range(steps):
        idx = _batch(x_a.shape[0], batch_size, gen, x_a.device)
        xa, ya = (x_a, y_a) if idx is None else (x_a[idx], y_a[idx])
        loss = F.cross_entropy(fitnet(xa), ya)
        opt_fit.zero_grad(set_to_none=True)
        loss.backward()
        opt_fit.step()
        losses.append(loss.detach())
    return [float(v) for v in torch.stack(losses).cpu()] if losses else []


def selection_value(fitnet, s, x_b, y_b, x_c, y_c, inner_lr: float, inner_steps: int = 1,
                    x_a=None, y_a=None) -> tuple:
    """Value of a soft selection of B: how much FitNet's loss on C drops after it learns it.

    FitNet's parameters theta are held fixed (no gradient to them); ``inner_steps`` SGD
    steps of size ``inner_lr`` on ``CE(A) + sum_i s_i l_i(theta) / sum_i s_i`` (the A term
    only when ``x_a`` is given) give theta'(s), built with ``create_graph`` so that
    ``L_C(theta'(s))`` is differentiable in ``s``. With one step its gradient is the
    hypergradient of Ren et al. (2018) and GLISTER (Killamsetty et al., 2021):
    ``dL_C/ds_i = -inner_lr / sum(s) * <grad l_i(theta), grad L_C(theta')>`` (+ the
    normalisation's term), the alignment of the sample's loss gradient with the judge's.

    FitNet runs in eval mode here (no dropout noise in the value). Returns
    ``(gain, base)``: ``gain = L_C(theta) - L_C(theta'(s))`` (a differentiable scalar)
    and ``base = L_C(theta)`` (no gradient).
    """
    from torch.func import functional_call

    was_training = fitnet.training
    fitnet.eval()
    params = {n: p.detach().requires_grad_(True) for n, p in fitnet.named_parameters()}
    buffers = dict(fitnet.named_buffers())
    with torch.no_grad():
        base = F.cross_entropy(functional_call(fitnet, (params, buffers), (x_c,)), y_c)
    cur = params
    for _ in range(inner_steps):
        l_b = F.cross_entropy(functional_call(fitnet, (cur, buffers), (x_b,)), y_b, reduction="none")
        inner = (s * l_b).sum() / s.sum().clamp_min(1e-12)
        if x_a is not None:
            inner = inner + F.cross_entropy(functional_call(fitnet, (cur, buffers), (x_a,)), y_a)
        grads = torch.autograd.grad(inner, list(cur.values()), create_graph=True)
        cur = {n: p - inner_lr * g for (n, p), g in zip(cur.items(), grads)}
    judged = F.cross_entropy(functional_call(fitnet, (cur, buffers), (x_c,)), y_c)
    fitnet.train(was_training)
    return base - judged, base


def sample_values(fitnet, x_b, y_b, x_c, y_c, chunk: int = 256, cosine: bool = False) -> torch.Tensor:
    """Per-sample value ``v_i = <grad_theta l_i(theta), grad_theta L_C(theta)>`` of B, shape (n_b,).

    The first-order form of ``selection_value`` with one step: as ``inner_lr -> 0``,
    ``gain(s) / inner_lr -> sum_i s_i v_i / sum_i s_i``, the mean value of the
    selection (GLISTER's and Ren et al.'s alignment of a sample's loss gradient with
    the judge's). FitNet in eval mode, its parameters untouched; per-sample gradients
    by ``torch.func.vmap(grad)``, ``chunk`` samples at a time (memory: chunk x the
    number of FitNet's parameters). ``cosine``: the alignment's cosine instead,
    ``v_i / (||grad l_i|| ||grad L_C||)`` (0 for a zero gradient), which leaves out how large a
    sample's gradient is (how badly FitNet fits it) and keeps only whether it points where the
    judge's does.
    """
    from torch.func import functional_call, grad, vmap

    was_training = fitnet.training
    fitnet.eval()
    params = {n: p.detach() for n, p in fitnet.named_parameters()}
    buffers = {n: b.detach() for n, b in fitnet.named_buffers()}
    with torch.enable_grad():
        pc = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        g_c = torch.autograd.grad(F.cross_entropy(functional_call(fitnet, (pc, buffers), (x_c,)), y_c),
                                  list(pc.values()))

    def one(p, x, y):
        out = functional_call(fitnet, (p, buffers), (x[None],))
        return F.cross_entropy(out, y[None])

    norm_c = torch.sqrt(sum(gc.pow(2).sum() for gc in g_c)) if cosine else None
    per_grad = vmap(grad(one), in_dims=(None, 0, 0))
    out = torch.empty(x_b.shape[0], dtype=torch.float32, device=x_b.device)
    for lo in range(0, x_b.shape[0], chunk):
        g = per_grad(params, x_b[lo:lo + chunk], y_b[lo:lo + chunk])
        v = sum((gi.reshape(gi.shape[0], -1) * gc.reshape(1, -1)).sum(1) for gi, gc in zip(g.values(), g_c))
        if cosine:
            norm_i = torch.sqrt(sum(gi.reshape(gi.shape[0], -1).pow(2).sum(1) for gi in g.values()))
            denom = norm_i * norm_c
            v = torch.where(denom > 0, v / denom.clamp_min(torch.finfo(v.dtype).tiny), torch.zeros_like(v))
        out[lo:lo + chunk] = v.to(torch.float32)
    fitnet.train(was_training)
    return out


def influence_values(fitnet, x_a, y_a, x_b, y_b, x_c, y_c, damping: float = 0.01, chunk: int = 256) -> torch.Tensor:
    """Per-sample value of B by influence on C through FitNet's output layer, shape (n_b,).

    ``v_i = <grad l_i, H^-1 grad L_C>`` with the gradients and H, the Hessian of FitNet's
    mean loss on A, taken in the output layer's weights and bias (FitNet's penultimate
    features held fixed): to first order, how much C's loss drops when FitNet, retrained
    to its optimum on A, also learns sample i (the influence function of Koh and Liang
    2017 on the last layer, a convex softmax regression). Against ``sample_values``'
    one-step alignment it discounts what A has already taught: a gradient along
    directions A covers well (high curvature) is worth less than one along directions A
    has not seen. ``damping`` (a fraction of H's mean diagonal, added to it) keeps H
    invertible where A spans too few directions (fewer samples than weights).
    FitNet in eval mode; computed in float64.
    """
    was_training = fitnet.training
    fitnet.eval()
    with torch.no_grad():
        def parts(x, y):  # [h, 1], softmax, one-hot residual p - e_y
            h = fitnet.mc_prefix(x)
            p = torch.softmax(fitnet.out(h).to(torch.float64), 1)
            h = h.to(torch.float64)
            phi = torch.cat([h, torch.ones_like(h[:, :1])], 1)
            r = p.clone()
            r[torch.arange(y.shape[0], device=y.device), y] -= 1.0
            return phi, p, r

        phi_a, p_a, _ = parts(x_a, y_a)
        n_cls, d = p_a.shape[1], phi_a.shape[1]
        # H[(c, a), (e, b)] = mean_j (diag p_j - p_j p_j^T)[c, e] phi_j[a] phi_j[b]
        h4 = torch.zeros(n_cls * n_cls, d * d, dtype=torch.float64, device=phi_a.device)
        for lo in range(0, phi_a.shape[0], chunk):
            pj, fj = p_a[lo:lo + chunk], phi_a[lo:lo + chunk]
            sj = torch.diag_embed(pj) - pj[:, :, None] * pj[:, None, :]
            h4 += sj.reshape(sj.shape[0], -1).T @ (fj[:, :, None] * fj[:, None, :]).reshape(fj.shape[0], -1)
        hess = (h4.reshape(n_cls, n_cls, d, d).permute(0, 2, 1, 3).reshape(n_cls * d, n_cls * d)
                / max(phi_a.shape[0], 1))
        lam = damping * float(torch.diagonal(hess).mean().clamp_min(1e-12))
        hess.diagonal().add_(lam)
        phi_c, _, r_c = parts(x_c, y_c)
        g_c = (r_c.T @ phi_c / max(phi_c.shape[0], 1)).reshape(-1)  # mean gradient of C's loss, (C*d,)
        v = torch.linalg.solve(hess, g_c).reshape(n_cls, d)
        phi_b, _, r_b = parts(x_b, y_b)
        out = ((phi_b @ v.T) * r_b).sum(1)
    fitnet.train(was_training)
    return out.to(torch.float32)


def input_norm_scale(fitnet, x_b) -> torch.Tensor:
    """Per-sample factor ``mean_j ||z_j|| / ||z_i||`` over B, shape (n_b,), where ``z`` is
    the input as FitNet's first layer sees it (after its backbone and standardisation): how
    far sample i lies from the features' mean, relative to B's typical distance. 1 where a
    norm is 0 or B's norms are all 0 (nothing to rescale)."""
    with torch.no_grad():
        if x_b.shape[0] == 0:
            return torch.ones(0, dtype=torch.float32, device=x_b.device)
        z = fitnet.norm(fitnet.backbone(x_b)).reshape(x_b.shape[0], -1).to(torch.float64)
        r = torch.linalg.vector_norm(z, dim=1)
        ok = r > 0  # then B's mean norm is > 0 too
        return torch.where(ok, r.mean() / r.clamp_min(torch.finfo(r.dtype).tiny), torch.ones_like(r)).to(torch.float32)


def judged_values(kind: str, fitnet, x_a, y_a, x_b, y_b, x_c, y_c) -> torch.Tensor:
    """B's per-sample values under ``SearchConfig.sample_value`` ``kind``: "dot" and
    "cosine" (``sample_values``), "influence" (``influence_values``, which needs A),
    "unit_input": "dot" times ``input_norm_scale`` (the alignment per unit of the sample's
    distance from the features' mean, so that far-out inputs, whose gradients are large
    because the input is, are not valued for it; what the sample's error contributes stays)."""
    if kind == "influence":
        return influence_values(fitnet, x_a, y_a, x_b, y_b, x_c, y_c)
    v = sample_values(fitnet, x_b, y_b, x_c, y_c, cosine=kind == "cosine")
    if kind == "unit_input":
        v = v * input_norm_scale(fitnet, x_b).to(v.device)
    return v


def relative_mean_value(s: torch.Tensor, v: torch.Tensor, count=None) -> torch.Tensor:
    """First-order relative value of selection(s) ``s`` ((n,) or (n, K)) given per-sample
    values ``v`` (n,): ``v @ s / count / |mean(v)|`` (1 = no better than uniform);
    ``count`` defaults to ``s.sum(0)``."""
    count = s.sum(0).clamp_min(1e-12) if count is None else count
    return (v @ s) / (count * v.mean().abs().clamp_min(1e-12))


def spread_value(s: torch.Tensor, v: torch.Tensor, count=None) -> torch.Tensor:
    """First-order value of selection(s) ``s`` ((n,) or (n, K)) in units of the spread of the
    per-sample values ``v`` (n,): ``(v @ s / count - mean(v)) / std(v)`` (0 = no better than
    uniform; 0 where all values are equal). Bounded where ``relative_mean_value``, a ratio to the
    mean value, is not when that mean is near 0. ``count`` defaults to ``s.sum(0)``."""
    count = s.sum(0).clamp_min(1e-12) if count is None else count
    sd = _spread(v)
    return (v @ s / count - v.mean()) / sd.clamp_min(1e-30) * (sd > 0)


def _spread(v: torch.Tensor) -> torch.Tensor:
    """Population std of ``v``, 0 where it is within rounding of equal values (a few ulps of
    its largest magnitude), so that a z-score of equal values is 0 rather than rounding noise."""
    if v.numel() < 2:
        return v.new_zeros(())
    sd = v.std(unbiased=False)
    tiny = 16 * torch.finfo(v.dtype).eps * v.abs().max()
    return torch.where(sd > tiny, sd, torch.zeros_like(sd))


def relative_selection_value(fitnet, s, x_b, y_b, x_c, y_c, inner_lr: float, inner_steps: int = 1):
    """``selection_value`` of ``s`` over |that of a uniform selection of the same size|
    (1 = no better than uniform); differentiable in ``s``."""
    gain, _ = selection_value(fitnet, s, x_b, y_b, x_c, y_c, inner_lr, inner_steps)
    u = torch.full_like(s, float(s.detach().sum()) / s.numel())
    gain_u, _ = selection_value(fitnet, u, x_b, y_b, x_c, y_c, inner_lr, inner_steps)
    return gain / gain_u.detach().abs().clamp_min(1e-8)


def candidate_values(fitnet, picks_b, x_b, y_b, x_c, y_c, inner_lr: float, inner_steps: int = 1,
                     values=None) -> list:
    """``selection_value`` of each column of ``picks_b`` (n_b, K) as a hard selection,
    over that of a uniform selection of the same size; a list of K floats. With
    ``values`` (``sample_values`` of B): the first-order form, the mean value of each
    candidate's picks over |mean value of B|."""
    if values is not None:
        p = picks_b.to(values.dtype)
        return relative_mean_value(p, values, p.sum(0).clamp_min(1)).tolist()
    with torch.enable_grad():
        return [float(relative_selection_value(fitnet, picks_b[:, k].to(torch.float32), x_b, y_b, x_c, y_c,
                                               inner_lr, inner_steps).detach())
                for k in range(picks_b.shape[1])]


def effect_credit(values_new: torch.Tensor, picks_new: torch.Tensor) -> tuple:
    """What last round's real batch says of each candidate: ``(credit, counts)``, each (K,).

    ``values_new`` (m,): the per-sample value (``sample_values``) of the m samples
    queried last round, now labelled, under a FitNet that has not trained on them;
    ``picks_new`` (m, K) in {0, 1}: which candidates had picked each of them in that
    query. ``credit[k] = (mean of v over k's picks - mean of v) / std(v)``: how much more
    (or less) the samples candidate k recommended were worth than the batch's average
    sample, in units of the batch's spread (scale-free, and bounded where a ratio to the
    mean would not be: the mean value can be near 0); 0 when all values are equal, NaN
    where k picked none of them. ``counts[k]``: how many of them k had picked.
    """
    v = values_new.to(torch.float64)
    p = picks_new.to(torch.float64)
    counts = p.sum(0)
    sd = _spread(v)
    mean_k = (v @ p) / counts.clamp_min(1)
    z = (mean_k - v.mean()) / sd if float(sd) > 0 else torch.zeros_like(mean_k)
    out = torch.where(counts > 0, z, torch.full_like(z, float("nan")))
    return out.to(values_new.dtype), counts.to(values_new.dtype)


def _prior_penalty(w: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    """mean_x KL(W(x) || prior); with a uniform prior, minus the mean entropy (+ const)."""
    wl = w * torch.log(w.clamp_min(1e-12))
    if prior is None:
        return wl.sum(1).mean()
    return (wl - w * torch.log(prior.clamp_min(1e-12))).sum(1).mean()


def alternate(fitnet, searchnet, opt_fit, opt_search, x_a, y_a, x_b, y_b, cand_b, ranks_b, picks_b,
              ratio: float, cfg: SearchConfig, gen: torch.Generator, report: FitReport,
              x_c=None, y_c=None, values=None) -> None:
    """The alternating steps; appends per-step figures to ``report``.

    cand_b: (n_b, 2K) SearchNet's candidate inputs; ranks_b, picks_b: (n_b, K).
    ``objective="value"`` needs the judge set (``x_c``, ``y_c``); FitNet's own step is
    then CE on A only, so that B and C stay unseen by the model that judges them.
    ``values`` (n_b,): B's per-sample values for the first-order value objective, instead
    of ``sample_values`` of this FitNet on C (``AutoAL(n_splits=...)`` averages judges).
    """
    value_mode = cfg.objective == "value"
    first_order = value_mode and cfg.first_order and cfg.inner_steps == 1
    if values is not None and not first_order:
        raise ValueError("values are for the first-order value objective only")
    fitnet.train()
    searchnet.train()
    n_b = x_b.shape[0]
    if value_mode and x_c is None:
        raise ValueError("objective='value' needs the judge set x_c, y_c")
    prior = None if cfg.prior is None else torch.as_tensor(cfg.prior, dtype=torch.float32, device=x_b.device)
    credit = None if cfg.credit is None or not cfg.credit_weight else \
        torch.as_tensor(cfg.credit, dtype=torch.float32, device=x_b.device)
    memory = None if cfg.memory is None or not cfg.memory_share else \
        torch.as_tensor(cfg.memory, dtype=torch.float32, device=x_b.device)
    if memory is not None and not first_order:
        raise ValueError("memory is for the first-order value objective (it averages the value over rounds)")
    search_params = searchnet.search_parameters()
    head_params = list(searchnet.loss_head.parameters())
    fit_params = list(fitnet.parameters())
    rec = {k: [] for k in ("search_loss", "lift", "value", "count_penalty", "rank_loss", "fit_loss",
                           "grad_norm_search", "grad_norm_loss_head", "grad_norm_fit",
                           "soft_count", "topk_count")}
    k_full = None
    v_all = None
    if first_order:
        v_all = values if values is not None else judged_values(cfg.sample_value, fitnet, x_a, y_a, x_b, y_b,
                                                                x_c, y_c)
    report.sample_values = v_all
    if memory is not None and cfg.value_scale == "mean":  # the earlier rounds' evidence in this round's units
        v_mean = v_all.mean()
        scale = v_all.std(unbiased=False) / v_mean.abs().clamp_min(1e-12)
        memory = torch.sign(v_mean) + memory * scale
    for _ in range(cfg.search_steps):
        idx = _batch(n_b, cfg.batch_size, gen, x_b.device)
        if idx is None:  # one sample order for every tensor of this step
            xb, yb, cb, rb, pb = x_b, y_b, cand_b, ranks_b, picks_b
            vb = v_all
        else:
            xb, yb, cb, rb, pb = x_b[idx], y_b[idx], cand_b[idx], ranks_b[idx], picks_b[idx]
            vb = None if v_all is None else v_all[idx]
        nb = xb.shape[0]
        k_b = min(max(ratio * nb, 0.5), nb - 0.5)
        k_full = k_b
        # 1. FitNet per-sample loss on this batch of B
        loss_f = F.cross_entropy(fitnet(xb), yb, reduction="none")
        l_det = loss_f.detach()
        # 2. SearchNet
        w, pred_loss = searchnet(xb, cb)
        a = aggregate(w, pb, rb, cfg.theta, cfg.rank_mix)
        s = soft_topk(a, k_b, cfg.temperature, n_iter=cfg.soft_topk_iters)
        lift = (s * l_det).sum() / (k_b * l_det.mean().clamp_min(1e-12))
        if first_order:  # mean value of the soft selection over |mean value of the batch| (or over its spread)
            value = objective = (spread_value if cfg.value_scale == "spread" else relative_mean_value)(s, vb, k_b)
        elif value_mode:
            ic = _batch(x_c.shape[0], cfg.batch_size, gen, x_c.device)
            xc, yc = (x_c, y_c) if ic is None else (x_c[ic], y_c[ic])
            value = objective = relative_selection_value(fitnet, s, xb, yb, xc, yc, cfg.inner_lr, cfg.inner_steps)
        else:
            value, objective = torch.zeros((), device=x_b.device), lift
        if memory is not None:  # the value over every round's B: the earlier ones by their candidates
            objective = (1.0 - cfg.memory_share) * objective + cfg.memory_share * (w.mean(0) * memory).sum()
        pen, soft_count = count_penalty(a, k_b, cfg.temperature)
        rank = ranking_loss(pred_loss, l_det, cfg.rank_margin)
        loss_s = -objective + cfg.count_weight * pen + cfg.rank_weight * rank
        if credit is not None:  # the real pool's evidence on the candidates, over the rounds
            loss_s = loss_s - cfg.credit_weight * (w.mean(0) * credit).sum()
        if cfg.entropy_weight:
            # KL(W(x) || prior): keeps the weights from collapsing on one strategy
            # without evidence (with no prior: the entropy bonus)
            loss_s = loss_s + cfg.entropy_weight * _prior_penalty(w, prior)
        opt_search.zero_grad(set_to_none=True)
        loss_s.backward()
        gs, gh = _grad_norm(search_params), _grad_norm(head_params)
        torch.nn.utils.clip_grad_norm_(search_params, cfg.max_grad_norm)
        torch.nn.utils.clip_grad_norm_(head_params, cfg.max_grad_norm)
        opt_search.step()
        # 4. FitNet step: CE on an A batch (+ the selection-weighted loss on B for max_loss);
        # none in the first-order value mode, whose sample values are those of FitNet as it is
        if first_order:
            loss_fit, gf = l_det.mean(), torch.zeros((), device=x_b.device)
        else:
            ia = _batch(x_a.shape[0], cfg.batch_size, gen, x_a.device)
            xa, ya = (x_a, y_a) if ia is None else (x_a[ia], y_a[ia])
            loss_fit = F.cross_entropy(fitnet(xa), ya)
            if not value_mode:
                loss_fit = loss_fit + (s.detach() * loss_f).mean()
            opt_fit.zero_grad(set_to_none=True)
            loss_fit.backward()
            gf = _grad_norm(fit_params)
            torch.nn.utils.clip_grad_norm_(fit_params, cfg.max_grad_norm)
            opt_fit.step()
        for key, v in (("search_loss", loss_s), ("lift", lift), ("value", value), ("count_penalty", pen),
                       ("rank_loss", rank), ("fit_loss", loss_fit), ("grad_norm_search", gs),
                       ("grad_norm_loss_head", gh), ("grad_norm_fit", gf),
                       ("soft_count", soft_count), ("topk_count", s.sum())):
            rec[key].append(v.detach().to(torch.float32).reshape(()))
    for key, vals in rec.items():  # one device->host copy per series, not one per step
        getattr(report, key).extend(torch.stack(vals).cpu().tolist() if vals else [])
    report.target_count = float(k_full) if k_full is not None else float(ratio * n_b)


class Timer:
    def __init__(self):
        self.times = {}

    def __call__(self, name):
        timer = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.t0

        return _T()
