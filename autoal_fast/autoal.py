"""AutoAL: differentiable query-strategy search (Wang, Zhan, Huang, ICML 2025).

The method is docs/method.md's, with its fixes of the reference code: candidate scores
computed once per split (on half B, with a FitNet trained on half A) and once per
query; one sample order per optimisation step; a soft top-k with an exact implicit
gradient instead of a saturated sigmoid; a count regulariser with a gradient; the
loss-prediction head's ranking loss inside SearchNet's objective; eval-mode, no-grad
pool scoring that leaves BatchNorm statistics alone; everything seeded; any pool size,
feature size and number of candidates; CPU or CUDA.
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._validation import (FLOAT32_MAX, check_bool, check_device, check_finite_rows, check_int, check_k,
                          is_array, native_array)
from .pool import PoolOutputs
from .search.bilevel import (FitReport, SearchConfig, Timer, alternate, candidate_values, effect_credit,
                             judged_values, pretrain_fitnet, sample_values)
from .search.candidates import Candidates, compute_candidates
from .search.nets import FitNet, SearchNet
from .search.relax import aggregate
from .strategies import AUTOAL_CANDIDATES, MC_BASED, check_pool, names as strategy_names
from .streaming import OutputSink, StreamPlan

__all__ = ["AutoAL", "QueryResult"]

_STATE_VERSION = 1


@dataclass
class QueryResult:
    """What ``AutoAL.query`` chose and why.

    Attributes
    ----------
    indices : torch.LongTensor of shape (k,)
        Unique indices into the pool, best first (ties to the lower index); global
        indices into the concatenated pool when the query ran sharded.
    scores : torch.Tensor of shape (n_pool,), float32
        The aggregated score ``a(x) = sum_k W_k(x) ((1 - m) S_k(x) + m r_k(x) - theta)``.
    weights : torch.Tensor of shape (n_pool, n_strategies), float32
        SearchNet's per-sample strategy weights (rows sum to 1).
    strategies : tuple of str
        Column names of ``weights``.
    mc_source : str or None
        Where the stochastic predictions of var_ratio/bald/mean_std came from:
        "mc_logits", "head", "fitnet" (AutoAL's FitNet as MC-dropout head) or None.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    strategies: tuple
    mc_source: str | None = None

    def weight_share(self) -> dict:
        """Mean weight of each strategy over the pool."""
        m = self.weights.mean(0).tolist()
        return dict(zip(self.strategies, m))


def _derive_seed(base: int, *salt: int) -> int:
    x = int(base) & 0xFFFFFFFFFFFF
    for s in salt:
        x = (x * 1_000_003 + int(s) * 7919 + 12345) % (2**61 - 1)
    return x


def _check_real(value, name, caller, low=None, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number ({caller}); got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low} ({caller}); got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high} ({caller}); got {value!r}")
    return float(value)


def _as_prior(prior, strategies, caller):
    """None (uniform), "auto", a candidate's name, or {name: weight} / a length-K sequence of
    non-negative weights -> a tuple of K positive floats summing to 1 (a floor of 1e-3
    keeps every strategy's log-weight finite), or None."""
    if prior is None:
        return None
    if isinstance(prior, str) and prior == "auto":  # margin + badge, those of them that are candidates
        prior = "+".join(s for s in ("margin", "badge") if s in strategies) or None
        if prior is None:
            return None
    K = len(strategies)
    if isinstance(prior, str):  # "margin" or "margin+badge" (equal shares)
        prior = {name: 1.0 for name in prior.split("+")}
    if isinstance(prior, dict):
        bad = [k for k in prior if k not in strategies]
        if bad:
            raise ValueError(f"prior names {bad} that are not among strategies={list(strategies)} ({caller})")
        vals = [float(prior.get(k, 0.0)) for k in strategies]
    else:
        vals = [float(v) for v in prior]
        if len(vals) != K:
            raise ValueError(f"prior must have one weight per strategy (K={K}) ({caller}); got {len(vals)}")
    if any(not math.isfinite(v) or v < 0 for v in vals) or sum(vals) <= 0:
        raise ValueError(f"prior weights must be finite, >= 0 and not all 0 ({caller}); got {vals}")
    tot = sum(vals)
    vals = [max(v / tot, 1e-3) for v in vals]
    tot = sum(vals)
    return tuple(v / tot for v in vals)


def _check_choice(value, name, choices, caller):
    """``value`` when it is one of ``choices``; else a ValueError naming them."""
    if value not in choices:
        raise ValueError(f"{name} must be {' or '.join(map(repr, choices))} ({caller}); got {value!r}")
    return value


