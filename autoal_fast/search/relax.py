"""The differentiable pieces of the search: aggregation, soft top-k, count and ranking losses.

docs/method.md steps 5-7. The reference code's relaxation ``sigmoid(1e11 * (p - theta))``
is saturated (zero gradient) and its count regulariser is a Python float; here every
term has a gradient.
"""
from __future__ import annotations

import numbers

import torch

from .._backend import record, use_triton

__all__ = ["soft_topk", "aggregate", "count_penalty", "ranking_loss"]


def soft_topk(a: torch.Tensor, k: float, temperature: float = 0.1, n_iter: int | None = None,
              backend: str = "auto", return_tau: bool = False):
    """Soft top-k mask ``s = sigmoid((a - tau) / T)`` with ``sum(s) = k`` along the last dim.

    Parameters
    ----------
    a : torch.Tensor of shape (n,) or (rows, n)
        Scores; float16/bfloat16/float32/float64 (solved in float32, float64 in float64).
    k : float
        Target soft count, ``0 < k < n`` (need not be an integer).
    temperature : float, default=0.1
        T > 0; smaller is closer to a hard top-k and has a gradient on fewer samples.
    n_iter : int, default=None
        Iterations of the safeguarded Newton solve (kernels.softtopk.DEFAULT_ITERS).
    backend : {"auto", "triton", "torch"}, default="auto"
        "auto" is Triton on CUDA (or under TRITON_INTERPRET=1), torch otherwise; the
        choice is recorded in ``autoal_fast._backend.last_used["soft_topk"]``.
    return_tau : bool, default=False
        Also return tau (shape () or (rows,), no gradient).

    Returns
    -------
    s : torch.Tensor, same shape and dtype as ``a``; differentiable, with the exact
        implicit gradient (``ds/da`` includes the dependence of tau on every ``a``).

    Examples
    --------
    >>> import torch
    >>> from autoal_fast.search.relax import soft_topk
    >>> s = soft_topk(torch.tensor([3.0, 0.0, 2.0, -1.0]), k=2, temperature=0.05)
    >>> [round(v, 3) for v in s.tolist()]
    [1.0, 0.0, 1.0, 0.0]
    """
    from autoal_fast.kernels import softtopk as K

    caller = "soft_topk"
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"a must be a torch.Tensor ({caller}); got {type(a).__name__}")
    if not a.is_floating_point():
        raise TypeError(f"a must be a floating-point tensor ({caller}); got {a.dtype}")
    if a.ndim not in (1, 2) or a.shape[-1] < 1:
        raise ValueError(f"a must have shape (n,) or (rows, n) with n >= 1 ({caller}); got {tuple(a.shape)}")
    n = a.shape[-1]
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not 0 < float(k) < n:
        raise ValueError(f"k must be a number in (0, n={n}) ({caller}); got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not float(temperature) > 0:
        raise ValueError(f"temperature must be a number > 0 ({caller}); got {temperature!r}")
    n_iter = K.DEFAULT_ITERS if n_iter is None else int(n_iter)
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1 ({caller}); got {n_iter}")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch' ({caller}); got {backend!r}")
    if backend == "auto":
        backend = "triton" if use_triton(a.device) else "torch"
    if backend == "triton" and not use_triton(a.device):
        raise ValueError(f"backend='triton' needs a CUDA tensor or TRITON_INTERPRET=1 ({caller}); "
                         f"got a tensor on {a.device}")
    record("soft_topk", backend)
    a2 = a.reshape(1, n) if a.ndim == 1 else a
    fn = K.soft_topk_triton if backend == "triton" else K.soft_topk_torch
    s, tau = fn(a2, float(k), float(temperature), n_iter)
    if a.ndim == 1:
        s, tau = s.reshape(n), tau.reshape(())
    return (s, tau) if return_tau else s


def aggregate(weights: torch.Tensor, picks: torch.Tensor, ranks: torch.Tensor, theta: float,
              rank_mix: float) -> torch.Tensor:
    """Aggregated score ``a(x) = sum_k W_k(x) ((1 - m) S_k(x) + m r_k(x) - theta)``.

    weights, picks, ranks of shape (n, K): SearchNet's weights (rows on the simplex),
    the binary picks S_k and the rank-normalised scores r_k in [0, 1]. ``m = rank_mix``
    (0 gives the paper's ``sum_k W_k (S_k - theta)``; a small m breaks the ties among
    samples that the same strategies pick, and among those that none picks).
    """
    votes = picks if rank_mix == 0 else torch.lerp(picks, ranks, rank_mix)
    return (weights * (votes - theta)).sum(dim=-1)


def count_penalty(a: torch.Tensor, target: float, temperature: float):
    """Count regulariser on the threshold mask ``sigmoid(a / T)``: (penalty, soft count).

    The paper's ``L_re`` compares the count that SearchNet's own threshold (theta, inside
    ``a``) selects with the target ``t |B|``. Here the count is the soft one,
    ``sum_x sigmoid(a(x) / T)``, so the penalty has a gradient, and the penalty is
    ``log cosh((count - target) / target)``: quadratic near the target, linear far from
    it, zero at it (the paper's ``sigmoid(0.5 |.|)`` is flat far away and kinked at 0).
    The soft top-k itself always selects exactly ``target``; this term keeps SearchNet's
    scores calibrated so that its threshold agrees with the top-k (tau near 0).
    """
    count = torch.sigmoid(a / temperature).sum()
    z = (count - target) / target
    # log cosh(z) = |z| + log1p(exp(-2|z|)) - log 2, stable for large |z|
    pen = z.abs() + torch.log1p(torch.exp(-2.0 * z.abs())) - 0.6931471805599453
    return pen, count


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Learning-loss ranking objective (Yoo & Kweon, CVPR 2019) for the loss-prediction head.

    The batch is split into pairs (i, n-1-i); for each pair the head must order the
    predicted losses like the true ones, with a margin:
    ``mean(max(0, -sign(l_i - l_j) (p_i - p_j) + margin))``, where pairs whose
    losses differ by less than 1e-3 of the mean loss count as unordered (sign 0).
    ``target`` is FitNet's
    per-sample loss (detached by the caller); pairs are formed in the step's sample order.
    """
    n = pred.shape[0] // 2
    if n == 0:
        return pred.sum() * 0.0
    p1, p2 = pred[:n], pred.flip(0)[:n]
    t1, t2 = target[:n], target.flip(0)[:n]
    # Pairs whose true losses differ by less than a relative tolerance carry no
    # order (e.g. a FitNet that fits B perfectly): they add no gradient.
    diff = t1 - t2
    tol = 1e-3 * target.abs().mean() + 1e-12
    sign = torch.where(diff.abs() > tol, torch.sign(diff), torch.zeros_like(diff))
    return torch.clamp(-sign * (p1 - p2) + margin, min=0).mean()