def _check_flag(value, name, caller) -> bool:
    """A bool (numpy's too), or the ints 0 and 1; a string such as "False" raises."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value in (0, 1):
        return bool(value)
    return check_bool(value, name, caller)


def _as_labels(y, n: int, n_classes: int, caller: str) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        t = y
    elif is_array(y) or isinstance(y, (list, tuple)):
        arr = np.asarray(y)
        # negative strides / non-native byte order: one copy, as torch cannot view them
        t = torch.as_tensor(native_array(arr, "y", caller) if arr.dtype.kind in "iub" else arr)
    else:
        raise TypeError(f"y must be a torch.Tensor, numpy array or list of ints ({caller}); got {type(y).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels ({caller}); got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) like labeled.logits' rows ({caller}); got {tuple(t.shape)}")
    t = t.to(torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= n_classes:
        raise ValueError(
            f"y must hold labels in [0, n_classes={n_classes}) ({caller}), n_classes being "
            f"labeled.logits.shape[1]; got values in [{lo}, {hi}]"
        )
    return t


class AutoAL:
    """Automated active learning by differentiable query-strategy search.

    Each ``fit`` is one AL round's search on the labeled set: split it into halves A
    and B; train FitNet (a stand-in classifier over the embeddings) on A; compute every
    candidate strategy's picks and rank scores on B once, with FitNet; then alternate
    SearchNet (+ loss-prediction head) and FitNet steps (first order). ``query`` runs the
    candidates once on the pool with the task model's outputs, weighs them per sample
    with SearchNet and returns the top k. The nets carry over between rounds.

    Parameters
    ----------
    strategies : sequence of str, default=strategies.AUTOAL_CANDIDATES
        Candidate strategies (any of ``strategies.names()``, at least one). The default
        is the paper's seven plus badge, so that the default prior is among them (on
        digits, 5 paired seeds, the same search over the paper's seven with prior
        margin scored 0.0064 +- 0.0046 AUBC lower, 4/5 seeds).
    budget : int, default=None
        Default k of ``query`` / ``query_model``.
    device : str or torch.device, default=None
        Where the nets live; None: the labeled set's device at the first ``fit``. Pools
        on another device are read in chunks and each chunk copied here.
    seed : int, default=None
        Seeds the split, the nets' initialisation and dropout, the batches and the
        seeded candidates; None draws one from torch's global generator per round. The
        caller's global RNG state is left as it was.
    pretrain_steps : int, default=200
        FitNet steps on half A before the alternating phase (paper: 200).
    search_steps : int, default=400
        Alternating SearchNet / FitNet steps (paper: 400).
    fit_lr : float, default=5e-3
        FitNet's Adam learning rate.
    search_lr : float, default=0.05
        SearchNet's learning rate (SGD with momentum 0.9, as the paper uses SGD).
    search_optimizer : {"sgd", "adam"}, default="sgd"
    temperature : float, default=0.05
        T of the soft top-k and of the count mask; the aggregated score lies in
        [-theta, 1 - theta], so T=0.05 keeps a gradient on the samples near the cut.
    theta : float, default=0.5
        Selection threshold inside the aggregated score (the paper's theta).
    rank_mix : float, default=0.1
        Share of the continuous rank scores in the aggregated vote (0: picks only).
    count_weight : float, default=0.1
        Weight of the count regulariser.
    rank_weight : float, default=1.0
        Weight of the loss-prediction head's ranking loss.
    batch_size : int, default=None
        Samples per step from each half (the whole half when smaller); None: 256 on CPU
        (fit with 2k labeled, D=512: 6.3 s at 256 against 25.9 s at 1024 on this
        machine), 1024 on CUDA (launch-bound there, so larger batches are free).
    fit_hidden, search_hidden : int, default=128, 64
        Hidden widths of FitNet and SearchNet.
    dropout : float, default=0.2
        FitNet's dropout (it serves as the MC-dropout head on B).
    n_mc : int, default=10
        MC-dropout passes of FitNet for var_ratio/bald/mean_std on B.
    ratio : float, default=None
        Selection ratio t used in ``fit`` when ``fit`` is not told k and n_pool;
        None means 0.1. (``query_model`` always passes them.)
    min_ratio : float, default=0.1
        Floor on the ratio t used on half B: B's selection is ``ceil(max(t, min_ratio) |B|)``.
        The method's plain ``ceil(t |B|)`` is 1 sample when the labeled set is small
        and the pool large (t = 15/1700 on digits), which leaves the search nothing to
        learn from; measured on the digits AL loop (4 seeds, mean accuracy over 9
        rounds): 0.829 without the floor, 0.851 with 0.1 (random sampling 0.820).
        Set 0 for the paper's rule.
    entropy_weight : float, default=0.1
        Weight of an entropy bonus on W(x) in SearchNet's loss; without it the softmax
        weights saturate on one strategy within a few steps and warm starts keep them
        there. Digits AL loop as above: 0.851 without, 0.856 with 0.1.
    objective : {"max_loss", "value"}, default="value"
        What SearchNet's soft selection on B is judged by. "max_loss" (the first build):
        FitNet's mean loss on the selection (hardest first). "value": the bi-level
        problem taken literally; the labeled set is split into A (FitNet trains on it),
        B (plays the pool) and C (the judge); FitNet takes ``inner_steps``
        differentiable SGD steps of size ``inner_lr`` on the soft selection of B with
        its labels, and SearchNet maximises the drop of C's loss over the drop that a
        uniform selection of the same size gives (a one-step unroll is the hypergradient
        of Ren et al. 2018 and GLISTER). FitNet's own steps then train on A only.
        Why the default: "max_loss" puts the selection on outliers and on what margin
        already ranks first; the value of labels is what the bi-level problem asks.
        README, "AutoAL against every strategy", has the paired comparison.
    prior : "auto", str, dict, sequence of float or None, default="auto"
        The strategy weights SearchNet starts from, for every sample: a candidate's
        name, names joined by "+" (equal shares), {name: weight} or K weights. The
        ``entropy_weight`` term becomes ``KL(W(x) || prior)``, which pulls the weights
        back to the prior unless the objective pays for leaving it. None: uniform (the
        term is then the entropy bonus). "auto": equal shares of margin and badge, those
        of them that are candidates (uniform if neither is): the two single strategies
        that the literature finds strongest across datasets (margin: Beck et al. 2021,
        Zhan et al. 2022; badge: Ash et al. 2020), neither of which wins everywhere.
        What a prior queries, frozen: with one weight vector (``per_sample_weights=False``)
        the aggregated score is lexicographic in the weights, so the batch is that of the
        heavier candidate, and at equal shares of margin and badge it is badge's own batch
        (a sample picked by both ranks first, then badge's other picks, whose rank score is
        their pick, above margin's; tested). "auto" frozen is badge, then, and the search
        chooses each round between badge's batch and margin's. A uniform start measured
        worse on digits: the same search from a uniform prior scored 0.028 AUBC lower (5/5
        seeds), about random sampling's level (on MNIST-1D 0.012 higher, 5/5).
    judge_share : float, default=1/3
        With ``objective="value"``: the share of the labeled set in the judge C (A and
        B split the rest).
    inner_lr, inner_steps : float, int, default=0.1, 1
        Step size and number of the unrolled FitNet steps of ``objective="value"``.
    first_order : bool, default=True
        With one inner step, use its small-step limit: each B sample's value is the
        alignment of its loss gradient with C's, ``<grad l_i, grad L_C>``, computed once
        per split (FitNet fixed during the search), and SearchNet maximises the mean
        value of its soft selection. No double backward per step; False unrolls the
        step exactly (``inner_lr`` then matters). Measured (5 paired seeds, README
        ablation), the exact step against the first-order default: -0.0028 +- 0.0028 AUBC
        on digits, +0.0001 and +0.0004 on the two Fashion-MNIST settings, -0.0076 +-
        0.0043 on MNIST-1D.
    per_sample_weights : bool, default=False
        True: SearchNet's weights depend on the sample (the paper). False (default):
        one weight vector for all samples (K parameters). A per-sample SearchNet
        memorises which few samples of B to take (on a 120-label synthetic task it
        raised its own objective above every candidate's on B while its picks on the
        pool were the worse candidate's). Measured (5 paired seeds): on digits the
        per-sample form scored 0.0075 +- 0.0020 AUBC lower (5/5 seeds); on MNIST-1D
        0.0081 +- 0.0053 higher (4/5), where the one-vector search tends to commit to one
        candidate per round.
    recent_in_b : bool, default=True
        When ``fit`` is told where last round's batch sits in its labeled set (``new=``;
        ``query_model`` does it itself), put that batch in B, the pool's stand-in, and
        draw A and C from the older samples only: B then holds real pool samples chosen
        under the task model's previous state, as the real round's pool is, and FitNet
        and the judge have not seen them (issue 11's remedy "B drawn from the most
        recently labelled samples"). Measured with ``explore=0.1`` (README, ablation):
        on MNIST-1D 0.0121 +- 0.0068 AUBC above the same search with the plain random
        split (4/5 seeds), within noise on digits (+0.0013 +- 0.0027) and Fashion-MNIST
        at 100 + 10 x 100 (+0.0028 +- 0.0046).
    credit : {None, "effect"}, default=None
        Credit from the real pool by effect (needs ``objective="value"``). With "effect",
        the next ``fit``, told where last query's samples sit in its labeled set
        (``new=``), measures what they were worth: they join B (so FitNet and the
        judge C have not seen them), each one's value
        is the alignment of its loss gradient with C's (``sample_values``), and each
        candidate's credit is how far the mean value of the samples it had recommended
        lies above the batch's mean, in units of the batch's spread
        (``search.bilevel.effect_credit``), accumulated over rounds as a count-weighted mean. SearchNet's objective then gains ``credit_weight * <W,
        credit>``: evidence from labels the task model really got, not only from the
        simulation on B.
    credit_weight : float, default=1.0
        Weight of the accumulated credit in SearchNet's objective (with ``credit``). 10, for
        the credit to decide (the value objective's spread between candidates is about 1),
        measured against the defaults without credit: -0.0073 +- 0.0036 AUBC on digits,
        -0.0017 +- 0.0033 and +0.0010 +- 0.0019 on the Fashion-MNIST settings, +0.0027 +- 0.0021
        on MNIST-1D.
    credit_evidence : {"mean", "z"}, default="mean"
        What the credit term weighs: each candidate's accumulated credit ("mean", in units of
        the batches' spread), or that mean times the square root of how many of its
        recommended samples were measured ("z"): under no difference between candidates each
        measured sample adds one unit of spread of noise, so "z" is the credit's test
        statistic, large only where the evidence is (many labels a round, many rounds), and
        the credit decides only there. Measured with ``credit_weight=1`` against the defaults
        without credit (5 paired seeds): -0.0047 +- 0.0039 AUBC on digits, -0.0019 +- 0.0025 and
        +0.0007 +- 0.0005 on the two Fashion-MNIST settings, -0.0010 +- 0.0033 on MNIST-1D.
    credit_view : {"now", "query"}, default="now"
        Where the credit measures last round's batch (with ``credit``). "now": with this
        round's FitNet and judge, over this round's features, from a task model that has
        been trained on the batch. "query": in the state the batch was chosen in (issue 11
        item 5's suspect): last round's FitNet and judge C, over the features the query saw
        (its rows kept by ``query``, the judge's by ``fit``; both carried in ``state_dict``),
        so that no part of the measurement has seen the batch's labels. One process only.
        Measured with ``credit_weight=10`` against the defaults without credit (5 paired
        seeds): -0.0077 +- 0.0060 AUBC on digits, -0.0019 +- 0.0037 and +0.0003 +- 0.0014 on
        the two Fashion-MNIST settings, -0.0090 +- 0.0057 on MNIST-1D, below "now" there
        (+0.0027); so "now".
    b_view : {"now", "query"}, default="now"
        How the candidates see B when it is last round's batch (``recent_in_b``). "now":
        FitNet's predictions over this round's embeddings, from a task model that has trained
        on the batch, so that its uncertainty is largely gone (README, "How B looks").
        "query": B is the batch alone and its candidates are those of the query that chose it
        (the task model's logits and the embeddings of that round, MC dropout through that
        round's FitNet; the rows kept by ``query`` and carried in ``state_dict``), so that the
        search compares the candidates on the samples as the pool showed them. The values
        stay this round's. One process, no backbone. Measured against "now" (5 paired seeds):
        -0.0058 +- 0.0025 AUBC on digits, +0.0002 +- 0.0024 and -0.0004 +- 0.0019 on the two
        Fashion-MNIST settings, -0.0067 +- 0.0015 on MNIST-1D (0/5): a B of the batch alone (20
        samples a round on digits) is a smaller, noisier simulation; so "now".
    memory : {None, "rounds"}, default=None
        What the value objective is averaged over (needs ``objective="value"``). None: this
        round's simulation alone, so that each round's choice of candidate rests on one draw
        of A, B and C (the one-vector search flips between margin's and badge's batch from
        round to round, and three draws of it on one seed differ by 0.003-0.007 AUBC).
        "rounds": every round so far, equally: after r rounds the objective is ``1 / (r + 1)``
        of this round's value and ``r / (r + 1)`` of ``<mean W, m>``, where ``m`` is each
        candidate's evidence averaged over the earlier rounds (``memory_now``: how far the
        mean value of its hard picks on that round's B lay above B's mean, in units of B's
        spread, so that a round whose mean value is near 0 does not dominate), put in this
        round's units: the sample mean of a value taken to change slowly between rounds, so
        that the choice moves as the evidence of all rounds does (issue 11: summed over
        rounds, the simulated loss gain ranked the candidates like their real AUBCs, where
        one round's was noise). Needs the first-order value objective. Carried in
        ``state_dict``. Measured against None on one machine, the same seeds 0-4 (README,
        "Evidence over rounds"), AUBC mean ± SE: one draw each, -0.0019 ± 0.0021 on digits,
        -0.0005 ± 0.0013 and +0.0014 ± 0.0014 on the two Fashion-MNIST settings, +0.0037 ±
        0.0041 on MNIST-1D; the mean of two draws each (``autoal_seed`` 0 and 1), -0.0005 ±
        0.0013, -0.0030 ± 0.0017, +0.0007 ± 0.0010 and +0.0030 ± 0.0020. It commits to one
        candidate for whole runs (on MNIST-1D badge's batch in 31 of 40 rounds): the seed's
        better of margin and badge in 70% of rounds on MNIST-1D, 38-40% on digits and at 1000 +
        5 x 1000, 8% at 100 + 10 x 100 (the defaults: 72%, 58%, 32%, 38%). Committing follows
        the simulation's evidence where it is wrong as firmly as where it is right; so None.
    value_scale : {"mean", "spread"}, default="mean"
        The unit of the first-order value objective. "mean": the soft selection's mean sample
        value over |the mean value of B| (1 = no better than a uniform selection). "spread":
        how far that mean lies above B's, in units of the standard deviation of B's values
        (0 = uniform; ``search.bilevel.spread_value``), the unit of ``memory``'s evidence.
        The weight of the prior's KL term (``entropy_weight``) is fixed, so in "mean" units it
        weighs less the nearer B's mean value is to 0 (on digits' small B the candidates'
        values ran from -37 to +16 in one run), and the search then follows that round's
        noise; in "spread" units leaving the prior needs the same evidence in every round.
        Measured against "mean" (one machine, seeds 0-4, one draw): +0.0003 ± 0.0014 AUBC on
        digits and -0.0148 ± 0.0049 on MNIST-1D (0/5), with ``memory="rounds"`` -0.0023 ±
        0.0014 and -0.0108 ± 0.0064 against the defaults; the Fashion-MNIST runs were stopped
        there. So "mean": the search that follows its round's evidence past the prior does
        better on MNIST-1D.
    explore : float, default=0.1
        The share of each query's k taken round-robin from every candidate's own
        best-ranked samples (the last ``round(explore * k)`` indices of the result, in
        that order): the exploration share of a bandit such as ALBL's. It hedges the batch
        (with one weight vector the rest of the batch is one candidate's) and, with
        ``credit``, gives every candidate samples of its own in the batch, so that its
        credit does not depend only on what the weights already favour. 0: the top k of
        the aggregated score alone. Why 0.1 (the one value tried, not tuned): with
        ``recent_in_b`` it measured (5 paired seeds, README) +0.0167 +- 0.0031 AUBC over
        the same search without either on MNIST-1D (5/5), level on digits (-0.0003 +-
        0.0033) and on Fashion-MNIST at 1000 + 5 x 1000 (+0.0002 +- 0.0023), and
        -0.0018 +- 0.0020 on Fashion-MNIST at 100 + 10 x 100. Twice as much (0.2), measured
        afterwards against 0.1 as a check of that choice: -0.0008 +- 0.0024 on digits, -0.0022 +-
        0.0015 and +0.0004 +- 0.0020 on the Fashion-MNIST settings, -0.0004 +- 0.0061 on MNIST-1D.
    explore_from : {"candidates", "random", "prior"}, default="candidates"
        Where the exploration share comes from: each candidate's own best-ranked samples in
        turn ("candidates"), or samples drawn uniformly at random from the rest of the pool
        ("random", one process only): epsilon-greedy's uniform share, an unbiased sample of
        the pool where every candidate's best-ranked samples are its most extreme ones, or
        ("prior") the candidates' best-ranked samples in turn, each candidate's quota of the
        share in proportion to its prior weight (largest remainder): with "auto", half from
        margin and half from badge, so the share hedges between the two strong candidates
        only (a uniform prior gives "candidates").
        Measured (5 paired seeds, README ablation), "random" against "candidates": -0.0034 +-
        0.0062 AUBC on digits, -0.0011 +- 0.0030 and -0.0001 +- 0.0018 on the two
        Fashion-MNIST settings, -0.0149 +- 0.0035 on MNIST-1D (0/5); so "candidates".
        "prior" against "candidates": +0.0025 +- 0.0020 on Fashion-MNIST at 1000 + 5 x 1000,
        -0.0199 +- 0.0051 on MNIST-1D (0/5): the share's worth there comes from the candidates
        outside the prior.
    n_splits : int, default=1
        With the first-order value objective: B's per-sample values are averaged over
        the judges of ``n_splits`` (A, C) splits of the samples outside B (this round's
        FitNet, then fresh FitNets each trained on another A and judged by its C; each
        judge's values scaled by their mean absolute value), so that one draw of A and C
        weighs less in the search (issue 11 item 2, "several random splits per round").
        Measured with 4 (README, ablation; 5 paired seeds, AUBC against one split): digits
        -0.0013 +- 0.0028, Fashion-MNIST -0.0013 +- 0.0041 (100 + 10 x 100) and +0.0002 +-
        0.0005 (1000 + 5 x 1000), MNIST-1D -0.0067 +- 0.0062: no better, so 1.
    sample_value : {"dot", "cosine", "influence", "unit_input"}, default="dot"
        With the first-order value objective (and the credit): a sample's value is the
        alignment ``<grad l_i, grad L_C>`` ("dot", the first-order change of C's loss) or its
        cosine ("cosine"), which drops the size of the sample's gradient: large gradients
        come from samples FitNet fits worst (outliers, ambiguous samples), the bias the
        issue found in the max-loss objective, and in the data-valuation literature
        normalised gradient similarity is used against it. Measured (5 paired seeds, README
        ablation), "cosine" against "dot": -0.0054 +- 0.0043 AUBC on digits, -0.0021 +-
        0.0027 and +0.0021 +- 0.0019 on the two Fashion-MNIST settings, -0.0150 +- 0.0072 on
        MNIST-1D, so "dot". "influence": ``<grad l_i, H^-1 grad L_C>`` in FitNet's output
        layer, H the Hessian of FitNet's loss on A (``search.bilevel.influence_values``): the
        effect of sample i on C's loss once FitNet is retrained to its optimum, not after one
        step (Koh and Liang 2017), which discounts gradients along what A already teaches.
        Measured against "dot": -0.0019 +- 0.0053 on digits, -0.0013 +- 0.0024 and -0.0010 +-
        0.0032 on the Fashion-MNIST settings, -0.0105 +- 0.0041 on MNIST-1D: no better anywhere.
        "unit_input": "dot" times ``mean_B ||z|| / ||z_i||``, z the standardised input FitNet
        reads (``search.bilevel.input_norm_scale``): a sample's gradient is as large as its
        input is far from the features' mean, and badge seeks large gradient embeddings, so
        "dot" credits badge's picks for their distance as well as for their error; this keeps
        the error and drops the distance (unlike "cosine", which drops both). Measured (5
        paired seeds, the same AutoAL draw, README), against "dot": +0.0026 +- 0.0012 AUBC on
        digits, -0.0004 +- 0.0013 and -0.0014 +- 0.0007 on the two Fashion-MNIST settings,
        -0.0021 +- 0.0054 on MNIST-1D; its choices between margin's and badge's batch on
        Fashion-MNIST at 1000 + 5 x 1000 hardly moved (margin in 8 of 25 rounds against 7), so
        "dot".
    batch : {"score", "shares"}, default="score"
        How the query assembles the k - ``round(explore * k)`` samples before the
        exploration share. "score": the top of the aggregated score (the paper's; with
        one weight vector that is the heaviest candidate's batch). "shares": each
        candidate contributes its own best-ranked samples in proportion to its weight
        (largest remainder; round-robin, a sample two candidates rank counts once), so
        that a search unsure between two candidates hedges between their batches
        (needs ``per_sample_weights=False``). Measured (5 paired seeds, README ablation),
        "shares" against "score": +0.0029 +- 0.0018 AUBC on Fashion-MNIST at 100 + 10 x
        100, level at 1000 + 5 x 1000, -0.0048 +- 0.0074 on digits and -0.0139 +- 0.0029
        on MNIST-1D (0/5), so "score".
        "diverse": k-means (the kmeans strategy, seeded) over the embeddings of the top
        ``diverse_factor`` times that many samples by aggregated score, the sample nearest each
        centre taken (the pre-filter of Zhdanov 2019's diverse mini-batch AL): issue 11's batch
        diversity, as the top of a per-sample score has none. "cluster_top": the same cells,
        each giving its highest-scored sample instead. Both need ``pool.embeddings`` and one
        process. Measured (5 paired seeds, README ablation), "diverse" against "score": +0.0059
        +- 0.0038 AUBC on digits and +0.0016 +- 0.0050 on Fashion-MNIST at 100 + 10 x 100, where
        the pre-filter is a tenth of the pool, but -0.0077 +- 0.0020 at 1000 + 5 x 1000 (0/5) and
        -0.0155 +- 0.0065 on MNIST-1D, where it is half the pool and k-means' picks are its
        typical samples, not its informative ones; so "score". "cluster_top" against "score":
        -0.0021 +- 0.0047 on digits, -0.0031 +- 0.0031 and -0.0069 +- 0.0021 on the two
        Fashion-MNIST settings, +0.0001 +- 0.0061 on MNIST-1D.
    diverse_factor : float, default=10.0
        Size of the pre-filter of ``batch="diverse"``/``"cluster_top"`` in units of the batch
        (at least 1; 1 is the top of the score). One value, not tuned; 3 measured level with
        "score" on digits (+0.0017), Fashion-MNIST at the low budget (+0.0013) and MNIST-1D
        (-0.0018), and -0.0052 +- 0.0021 at 1000 + 5 x 1000 (0/5).
    judge : {"labeled", "random_set"}, default="labeled"
        Where the value objective's judge C comes from. "labeled": a random share
        (``judge_share``) of the older labeled samples. "random_set": from the samples
        drawn at random from the data (``fit(random_set=...)``; ``query_model`` takes the
        labeled set of its first call, the set AL started from) and from no others, so
        that C is smaller when they are fewer. The labeled samples that AL chose are a
        biased sample of the data (Farquhar et al. 2021, "On statistical bias in active
        learning"): they crowd the decision boundary, so a judge drawn from them rewards
        what helps on hard samples rather than on the distribution the model is tested
        on. A random set is an unbiased judge, as GLISTER's held-out validation set is.
        Measured (5 paired seeds, README ablation), "random_set" against "labeled": -0.0004 +-
        0.0007 AUBC on digits, +0.0003 +- 0.0018 and -0.0012 +- 0.0010 on the two
        Fashion-MNIST settings, -0.0092 +- 0.0012 on MNIST-1D (0/5), where the smaller, unbiased
        judge moved the search to margin's batch in the late rounds; so "labeled".
    warm_start : bool, default=True
        Carry SearchNet, its loss head and its optimiser over to the next ``fit``.
    warm_start_fitnet : bool, default=False
        Carry FitNet over too. Off by default on purpose: FitNet trains on half B in
        the alternating phase, so a carried-over FitNet has seen the labels of samples
        that the next split may put in B, and its candidate scores on B would be those
        of fitted data (method.md step 3). A fresh FitNet costs only its pre-training.
    mc_head : {"fitnet", None}, default="fitnet"
        When a queried pool has no stochastic predictions (no ``mc_logits``, no ``head``)
        and an MC-based candidate is asked for, "fitnet" runs MC dropout through the
        trained FitNet over the pool's embeddings (reported as ``QueryResult.mc_source``);
        None raises instead.
    backbone : torch.nn.Module, default=None
        Optional feature extractor put under SearchNet and FitNet (each gets a copy);
        then ``fit``/``query`` take ``features=`` (its inputs) and its output size is
        inferred. None: the nets read the task model's embeddings, standardised.
    chunk_size : int, default=65536
        Pool rows per SearchNet chunk in ``query`` and per forward batch in ``query_model``
        (bounds memory: about chunk_size x (n_features + 2K) floats at a time).
    search_threads : int, default=1
        CPU threads during FitNet pre-training and the alternating steps (restored after).
        The nets are small: on this shared 2-core machine a FitNet step took 1.3 ms on
        one thread and 10-84 ms on two (thread hand-offs on a loaded machine). Candidate
        scoring and querying use torch's setting. Ignored on CUDA.
    compile : bool, default=False
        torch.compile FitNet's and SearchNet's forward passes (fit and query). Off by
        default: on this 2-core CPU (one thread, batch 256, D=512, K=7) eager took 0.62 s
        for the first 20 alternating steps and 20.0 ms per step after, compiled 36.5 s
        and 28.5 ms (FitNet pre-training step: 7.9 ms eager, 9.1 ms compiled);
        benchmarks/gpu/autoal.py measures both on CUDA.

    Attributes
    ----------
    report_ : FitReport
        The last ``fit``'s report.
    round_ : int
        Number of ``fit`` calls so far.

    Examples
    --------
    >>> import torch, autoal_fast as aaf
    >>> g = torch.Generator().manual_seed(0)
    >>> lab = aaf.PoolOutputs(torch.randn(40, 3, generator=g), torch.randn(40, 8, generator=g))
    >>> y = torch.randint(0, 3, (40,), generator=g)
    >>> al = aaf.AutoAL(strategies=("entropy", "margin"), seed=0, pretrain_steps=5, search_steps=5)
    >>> rep = al.fit(lab, y, k=5, n_pool=100)
    >>> pool = aaf.PoolOutputs(torch.randn(100, 3, generator=g), torch.randn(100, 8, generator=g))
    >>> res = al.query(pool, k=5)
    >>> res.indices.shape, res.weights.shape
    (torch.Size([5]), torch.Size([100, 2]))
    """

    def __init__(self, strategies=AUTOAL_CANDIDATES, budget=None, device=None, seed=None, *,
                 pretrain_steps=200, search_steps=400, fit_lr=5e-3, search_lr=0.05,
                 search_optimizer="sgd", temperature=0.05, theta=0.5, rank_mix=0.1,
                 count_weight=0.1, rank_weight=1.0, batch_size=None, fit_hidden=128,
                 search_hidden=64, dropout=0.2, n_mc=10, ratio=None, warm_start=True,
                 warm_start_fitnet=False, mc_head="fitnet", backbone=None, chunk_size=65536,
                 search_threads=1, compile=False, min_ratio=0.1, entropy_weight=0.1,
                 objective="value", prior="auto", judge_share=1 / 3, inner_lr=0.1, inner_steps=1,
                 first_order=True, per_sample_weights=False, credit=None, credit_weight=1.0, explore=0.1,
                 recent_in_b=True, n_splits=1, batch="score", sample_value="dot", diverse_factor=10.0,
                 judge="labeled", explore_from="candidates", credit_evidence="mean", credit_view="now",
                 b_view="now", memory=None, value_scale="mean"):
        caller = "AutoAL"
        if isinstance(strategies, str):
            strategies = (strategies,)
        try:
            strategies = tuple(strategies)
        except TypeError:
            raise TypeError(f"strategies must be a sequence of strategy names ({caller}); got "
                            f"{type(strategies).__name__}") from None
        allowed = strategy_names()
        if not strategies or any(s not in allowed for s in strategies) or len(set(strategies)) != len(strategies):
            raise ValueError(f"strategies must be distinct names from {allowed} ({caller}); got {list(strategies)}")
        self.strategies = strategies
        self.budget = None if budget is None else check_int(budget, "budget", caller, low=1)
        self.device = None if device is None else check_device(device, "device", caller)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0 ({caller}); got {seed!r}")
        self.seed = seed
        self.pretrain_steps = check_int(pretrain_steps, "pretrain_steps", caller, low=0)
        self.search_steps = check_int(search_steps, "search_steps", caller, low=0)
        self.fit_lr = _check_real(fit_lr, "fit_lr", caller, 0, low_open=True)
        self.search_lr = _check_real(search_lr, "search_lr", caller, 0, low_open=True)
        self.search_optimizer = _check_choice(search_optimizer, "search_optimizer", ("sgd", "adam"), caller)
        self.temperature = _check_real(temperature, "temperature", caller, 0, low_open=True)
        self.theta = _check_real(theta, "theta", caller)
        self.rank_mix = _check_real(rank_mix, "rank_mix", caller, 0, 1)
        self.count_weight = _check_real(count_weight, "count_weight", caller, 0)
        self.rank_weight = _check_real(rank_weight, "rank_weight", caller, 0)
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size", caller, low=2)
        self.fit_hidden = check_int(fit_hidden, "fit_hidden", caller, low=1)
        self.search_hidden = check_int(search_hidden, "search_hidden", caller, low=1)
        self.dropout = _check_real(dropout, "dropout", caller, 0, 1)
        if self.dropout == 1.0:  # Dropout(1) zeroes every input: FitNet would learn nothing
            raise ValueError(f"dropout must be in [0, 1) ({caller}); got {dropout!r}")
        self.n_mc = check_int(n_mc, "n_mc", caller, low=2)
        self.ratio = None if ratio is None else _check_real(ratio, "ratio", caller, 0, 0.5, low_open=True)
        self.warm_start = _check_flag(warm_start, "warm_start", caller)
        self.warm_start_fitnet = _check_flag(warm_start_fitnet, "warm_start_fitnet", caller)
        self.mc_head = _check_choice(mc_head, "mc_head", ("fitnet", None), caller)
        if backbone is not None and not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module ({caller}); got {type(backbone).__name__}")
        self.backbone = backbone
        self.chunk_size = check_int(chunk_size, "chunk_size", caller, low=1)
        self.search_threads = check_int(search_threads, "search_threads", caller, low=1)
        self.compile = _check_flag(compile, "compile", caller)
        self.min_ratio = _check_real(min_ratio, "min_ratio", caller, 0, 0.5)
        self.entropy_weight = _check_real(entropy_weight, "entropy_weight", caller, 0)
        self.objective = _check_choice(objective, "objective", ("max_loss", "value"), caller)
        self.prior = _as_prior(prior, strategies, caller)
        self._prior_given = copy.deepcopy(prior)  # as given, for get_params
        self.judge_share = _check_real(judge_share, "judge_share", caller, 0, 0.5, low_open=True)
        self.inner_lr = _check_real(inner_lr, "inner_lr", caller, 0, low_open=True)
        self.inner_steps = check_int(inner_steps, "inner_steps", caller, low=1)
        self.first_order = bool(first_order)
        self.per_sample_weights = bool(per_sample_weights)
        self.credit = _check_choice(credit, "credit", (None, "effect"), caller)
        if credit is not None and objective != "value":
            raise ValueError(f"credit='effect' needs objective='value' ({caller}): a sample's value is "
                             f"measured against the judge set C; got objective={objective!r}")
        self.credit_weight = _check_real(credit_weight, "credit_weight", caller, 0)
        self.credit_evidence = _check_choice(credit_evidence, "credit_evidence", ("mean", "z"), caller)
        self.credit_view = _check_choice(credit_view, "credit_view", ("now", "query"), caller)
        self.b_view = _check_choice(b_view, "b_view", ("now", "query"), caller)
        self.memory = _check_choice(memory, "memory", (None, "rounds"), caller)
        self.value_scale = _check_choice(value_scale, "value_scale", ("mean", "spread"), caller)
        if b_view == "query" and (not recent_in_b or backbone is not None):
            raise ValueError(f"b_view='query' needs recent_in_b=True and no backbone ({caller}): B is then last "
                             f"round's batch, seen through the pool's embeddings as the query saw them")
        if credit_view == "query" and (credit is None or sample_value not in ("dot", "cosine")):
            raise ValueError(f"credit_view='query' needs credit='effect' and sample_value 'dot' or 'cosine' "
                             f"({caller}); got credit={credit!r}, sample_value={sample_value!r}")
        self.explore = _check_real(explore, "explore", caller, 0, 0.5)
        self.recent_in_b = _check_flag(recent_in_b, "recent_in_b", caller)
        self.n_splits = check_int(n_splits, "n_splits", caller, low=1)
        self.batch = _check_choice(batch, "batch", ("score", "shares", "diverse", "cluster_top"), caller)
        self.diverse_factor = _check_real(diverse_factor, "diverse_factor", caller, 1)
        if batch == "shares" and self.per_sample_weights:
            raise ValueError(f"batch='shares' needs one weight vector ({caller}): per_sample_weights=False")
        self.sample_value = _check_choice(sample_value, "sample_value", ("dot", "cosine", "influence", "unit_input"),
                                          caller)
        self.judge = _check_choice(judge, "judge", ("labeled", "random_set"), caller)
        self.explore_from = _check_choice(explore_from, "explore_from", ("candidates", "random", "prior"), caller)
        if judge == "random_set" and objective != "value":
            raise ValueError(f"judge='random_set' needs objective='value' ({caller}): only the value objective "
                             f"has a judge C; got objective={objective!r}")
        first_order_value = objective == "value" and self.first_order and self.inner_steps == 1
        for wants, what, got in ((self.n_splits > 1, "n_splits > 1", f"n_splits={n_splits}, "),
                                 (memory is not None, "memory='rounds'", "")):
            if wants and not first_order_value:
                raise ValueError(f"{what} needs the first-order value objective ({caller}): objective='value', "
                                 f"first_order=True, inner_steps=1; got {got}objective={objective!r}, "
                                 f"first_order={first_order!r}, inner_steps={inner_steps}")
        self._credit_sum = [0.0] * len(strategies)  # sum over credited samples of their credit
        self._credit_count = [0.0] * len(strategies)
        # memory="rounds": sum over the rounds so far of each candidate's evidence on B (effect_credit
        # of its picks), and the number of rounds that measured it
        self._memory_sum = [0.0] * len(strategies)
        self._memory_rounds = [0] * len(strategies)
        # the last query: {"ids": (k,) global indices, "picks": (k, K) bool, with credit only}
        self._pending = None
        # global ids of the labeled set at the first query_model call (judge="random_set")
        self._random_ids = None
        # credit_view="query": the last fit's judge C as that round's features saw it
        self._judge_then = None
        # learned state
        self.round_ = 0
        self.fitnet_ = None
        self.searchnet_ = None
        self._opt_search = None
        self._opt_fit = None
        self.report_ = None
        self._fitted = None  # dict: n_classes, d_in, d_feat, ratio, round_seed
        self._labeled = None

    # ------------------------------------------------------------------ helpers
    def _config(self, device) -> SearchConfig:
        bs = self.batch_size if self.batch_size is not None else (1024 if device.type == "cuda" else 256)
        share = self._memory_share()
        return SearchConfig(
            pretrain_steps=self.pretrain_steps, search_steps=self.search_steps,
            batch_size=bs, temperature=self.temperature, theta=self.theta,
            rank_mix=self.rank_mix, count_weight=self.count_weight, rank_weight=self.rank_weight,
            entropy_weight=self.entropy_weight, objective=self.objective, inner_lr=self.inner_lr,
            inner_steps=self.inner_steps, prior=self.prior, first_order=self.first_order,
            sample_value=self.sample_value, value_scale=self.value_scale,
            credit=self.credit_now() if self.credit is not None else None, credit_weight=self.credit_weight,
            memory=self.memory_now() if share else None, memory_share=share,
        )

    def memory_now(self) -> tuple:
        """With ``memory="rounds"``: each candidate's evidence on B averaged over the rounds so
        far, one float per strategy (0 where none was measured): ``effect_credit`` of its own
        picks on the round's B, how far their mean value lay above B's mean in units of B's
        spread."""
        return tuple(s / c if c else 0.0 for s, c in zip(self._memory_sum, self._memory_rounds))

    def _memory_share(self) -> float:
        """The earlier rounds' share of the value objective: r / (r + 1) after r rounds (0
        without memory)."""
        r = max(self._memory_rounds) if self.memory is not None else 0
        return r / (r + 1.0)

    @property
    def n_pending(self) -> int:
        """How many samples the last query returned, to be named by the next
        ``fit(new=...)`` once labelled (``query_model`` does it itself); 0 when none."""
        return 0 if self._pending is None else int(self._pending["ids"].numel())

    def credit_now(self) -> tuple:
        """The credit accumulated so far, one float per strategy (0 where none measured): the
        count-weighted mean, or with ``credit_evidence="z"`` that mean times the square root
        of its count."""
        if self.credit_evidence == "z":
            return tuple(s / math.sqrt(c) if c > 0 else 0.0 for s, c in zip(self._credit_sum, self._credit_count))
        return tuple(s / c if c > 0 else 0.0 for s, c in zip(self._credit_sum, self._credit_count))

    def _new_positions(self, new, n: int, caller: str):
        """``new`` checked against the labeled set's size and the last query: a CPU LongTensor,
        or None when there is nothing to credit."""
        if new is None:
            return None
        t = _as_positions(new, "new", n, caller)
        if self._pending is None or not (self.recent_in_b or self.credit is not None):
            return None
        k_prev = self.n_pending
        if t.numel() != k_prev:
            raise ValueError(f"new must list the {k_prev} samples the last query returned, in its order "
                             f"({caller}); got {t.numel()} positions")
        if n - t.numel() < 6:  # A and C come from the older labeled samples
            return None
        return t

    def _features(self, outputs: PoolOutputs, features, caller: str, name: str) -> torch.Tensor:
        if features is not None:
            if self.backbone is None:
                raise ValueError(f"features= is for a user backbone ({caller}); this AutoAL has none, "
                                 "so its nets read the pool's embeddings")
            if not isinstance(features, torch.Tensor):
                features = torch.as_tensor(np.asarray(features))
            if features.shape[0] != outputs.n_samples:
                raise ValueError(f"features must have {outputs.n_samples} rows like {name} ({caller}); "
                                 f"got shape {tuple(features.shape)}")
            return features
        if outputs.embeddings is None:
            raise ValueError(f"{name}.embeddings is required by AutoAL ({caller}): its nets read the "
                             "task model's embeddings (or pass features= with a backbone)")
        return outputs.embeddings

    def _check_nets_state(self, state, caller):
        """Raise ValueError naming the part of ``state`` that is not an AutoAL state."""
        need = {"version": int, "strategies": (tuple, list), "round": numbers.Integral, "fitted": dict,
                "fitnet": dict, "searchnet": dict, "opt_fit": dict, "opt_search": dict, "nets": dict}
        missing = [k for k in need if k not in state]
        if missing:
            raise ValueError(f"state is not an AutoAL state ({caller}): it lacks {missing}; pass a dict "
                             "from AutoAL.state_dict()")
        for key, typ in need.items():
            if not isinstance(state[key], typ) or (key == "round" and isinstance(state[key], bool)):
                raise ValueError(f"state[{key!r}] must be a {getattr(typ, '__name__', typ)} ({caller}); got "
                                 f"{type(state[key]).__name__}")
        for key, sub in (("nets", ("fit_hidden", "search_hidden", "dropout", "search_optimizer")),
                         ("fitted", ("n_classes", "x_shape", "ratio", "round_seed"))):
            lack = [k for k in sub if k not in state[key]]
            if lack:
                raise ValueError(f"state[{key!r}] lacks {lack} ({caller}): not a dict from AutoAL.state_dict()")

    def _new_fitnet(self, d_feat: int, n_classes: int, device):
        bb = None if self.backbone is None else copy.deepcopy(self.backbone)
        net = FitNet(d_feat, n_classes, self.fit_hidden, self.dropout, backbone=bb).to(device)
        if self.compile:
            net.compile()
        return net, torch.optim.Adam(net.parameters(), lr=self.fit_lr)

    def _make_nets(self, x_sample: torch.Tensor, n_classes: int, device, fresh_search: bool, fresh_fit: bool):
        K = len(self.strategies)
        if self.backbone is None:
            d_in = int(x_sample.shape[1])
            d_feat = d_in
        else:
            bb = copy.deepcopy(self.backbone).to(device).eval()
            with torch.no_grad():
                d_feat = int(bb(x_sample[:2].to(device)).reshape(min(2, x_sample.shape[0]), -1).shape[1])
            d_in = None
        if fresh_fit:
            self.fitnet_, self._opt_fit = self._new_fitnet(d_feat, n_classes, device)
        if fresh_search:
            bb = None if self.backbone is None else copy.deepcopy(self.backbone)
            self.searchnet_ = SearchNet(d_feat, K, self.search_hidden, backbone=bb, prior=self.prior,
                                        per_sample=self.per_sample_weights).to(device)
            if self.search_optimizer == "sgd":
                self._opt_search = torch.optim.SGD(self.searchnet_.parameters(), lr=self.search_lr, momentum=0.9)
            else:
                self._opt_search = torch.optim.Adam(self.searchnet_.parameters(), lr=self.search_lr)
        if self.compile and fresh_search:  # nn.Module.compile: forward compiled in place, same state_dict keys
            self.searchnet_.compile()
        return d_in, d_feat

    # ------------------------------------------------------------------ fit
    def fit(self, labeled: PoolOutputs, y, *, k=None, n_pool=None, features=None, new=None,
            random_set=None) -> FitReport:
        """One round's search on the labeled set.

        Parameters
        ----------
        labeled : PoolOutputs
            The task model's outputs on the labeled set: logits (n, n_classes) and
            embeddings (n, n_features) (or ``features=`` with a backbone).
        y : array-like of int, shape (n,)
            Labels in [0, n_classes).
        k, n_pool : int, default=None
            The coming query's size and the pool's size: the search selects the same
            ratio ``t = k / n_pool`` of half B. ``k`` defaults to ``budget``. Without
            both, ``t = ratio`` (default 0.1).
        features : tensor of shape (n, ...), default=None
            Inputs of the user backbone, instead of the embeddings.
        new : array-like of int, default=None
            The positions in ``labeled`` of the samples the last ``query`` returned (now
            labelled), in the order it returned them (``n_pending`` of them). With
            ``recent_in_b`` they join B, and with ``credit`` their value is the credit's
            evidence. Ignored before the first query (checked all the same).
        random_set : array-like of int, default=None
            The positions in ``labeled`` of the samples drawn uniformly at random from the
            data (usually the initial labeled set), an unbiased sample of the distribution
            the task model is tested on. Needed with ``judge="random_set"`` (``query_model``
            passes it itself); ignored otherwise (checked all the same).

        Returns
        -------
        FitReport
        """
        caller = "AutoAL.fit"
        check_pool(labeled, caller, "labeled")
        n, C = labeled.n_samples, labeled.n_classes
        y = _as_labels(y, n, C, caller)
        n_min = 6 if self.objective == "value" else 4
        if n < n_min:
            raise ValueError(f"labeled must have at least {n_min} samples ({caller}) to split into parts A and B "
                             f"(and the judge C for objective='value') of at least 2 each; got {n}")
        if self._fitted is not None and self._fitted["n_classes"] != C and self.warm_start:
            raise ValueError(f"labeled.logits has n_classes={C} but the previous rounds had "
                             f"{self._fitted['n_classes']} ({caller})")
        x = self._features(labeled, features, caller, "labeled")
        if features is None:
            _check_embeddings(x, "labeled.embeddings", caller)
        new_pos = self._new_positions(new, n, caller)
        random_pos = None if random_set is None else _as_positions(random_set, "random_set", n, caller)
        if self.judge == "random_set" and random_pos is None:
            raise ValueError(f"judge='random_set' needs random_set= ({caller}): the positions in labeled of the "
                             f"samples drawn at random (the initial labeled set), from which the judge C is drawn")
        k = self.budget if k is None else k
        if k is not None and n_pool is not None:
            n_pool = check_int(n_pool, "n_pool", caller, low=1)
            k = check_k(k, n_pool, caller)
            ratio = min(k / n_pool, 0.5)
        else:
            ratio = self.ratio if self.ratio is not None else 0.1
        ratio = max(ratio, self.min_ratio)
        device = self.device if self.device is not None else labeled.device
        self.device = device
        timer = Timer()

        round_seed = (_derive_seed(self.seed, self.round_) if self.seed is not None
                      else int(torch.randint(0, 2**62, (1,)).item()))
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(round_seed)
            gen = torch.Generator().manual_seed(round_seed)
            with timer("split"):
                perm = torch.randperm(n, generator=gen)
                # A trains FitNet, B plays the pool, C judges (objective="value" only);
                # last round's batch, when given, joins B
                # b_view="query" (with last query's rows kept): B is the batch alone
                b_then = (new_pos is not None and self.b_view == "query" and self._pending.get("logits") is not None
                          and self.fitnet_ is not None)
                ia, ib, ic = _split_with_new(perm, new_pos, n,
                                             self.judge_share if self.objective == "value" else 0.0,
                                             judge_from=random_pos if self.judge == "random_set" else None,
                                             b_new_only=b_then)
                x_dev = x.to(device=device, dtype=torch.float32 if x.is_floating_point() else x.dtype)
                y_dev = y.to(device)
                ia_d, ib_d = ia.to(device), ib.to(device)
                x_a, y_a, x_b, y_b = x_dev[ia_d], y_dev[ia_d], x_dev[ib_d], y_dev[ib_d]
                ic_d = ic.to(device)
                x_c, y_c = x_dev[ic_d], y_dev[ic_d]
            n_b = len(ib)
            k_b = int(min(max(math.ceil(ratio * n_b), 1), n_b - 1))
            # B's candidates as the query saw those rows, with that round's FitNet (before it is remade)
            cand_then = self._candidates_then(k_b, round_seed, device) if b_then else None
            v_then = None
            if (new_pos is not None and self.credit_view == "query" and self._pending.get("x") is not None
                    and self._judge_then is not None and self.fitnet_ is not None):
                # last round's batch valued as it was chosen: that round's FitNet, judge and features
                with timer("credit"), _threads(self.search_threads, device):
                    v_then = sample_values(self.fitnet_, self._pending["x"].to(device), y_dev[new_pos.to(device)],
                                           self._judge_then["x"].to(device), self._judge_then["y"].to(device),
                                           cosine=self.sample_value == "cosine")
            same_shape = (self._fitted is not None and self._fitted["n_classes"] == C
                          and self._fitted["x_shape"] == tuple(x.shape[1:]))
            fresh_search = not (self.warm_start and same_shape and self.searchnet_ is not None)
            fresh_fit = not (self.warm_start_fitnet and same_shape and self.fitnet_ is not None)
            _, d_feat = self._make_nets(x_dev, C, device, fresh_search, fresh_fit)
            if self.backbone is None:  # standardise inputs to this round's embeddings
                self.fitnet_.norm.fit(x_dev)
                self.searchnet_.norm.fit(x_dev)
            cfg = self._config(device)
            report = FitReport(n_a=len(ia), n_b=len(ib), ratio=ratio, strategies=self.strategies)
            with timer("pretrain"), _threads(self.search_threads, device):
                report.pretrain_loss = pretrain_fitnet(self.fitnet_, self._opt_fit, x_a, y_a,
                                                       cfg.pretrain_steps, cfg.batch_size, gen)
            report.k_b = k_b
            if new_pos is not None and self.credit is not None and self._pending["picks"] is not None:
                # last round's batch, by what it was worth
                with timer("credit"), _threads(self.search_threads, device):
                    self._add_credit(x_dev[new_pos.to(device)], y_dev[new_pos.to(device)], x_a, y_a, x_c, y_c,
                                     report, values=v_then)
                cfg = dataclasses.replace(cfg, credit=self.credit_now())
            if new_pos is not None:
                report.n_new = int(new_pos.numel())
                with torch.no_grad():
                    self.fitnet_.eval()
                    nd = new_pos.to(device)
                    report.margins = {"fitnet_batch": _mean_margin(self.fitnet_(x_dev[nd])),
                                      "task_batch_now": _mean_margin(labeled.logits[new_pos.to(labeled.device)])}
                    if self._pending.get("margin_at_query") is not None:
                        report.margins["task_batch_at_query"] = self._pending["margin_at_query"]
                self._pending = None
            if self.credit is not None:
                report.credit = dict(zip(self.strategies, self.credit_now()))
            if cfg.memory is not None:
                report.memory = dict(zip(self.strategies, cfg.memory))
            with timer("candidates"):
                cand = (cand_then if cand_then is not None
                        else self._candidates_on_b(labeled, ia_d, ib_d, x_a, x_b, k_b, round_seed))
                cand_in = cand.inputs().to(device)
                ranks_b, picks_b = cand.ranks.to(device), cand.picks.to(device)
            values = None
            if self.n_splits > 1:  # B's sample values averaged over judges of several (A, C) splits
                with timer("splits"), _threads(self.search_threads, device):
                    values = self._values_over_splits(x_dev, y_dev, ib, x_a, y_a, x_b, y_b, x_c, y_c, d_feat, C, cfg,
                                                      gen)
            with timer("search"), _threads(self.search_threads, device):
                alternate(self.fitnet_, self.searchnet_, self._opt_fit, self._opt_search, x_a, y_a, x_b, y_b,
                          cand_in, ranks_b, picks_b, ratio, cfg, gen, report,
                          x_c=x_c if self.objective == "value" else None, y_c=y_c, values=values)
            with torch.no_grad():
                self.searchnet_.eval()
                w, _ = self.searchnet_(x_b, cand_in, predict_loss=False)
                tot = w.sum(0).cpu().tolist()
            report.weight_totals = dict(zip(self.strategies, tot))
            report.weight_share = {s: v / n_b for s, v in report.weight_totals.items()}
            if self.objective == "value":
                with _threads(self.search_threads, device):
                    vals = candidate_values(self.fitnet_, picks_b, x_b, y_b, x_c, y_c, self.inner_lr, self.inner_steps,
                                            values=report.sample_values)
                report.candidate_value = dict(zip(self.strategies, vals))
                if self.memory is not None:  # this round's evidence, scale-free, for the later rounds
                    z, _ = effect_credit(report.sample_values, picks_b)
                    for j, v in enumerate(z.tolist()):
                        if math.isfinite(v):
                            self._memory_sum[j] += v
                            self._memory_rounds[j] += 1
        report.times = timer.times
        if self.credit_view == "query":  # the judge as this round sees it, for the next round's credit
            self._judge_then = {"x": x_c.detach().to("cpu", torch.float32), "y": y_c.cpu()}
        self._fitted = {"n_classes": C, "x_shape": tuple(x.shape[1:]), "ratio": ratio,
                        "round_seed": round_seed}
        self._labeled = labeled
        self.round_ += 1
        self.report_ = report
        return report

    def _values_over_splits(self, x_dev, y_dev, ib, x_a, y_a, x_b, y_b, x_c, y_c, d_feat, C, cfg,
                            gen) -> torch.Tensor:
        """``sample_values`` of B averaged over ``n_splits`` judges: this round's FitNet
        (trained on A) judged by C, and ``n_splits - 1`` fresh FitNets, each trained on
        another random A drawn from the samples outside B and judged by the matching C.
        Each split's values are scaled by their mean absolute value before the mean, so
        no judge counts more for its gradients' scale. B (and so the candidates' picks on
        it) is the same for every split: only the model and the judge change."""
        def scaled(v):
            return v / v.abs().mean().clamp_min(1e-12)

        kind = self.sample_value
        total = scaled(judged_values(kind, self.fitnet_, x_a, y_a, x_b, y_b, x_c, y_c))
        n = x_dev.shape[0]
        for _ in range(self.n_splits - 1):
            ia, _, ic = _split_with_new(torch.randperm(n, generator=gen), ib, n, self.judge_share)
            ia, ic = ia.to(x_dev.device), ic.to(x_dev.device)
            net, opt = self._new_fitnet(d_feat, C, x_dev.device)
            if self.backbone is None:
                net.norm.fit(x_dev)
            pretrain_fitnet(net, opt, x_dev[ia], y_dev[ia], cfg.pretrain_steps, cfg.batch_size, gen)
            total = total + scaled(judged_values(kind, net, x_dev[ia], y_dev[ia], x_b, y_b, x_dev[ic], y_dev[ic]))
        return total / self.n_splits

    def _add_credit(self, x_new, y_new, x_a, y_a, x_c, y_c, report, values=None) -> None:
        """Measure last query's batch (now labelled) with FitNet trained on A, judged by C
        (or take ``values``, measured in the round that chose it), and add it to the running
        credit."""
        v = values if values is not None else judged_values(self.sample_value, self.fitnet_, x_a, y_a, x_new,
                                                            y_new, x_c, y_c)
        cred, counts = effect_credit(v, self._pending["picks"].to(v.device))
        for j, (g, c) in enumerate(zip(cred.tolist(), counts.tolist())):
            if c > 0 and math.isfinite(g):
                self._credit_sum[j] += c * g
                self._credit_count[j] += c
        report.real_credit = dict(zip(self.strategies, cred.tolist()))

    @torch.no_grad()
    def _candidates_then(self, k_b, seed, device) -> Candidates:
        """Candidates on last round's batch as its query saw it (``b_view="query"``): the task
        model's logits and the embeddings of that round, MC dropout through that round's FitNet."""
        x_then = self._pending["x"].to(device)
        mc = None
        if any(s in MC_BASED for s in self.strategies):
            self.fitnet_.train()
            mc = torch.stack([self.fitnet_(x_then) for _ in range(self.n_mc)])
            self.fitnet_.eval()
        pool_b = PoolOutputs(self._pending["logits"].to(device), embeddings=x_then, mc_logits=mc)
        return compute_candidates(pool_b, self.strategies, k_b, labeled=None, seed=_derive_seed(seed, 1))

    @torch.no_grad()
    def _candidates_on_b(self, labeled, ia, ib, x_a, x_b, k_b, seed) -> Candidates:
        """Candidates on half B from FitNet's predictions (FitNet has not seen B)."""
        fitnet = self.fitnet_
        fitnet.eval()
        logits_b = fitnet(x_b)
        mc = None
        if any(s in MC_BASED for s in self.strategies):
            fitnet.train()  # dropout on; FitNet has no BatchNorm unless the user backbone does
            if self.backbone is not None:
                fitnet.backbone.eval()
            mc = torch.stack([fitnet(x_b) for _ in range(self.n_mc)])
            fitnet.eval()
        emb = labeled.embeddings
        emb_b = emb[ib.to(emb.device)].to(logits_b.device) if emb is not None else None
        pool_b = PoolOutputs(logits_b, embeddings=emb_b, mc_logits=mc)
        lab_a = None
        if "coreset" in self.strategies and emb is not None:
            lab_a = PoolOutputs(fitnet(x_a), embeddings=emb[ia.to(emb.device)].to(logits_b.device))
        return compute_candidates(pool_b, self.strategies, k_b, labeled=lab_a, seed=_derive_seed(seed, 1))

    # ------------------------------------------------------------------ query
    def _check_fitted(self, caller):
        if self._fitted is None or self.searchnet_ is None:
            raise RuntimeError(f"this AutoAL is not fitted yet ({caller}): call fit(labeled, y) first")

    @torch.no_grad()
    def query(self, pool: PoolOutputs, k=None, *, labeled: PoolOutputs | None = None, features=None,
              group=None) -> QueryResult:
        """Choose k samples of ``pool`` to label.

        Parameters
        ----------
        pool : PoolOutputs
            The task model's outputs on the unlabeled pool: logits (n_pool, n_classes),
            embeddings, and for var_ratio/bald/mean_std either ``mc_logits`` or a ``head``
            (else FitNet serves as MC-dropout head, see ``mc_head``).
        k : int, default=None
            How many; defaults to ``budget``.
        labeled : PoolOutputs, default=None
            The labeled set for coreset; defaults to the one given to the last ``fit``.
        features : tensor of shape (n_pool, ...), default=None
            Inputs of the user backbone, instead of the embeddings.
        group : torch.distributed ProcessGroup, default=None
            None uses the default group when torch.distributed is initialised. With more
            than one rank, ``pool`` (and ``features``) is this rank's shard, shards in rank
            order; every rank must hold the same fitted state (fit on the same labeled set
            with the same seed, or ``load_state_dict`` of one fit) and pass the whole
            labeled set. Candidates run sharded (``strategies.select(group=...)``, global
            rank scores), SearchNet scores the local rows, and the local top-k's are
            merged: ``indices`` are global indices into the concatenated pool, the same on
            every rank and equal to one process's answer on the concatenated pool (with
            ``AUTOAL_FAST_FAISS=0`` there when kmeans is a candidate; with stochastic
            predictions given as ``mc_logits``, as MC dropout drawn through a head depends
            on the chunk layout). ``scores`` and ``weights`` are this shard's rows.

        Returns
        -------
        QueryResult
        """
        caller = "AutoAL.query"
        self._check_fitted(caller)
        from .distributed import reducer

        red = reducer(pool.n_samples if isinstance(pool, PoolOutputs) else 0, group)

        def validate(k):
            red.check_pool(pool, caller)
            if k is None:
                if self.budget is None:
                    raise ValueError(f"k is required ({caller}) when AutoAL has no budget")
                k = self.budget
            k = check_k(k, red.n_total, caller)
            C = self._fitted["n_classes"]
            if pool.n_classes != C:
                raise ValueError(f"pool.logits has n_classes={pool.n_classes} but the labeled set given to fit "
                                 f"had {C} ({caller})")
            if labeled is not None:
                check_pool(labeled, caller, "labeled")
            if self.batch in ("diverse", "cluster_top"):
                if pool.embeddings is None:
                    raise ValueError(f"batch={self.batch!r} needs pool.embeddings ({caller}): its k-means runs on them")
            if red.shard is not None:  # the options that are not sharded
                for on, what, why, instead in (
                        (self.batch in ("diverse", "cluster_top"), "batch='diverse' and 'cluster_top' run",
                         "their k-means over the top of the aggregated score is not sharded", "batch='score'"),
                        (self.b_view == "query", "b_view='query' runs", "it keeps the batch's rows of this shard",
                         "b_view='now'"),
                        (self.credit_view == "query", "credit_view='query' runs",
                         "it keeps the batch's rows of this shard's features", "credit_view='now'"),
                        (self.explore_from == "random" and self.explore > 0, "explore_from='random' runs",
                         "its uniform draw over the pool is not sharded", "explore_from='candidates'")):
                    if on:
                        raise ValueError(f"{what} on one process ({caller}): {why}; use {instead} with a process "
                                         f"group")
            x = self._features(pool, features, caller, "pool")
            if tuple(x.shape[1:]) != self._fitted["x_shape"]:
                raise ValueError(f"pool features have shape (n, {', '.join(map(str, x.shape[1:]))}) but fit saw "
                                 f"(n, {', '.join(map(str, self._fitted['x_shape']))}) ({caller})")
            return k, x

        # sharded: every rank validates its shard, then all agree (a bad shard on one
        # rank must not leave the others waiting in a collective)
        k, x = red.agree(lambda: validate(k), caller)
        seed = _derive_seed(self._fitted["round_seed"], 2)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices + ([pool.device] if pool.device.type == "cuda"
                                                      and pool.device != self.device else [])):
            torch.manual_seed(seed)
            cand_pool, mc_source = self._pool_for_candidates(pool, caller)
            lab = labeled if labeled is not None else self._labeled
            cand = compute_candidates(cand_pool, self.strategies, k, labeled=lab, seed=seed, reducer=red)
            fwd = self.searchnet_.eval()
            n = pool.n_samples
            weights = torch.empty((n, len(self.strategies)), dtype=torch.float32, device=self.device)
            scores = torch.empty((n,), dtype=torch.float32, device=self.device)
            bad = None  # first (row, finite in its own dtype) of the features that are not finite
            for start in range(0, n, self.chunk_size):
                sl = slice(start, min(n, start + self.chunk_size))
                xc = x[sl].to(self.device)
                if xc.is_floating_point():
                    xc = xc.to(torch.float32)
                    if bad is None:
                        ok = torch.isfinite(xc).flatten(1).all(1)
                        if not bool(ok.all()):
                            r = start + int(torch.nonzero(~ok)[0, 0])
                            bad = (r, bool(torch.isfinite(x[r]).all()))
                rc, pc = cand.ranks[sl].to(self.device), cand.picks[sl].to(self.device)
                w, _ = fwd(xc, torch.cat([rc, pc], dim=1), predict_loss=False)
                weights[sl] = w
                scores[sl] = aggregate(w, pc, rc, self.theta, self.rank_mix)
            red.agree(lambda: _raise_bad_features(bad, "pool.embeddings" if features is None else "features",
                                                  caller), caller)
            m = int(round(self.explore * k))
            if self.batch == "shares":  # each candidate's best-ranked samples, by its weight's share of k - m
                shares = fwd.global_weights().detach().float().cpu()
                idx = _round_robin(torch.empty(0, dtype=torch.long, device=scores.device), cand.ranks,
                                   _quotas(shares, k - m), red)
            elif self.batch in ("diverse", "cluster_top"):  # k-means over the top diverse_factor * (k - m)
                idx = _diverse_top(pool, scores, k - m, self.diverse_factor, seed, red,
                                   best_of_cell=self.batch == "cluster_top")
            else:
                idx = red.topk(scores, k - m)
            if m and self.explore_from == "random":
                idx = _explore_random(idx, n, m, _derive_seed(seed, 4))
            elif m:
                idx = _explore(idx, cand.ranks, m, red, self.prior if self.explore_from == "prior" else None)
            # the returned ids, for the next fit's new=; which candidates picked each, for the
            # credit only (sharded, that costs a collective)
            self._pending = {"ids": idx.cpu(),
                             "picks": _picks_of(idx, cand.picks, red) if self.credit is not None else None}
            if self.credit_view == "query" or self.b_view == "query":  # the batch as this round's features see it
                self._pending["x"] = x[idx.to(x.device)].detach().to("cpu", torch.float32)
            if red.shard is None:  # how the batch and the pool look (FitReport.margins)
                z_batch = pool.logits[idx.to(pool.logits.device)]
                if self.b_view == "query":
                    self._pending["logits"] = z_batch.detach().to("cpu", torch.float32)
                self._pending["margin_at_query"] = _mean_margin(z_batch)
                if self.report_ is not None:
                    self.report_.margins.update(self._pool_margins(pool, x, n, _derive_seed(seed, 5)))
        return QueryResult(indices=idx.to(pool.device), scores=scores, weights=weights,
                           strategies=self.strategies, mc_source=mc_source)

    @torch.no_grad()
    def _pool_margins(self, pool: PoolOutputs, x, n: int, seed: int) -> dict:
        """FitNet's and the task model's mean margins on up to 4096 seeded pool rows."""
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:4096]
        self.fitnet_.eval()
        xr = x[rows.to(x.device)].to(self.device)
        return {"fitnet_pool": _mean_margin(self.fitnet_(xr.to(torch.float32) if xr.is_floating_point() else xr)),
                "task_pool": _mean_margin(pool.logits[rows.to(pool.logits.device)])}

    def _pool_for_candidates(self, pool: PoolOutputs, caller):
        if not any(s in MC_BASED for s in self.strategies):
            return pool, None
        if pool.mc_logits is not None:
            return pool, "mc_logits"
        if pool.head is not None and pool.embeddings is not None:
            return pool, "head"
        if self.mc_head == "fitnet" and self.backbone is None and pool.embeddings is not None:
            head = _DeviceHead(self.fitnet_, self.device)
            return PoolOutputs(pool.logits, embeddings=pool.embeddings, head=head, n_mc=self.n_mc), "fitnet"
        raise ValueError(
            f"the candidates {[s for s in self.strategies if s in MC_BASED]} need stochastic predictions "
            f"({caller}): pass PoolOutputs(..., mc_logits=...) or (..., head=<dropout head>), or use "
            "AutoAL(mc_head='fitnet') without a backbone"
        )

    # ------------------------------------------------------------------ query_model
    def query_model(self, model: nn.Module, data, labeled_ids, labels, unlabeled_ids, k=None, *,
                    head="auto", mc_passes: int = 0, batch_size: int | None = None,
                    outputs_dir=None, outputs_dtype="float32", progress: bool = False):
        """Fit on the labeled set and query the unlabeled one, running the task model once per set.

        Model protocol: ``model(x)`` returns ``(logits, embeddings)`` for a batch ``x``
        (logits (b, n_classes), embeddings (b, n_features)). The model is run in eval mode
        under ``torch.no_grad()``: no augmentation, BatchNorm statistics untouched; its
        training flags are restored afterwards.

        Parameters
        ----------
        model : torch.nn.Module
        data : torch.Tensor of shape (n_total, ...) or a map-style Dataset
            Indexed by the global ids. A Dataset item is ``x`` or a tuple whose first
            element is ``x``; batches are read through a DataLoader in id order.
        labeled_ids, unlabeled_ids : array-like of int
            Global ids of the labeled and unlabeled samples (disjoint).
        labels : array-like of int, shape (len(labeled_ids),)
        k : int, default=None
            How many to query; defaults to ``budget``.
        head : "auto", torch.nn.Module or None, default="auto"
            Classifier head with dropout over the embeddings, run in train mode for the MC
            candidates (cheap passes over cached embeddings). "auto": ``model.head`` if the
            model has an nn.Module attribute ``head``, else none.
        mc_passes : int, default=0
            If > 0, the pool's stochastic predictions are instead ``mc_passes`` full forward
            passes with only the model's Dropout modules in train mode (BatchNorm stays in
            eval), taken in the same streamed pass over the data.
        batch_size : int, default=None
            Forward batch size; defaults to ``min(chunk_size, 1024)``.
        outputs_dir : str or path-like, default=None
            None keeps the unlabeled pool's outputs in memory (n x (C + D) floats, plus
            T x n x C with ``mc_passes``). Given a folder, they are streamed batch by batch
            into ``logits.npy``, ``embeddings.npy`` (and ``mc_logits.npy``) there
            (created, or overwritten), which are then read back memory-mapped: the query
            streams them in chunks, so a 10M-sample pool never sits in RAM.
        outputs_dtype : {"float32", "float16"}, default="float32"
            Storage type of those files (float16 halves them; scores are computed in
            float32 either way). Only used with ``outputs_dir``.
        progress : bool, default=False
            A progress bar (tqdm) over the unlabeled pool's forward pass.

        Returns
        -------
        The chosen global ids (same type as ``unlabeled_ids``: numpy in, numpy out), best first.
        """
        caller = "AutoAL.query_model"
        plan = StreamPlan.check(model, labeled_ids, unlabeled_ids, head=head, mc_passes=mc_passes,
                                batch_size=batch_size if batch_size is not None else min(self.chunk_size, 1024),
                                caller=caller, n_total=_data_len(data))
        n_unl = int(plan.unlabeled_ids.numel())
        if k is None:
            if self.budget is None:
                raise ValueError(f"k is required ({caller}) when AutoAL has no budget")
            k = self.budget
        k = check_k(k, n_unl, caller, pool_name="len(unlabeled_ids)")
        sink = OutputSink(n_unl, plan.mc_passes, outputs_dir, outputs_dtype, caller)

        def mc_seed():  # drawn after the labeled pass, as the unlabeled one is seeded with it
            return (_derive_seed(self.seed, self.round_, 3) if self.seed is not None
                    else int(torch.randint(0, 2**62, (1,)).item()))

        lab, unl = plan.run(data, sink, mc_seed, progress)
        random_set = None
        if self.judge == "random_set":
            if self._random_ids is None:  # the labeled set AL started from
                self._random_ids = plan.labeled_ids.long().cpu().clone()
            pos, found = _find_ids(plan.labeled_ids, self._random_ids)
            random_set = pos[found]
        self.fit(lab, labels, k=k, n_pool=n_unl, new=self._new_from_ids(plan.labeled_ids), random_set=random_set)
        res = self.query(unl, k)
        self.last_query_ = res
        out = plan.global_ids(res.indices, like=unlabeled_ids)
        if self._pending is not None:  # the credit finds them by global id in the next labeled_ids
            self._pending["ids"] = torch.as_tensor(np.asarray(out)).long().cpu()
        return out

    def _new_from_ids(self, labeled_ids):
        """Positions in ``labeled_ids`` of the last query_model's picks, or None when the credit
        is off, nothing is pending, or they are not all labelled now."""
        if self._pending is None:
            return None
        pos, found = _find_ids(labeled_ids, self._pending["ids"])
        if not bool(found.all()):
            self._pending = None
            return None
        return pos

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to query again or warm-start the next round (no pool data).

        A deep copy (the nets are small): later rounds do not change a saved state, and
        an AutoAL loaded from it shares no tensors with this one.
        """
        self._check_fitted("AutoAL.state_dict")
        return copy.deepcopy({
            "version": _STATE_VERSION,
            "strategies": self.strategies,
            "round": self.round_,
            "fitted": dict(self._fitted),
            "fitnet": self.fitnet_.state_dict(),
            "searchnet": self.searchnet_.state_dict(),
            "opt_fit": self._opt_fit.state_dict(),
            "opt_search": self._opt_search.state_dict(),
            "nets": {"fit_hidden": self.fit_hidden, "search_hidden": self.search_hidden,
                     "dropout": self.dropout, "search_optimizer": self.search_optimizer},
            "credit": {"sum": list(self._credit_sum), "count": list(self._credit_count),
                       "pending": None if self._pending is None else dict(self._pending)},
            "random_ids": self._random_ids,
            "judge_then": self._judge_then,
            "memory": {"sum": list(self._memory_sum), "rounds": list(self._memory_rounds)},
        })

    def load_state_dict(self, state: dict) -> "AutoAL":
        """Restore nets, optimisers and round counters saved by ``state_dict``.

        The AutoAL must be built with the same strategies (and backbone, if any). Its
        ``device`` is used, or CPU when None.
        """
        caller = "AutoAL.load_state_dict"
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"state must be a dict from AutoAL.state_dict (version {_STATE_VERSION}) ({caller})")
        self._check_nets_state(state, caller)
        if tuple(state["strategies"]) != self.strategies:
            raise ValueError(f"state was saved with strategies {list(state['strategies'])}, this AutoAL has "
                             f"{list(self.strategies)} ({caller})")
        names = ("fit_hidden", "search_hidden", "dropout", "search_optimizer", "device", "fitnet_",
                 "searchnet_", "_opt_fit", "_opt_search")
        before = {a: getattr(self, a) for a in names}  # restored if the state does not load
        try:
            nets = state["nets"]
            self.fit_hidden, self.search_hidden = nets["fit_hidden"], nets["search_hidden"]
            self.dropout, self.search_optimizer = nets["dropout"], nets["search_optimizer"]
            fitted = dict(state["fitted"])
            device = self.device if self.device is not None else torch.device("cpu")
            self.device = device
            d = fitted["x_shape"]
            x_sample = torch.zeros((2, *d))
            self._make_nets(x_sample, fitted["n_classes"], device, True, True)
            for key, obj in (("fitnet", self.fitnet_), ("searchnet", self.searchnet_), ("opt_fit", self._opt_fit),
                             ("opt_search", self._opt_search)):
                try:
                    obj.load_state_dict(state[key])
                except (RuntimeError, ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"state[{key!r}] does not fit the nets its state['nets'] and "
                                     f"state['fitted'] describe ({caller}): {type(e).__name__}: {e}") from e
        except BaseException:
            for a, v in before.items():
                setattr(self, a, v)
            raise
        cr = state.get("credit")  # states saved before the credit lack it
        K = len(self.strategies)
        if isinstance(cr, dict) and len(cr.get("sum", ())) == K and len(cr.get("count", ())) == K:
            self._credit_sum = [float(v) for v in cr["sum"]]
            self._credit_count = [float(v) for v in cr["count"]]
            pend = cr.get("pending")
            self._pending = None if pend is None else {"ids": torch.as_tensor(pend["ids"]).long(),
                                                      "picks": None if pend.get("picks") is None else
                                                      torch.as_tensor(pend["picks"]).bool()}
            for key, as_type in (("x", lambda v: torch.as_tensor(v).float()),
                                 ("logits", lambda v: torch.as_tensor(v).float()), ("margin_at_query", float)):
                if pend is not None and pend.get(key) is not None:  # kept by query for some options only
                    self._pending[key] = as_type(pend[key])
        else:
            self._credit_sum, self._credit_count, self._pending = [0.0] * K, [0.0] * K, None
        mem = state.get("memory")  # states saved before memory= lack it
        if isinstance(mem, dict) and len(mem.get("sum", ())) == K and len(mem.get("rounds", ())) == K:
            self._memory_sum = [float(v) for v in mem["sum"]]
            self._memory_rounds = [int(v) for v in mem["rounds"]]
        else:
            self._memory_sum, self._memory_rounds = [0.0] * K, [0] * K
        jt = state.get("judge_then")
        self._judge_then = None if jt is None else {"x": torch.as_tensor(jt["x"]).float(),
                                                     "y": torch.as_tensor(jt["y"]).long()}
        rid = state.get("random_ids")  # states saved before judge="random_set" lack it
        self._random_ids = None if rid is None else torch.as_tensor(rid).long().cpu()
        self._fitted = fitted
        self.round_ = int(state["round"])
        return self

    def get_params(self) -> dict:
        """Every constructor parameter as this AutoAL holds it (as scikit-learn's ``get_params``):
        ``AutoAL(**al.get_params())`` builds an unfitted copy with the same settings. ``prior``
        comes back as it was given, ``strategies`` as a tuple, ``device`` as set (None until
        the first ``fit`` when it was None)."""
        names = [n for n in inspect.signature(AutoAL.__init__).parameters if n != "self"]
        out = {n: getattr(self, n) for n in names}
        out["prior"] = copy.deepcopy(self._prior_given)
        return out

    def __repr__(self):
        return (f"AutoAL(strategies={list(self.strategies)}, budget={self.budget}, device={self.device}, "
                f"seed={self.seed}, round_={self.round_})")


def _find_ids(ids, want: torch.Tensor) -> tuple:
    """(positions in ``ids`` of each of ``want``, a mask of those found); a position is
    meaningless where the mask is False."""
    lab = torch.as_tensor(ids).long().cpu()
    want = want.long().cpu()
    if lab.numel() == 0:
        return torch.zeros_like(want), torch.zeros(want.shape, dtype=torch.bool)
    order = torch.argsort(lab)
    pos = torch.searchsorted(lab[order], want).clamp_max(lab.numel() - 1)
    return order[pos], lab[order][pos] == want


def _as_positions(value, name: str, n: int, caller: str) -> torch.Tensor:
    """``value`` as a CPU LongTensor of distinct positions in [0, n); else a ValueError naming it."""
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of int positions into labeled ({caller}); got "
                         f"dtype {t.dtype}, shape {tuple(t.shape)}")
    t = t.to(torch.int64).cpu()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"{name} must hold positions in [0, {n}) of labeled ({caller}); got values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    if torch.unique(t).numel() != t.numel():
        raise ValueError(f"{name} must not repeat a position ({caller})")
    return t


def _split_with_new(perm, new_pos, n: int, judge_share: float, judge_from=None, b_new_only: bool = False):
    """(A, B, C) positions of the labeled set in ``perm``'s order. C is about
    ``judge_share * n`` (at least 2; none when judge_share is 0) and A half of the rest;
    with ``new_pos`` (None: none), A and C come from the other samples only (both scaled
    down, at least 2 each, where those are too few) and B is the remaining older
    samples plus ``new_pos``. With ``judge_from`` (positions; None: any), C is drawn from
    those of the older samples only, and is smaller when they are fewer (when fewer than 2
    are left, ``judge_from`` is ignored). With ``b_new_only``, B is ``new_pos`` alone and the
    remaining older samples join A."""
    if new_pos is None:
        new_pos = perm[:0]
    is_new = torch.zeros(n, dtype=torch.bool)
    is_new[new_pos] = True
    old = perm[~is_new[perm]]
    n_c = max(2, int(round(judge_share * n))) if judge_share > 0 else 0
    n_a = (n - n_c) // 2
    if n_a + n_c > old.numel():  # scale both to the older samples, at least 2 each
        scale = old.numel() / (n_a + n_c)
        n_c = max(2, int(n_c * scale)) if n_c else 0
        n_a = max(2, min(old.numel() - n_c, int(n_a * scale)))
    if judge_from is not None and n_c:
        allowed = torch.zeros(n, dtype=torch.bool)
        allowed[judge_from] = True
        pick = old[allowed[old]]
        if pick.numel() >= 2:
            ic = pick[pick.numel() - min(n_c, pick.numel()):]
            in_c = torch.zeros(n, dtype=torch.bool)
            in_c[ic] = True
            rest = old[~in_c[old]]
            return _a_b(rest[:n_a], rest[n_a:], new_pos, b_new_only) + (ic,)
    return _a_b(old[:n_a], old[n_a:old.numel() - n_c], new_pos, b_new_only) + (old[old.numel() - n_c:],)


def _a_b(ia, rest, new_pos, b_new_only: bool) -> tuple:
    """(A, B): the older samples left over join B (or A, with ``b_new_only``), then ``new_pos``."""
    return (torch.cat([ia, rest]), new_pos) if b_new_only else (ia, torch.cat([rest, new_pos]))


def _diverse_top(pool: PoolOutputs, scores: torch.Tensor, k: int, factor: float, seed: int, red,
                 best_of_cell: bool = False):
    """k indices: the samples nearest the centroids of k-means (the kmeans strategy, seeded)
    over the embeddings of the top ``ceil(factor * k)`` of ``scores`` (all of them when fewer),
    in kmeans' serving order. With ``best_of_cell``, each of those k samples stands for its
    cell instead (the top samples nearest to it, ties to the earlier one in serving order) and
    the cell's highest-scored sample is taken (ties to the lower pool index). One process only
    (``query`` checks)."""
    from .strategies import select

    if k == 0:
        return torch.empty(0, dtype=torch.long, device=scores.device)
    top = red.topk(scores, min(red.n_total, int(math.ceil(factor * k))))
    if top.numel() <= k:
        return top
    rows = top.to(pool.embeddings.device)
    sub = PoolOutputs(pool.logits[rows.to(pool.logits.device)], pool.embeddings[rows])
    pick = select("kmeans", sub, k, seed=seed).to(top.device)
    if not best_of_cell:
        return top[pick]
    emb = sub.embeddings.to(torch.float32)
    cell = torch.cdist(emb, emb[pick.to(emb.device)]).argmin(1).to(top.device)  # first minimum: serving order
    # each cell's first member in (score descending, pool index ascending) order: three stable sorts
    order = torch.sort(top, stable=True).indices
    order = order[torch.sort(scores[top[order]].to(torch.float64), descending=True, stable=True).indices]
    order = order[torch.sort(cell[order], stable=True).indices]
    cells, counts = torch.unique_consecutive(cell[order], return_counts=True)
    out = top[pick].clone()  # a cell left empty (its centre equals an earlier one's) gives its centre
    out[cells] = top[order[torch.cumsum(counts, 0) - counts]]
    return out


def _explore(idx, ranks, m: int, red, shares=None):
    """``idx`` (the top k - m by score) plus m more, round-robin over the candidates: each in
    turn adds its best-ranked sample not chosen yet (rank ties to the lower index), each
    candidate's quota of the m in proportion to ``shares`` (K,; None: equal)."""
    shares = torch.ones(ranks.shape[1]) if shares is None else torch.as_tensor(shares)
    return _round_robin(idx, ranks, _quotas(shares, m), red)


def _mean_margin(logits) -> float:
    """Mean top-2 softmax margin of a (n, C) block of logits (any float dtype); NaN when empty."""
    z = torch.as_tensor(logits).float()
    if z.shape[0] == 0:
        return float("nan")
    if z.shape[1] < 2:
        return 1.0
    top = torch.softmax(z, 1).topk(2, dim=1).values
    return float((top[:, 0] - top[:, 1]).mean())


def _explore_random(idx, n: int, m: int, seed: int):
    """``idx`` plus m more drawn uniformly at random (seeded) from the other rows of the pool,
    in the order drawn."""
    keys = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    keys[idx.cpu()] = -1.0  # below every draw: never taken again
    extra = torch.topk(keys, m).indices
    return torch.cat([idx, extra.to(idx.device)])


def _quotas(shares: torch.Tensor, total: int) -> list:
    """``total`` split in proportion to ``shares`` (K,) by largest remainder (ties to the
    lower index); the quotas sum to ``total``."""
    want = shares.double() / shares.double().sum() * total
    q = torch.floor(want).long()
    rest = total - int(q.sum())
    if rest > 0:
        frac = want - q.double()
        order = sorted(range(len(q)), key=lambda j: (-float(frac[j]), j))
        for j in order[:rest]:
            q[j] += 1
    return q.tolist()


def fill_round_robin(chosen: list, lists: list, quotas: list) -> list:
    """The ``sum(quotas)`` picks that follow ``chosen``: the ranked ``lists`` in turn, each
    while its quota lasts, add their first entry not chosen yet. A list with none left spends
    its quota, so fewer come back only when every list is used up. Pure Python: the one
    round-robin of the exploration share, also used by ``benchmarks/share_value.py``."""
    taken, extra = set(chosen), []
    ptr, left, m = [0] * len(lists), [int(q) for q in quotas], int(sum(quotas))
    while len(extra) < m and any(left):
        for j, lst in enumerate(lists):
            if len(extra) == m or not left[j]:
                continue
            while ptr[j] < len(lst) and lst[ptr[j]] in taken:
                ptr[j] += 1
            if ptr[j] < len(lst):
                taken.add(lst[ptr[j]])
                extra.append(lst[ptr[j]])
            left[j] -= 1
    return extra


def _round_robin(idx, ranks, quotas: list, red):
    """``idx`` plus ``sum(quotas)`` more: the candidates in turn, each while its quota lasts,
    add their best-ranked sample not chosen yet (rank ties to the lower index)."""
    K = ranks.shape[1]
    need = int(idx.numel()) + int(sum(quotas))
    lists = [red.topk(ranks[:, j].to(torch.float32), min(need, red.n_total)).tolist() if quotas[j] else []
             for j in range(K)]
    extra = fill_round_robin(idx.tolist(), lists, quotas)
    return torch.cat([idx.cpu(), torch.tensor(extra, dtype=torch.long)]).to(idx.device)


def _picks_of(idx, picks, red) -> torch.Tensor:
    """(k, K) bool: which candidates picked each of the global indices ``idx``; sharded,
    each rank fills its own rows and one all-reduce gives every rank the whole matrix."""
    if red.shard is None:
        return picks[idx.to(picks.device)].bool().cpu()
    import torch.distributed as dist

    sh = red.shard
    g = idx.cpu()
    out = torch.zeros((g.numel(), picks.shape[1]), dtype=torch.float32)
    mine = (g >= sh.offset) & (g < sh.offset + sh.n_local)
    if bool(mine.any()):
        out[mine] = picks[(g[mine] - sh.offset).to(picks.device)].float().cpu()
    dist.all_reduce(out, group=red.group)
    return out > 0.5


def _check_embeddings(x: torch.Tensor, name: str, caller: str) -> None:
    """The nets read these: at least one feature, finite, within float32."""
    if x.ndim == 2 and x.shape[1] == 0 and x.shape[0] > 0:
        raise ValueError(f"{name} must have at least one feature ({caller}); got shape {tuple(x.shape)}")
    if x.is_floating_point():
        check_finite_rows(x, name, caller)


def _raise_bad_features(bad, name: str, caller: str) -> None:
    if bad is None:
        return
    row, finite = bad
    if finite:
        raise ValueError(f"{name} overflow float32 at row {row} ({caller}): finite values beyond "
                         f"+/-{FLOAT32_MAX:.4g}, which SearchNet's float32 pass cannot hold; rescale them")
    raise ValueError(f"{name} contain NaN/inf at row {row} ({caller})")


def _data_len(data):
    """len(data) when data is a tensor, an array or a sized Dataset; else None."""
    if isinstance(data, torch.Tensor) or is_array(data):
        return int(data.shape[0]) if data.ndim else None
    try:
        return len(data)
    except TypeError:
        return None


class _threads:
    """Temporarily set torch's CPU thread count (no-op on CUDA)."""

    def __init__(self, n: int, device):
        self.n = n if torch.device(device).type == "cpu" else None

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None and self.n != self.old:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.old:
            torch.set_num_threads(self.old)


class _DeviceHead(nn.Module):
    """FitNet as MC-dropout head over pool embeddings that may live on another device."""

    def __init__(self, net: nn.Module, device):
        super().__init__()
        self.net = net
        self.device = device

    def forward(self, e):
        return self.net(e.to(self.device, torch.float32)).to(e.device)

    def mc_prefix(self, e):
        return self.net.mc_prefix(e.to(self.device, torch.float32)), e.device

    def mc_suffix(self, state):
        h, device = state
        return self.net.mc_suffix(h).to(device)
