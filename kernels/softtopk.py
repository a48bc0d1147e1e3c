"""Soft top-k: ``s = sigmoid((a - tau) / T)`` with ``tau`` solved so that ``sum(s) = k``.

The differentiable selection of AutoAL's search (docs/method.md, step 6). Two
implementations of the same algorithm live here, the torch reference first:

- ``soft_topk_torch``: torch (CPU or CUDA), an ``autograd.Function`` with the
  analytic backward below; it stops early once ``tau`` has converged. On CPU the
  solve keeps its scalars on the host (``solve_tau_host``), on CUDA it is vectorised
  over rows (``solve_tau_torch``); same iteration, same result up to rounding.
- ``soft_topk_triton``: one Triton program per row; the forward solves ``tau``
  and writes ``s``, the backward applies the closed-form vector-Jacobian product.
  On CPU it runs only under ``TRITON_INTERPRET=1`` (how the tests check it).

Solve. ``f(tau) = sum_i sigmoid((a_i - tau)/T) - k`` is strictly decreasing in
``tau``. With ``L = |logit(k/N)| + 1`` the bracket ``[min(a) - T L, max(a) + T L]``
holds the root (at its ends every ``s_i`` is at least ``sigmoid(L) >= k/N``,
resp. at most ``sigmoid(-L) <= k/N``). Each iteration computes ``f`` and
``f'`` in one pass, shrinks the bracket by the sign of ``f`` and takes the
Newton step when it stays inside the bracket, the midpoint otherwise
(safeguarded Newton: bisection's guarantee, Newton's quadratic finish). No
gradient flows through the iterations.

Gradient (implicit function theorem). With ``d_i = s_i (1 - s_i) / T`` and
``D = sum_i d_i``, differentiating ``sum_i s_i = k`` gives
``dtau/da_j = d_j / D``, hence ``ds_i/da_j = d_i delta_ij - d_i d_j / D`` and
the vector-Jacobian product

    grad_a = d * (g - <g, d> / D).

It sums to zero over a row (shifting every ``a`` leaves ``s`` unchanged). The
gradient with respect to ``k`` (``<g, d> / D``) and ``T`` is not needed by the
search: both are constants there and get ``None``.

Shapes: ``a`` of shape (n,) or (rows, n); ``k`` a float in (0, n) shared by the
rows. Computation in float32 (float64 for float64 input); ``s`` has ``a``'s
dtype. Private: validation is done by ``autoal_fast.search.relax.soft_topk``.
"""
from __future__ import annotations

import math

import torch

#: Iterations of the safeguarded Newton solve. 40 covers float64 (the
#: bracket alone shrinks by 2**-40); in practice Newton converges in under 15
#: and the torch path stops there.
DEFAULT_ITERS = 40


def bracket_margin(k: float, n: int) -> float:
    """``L = |logit(k/n)| + 1``: the bracket half-margin, in units of T."""
    p = k / n
    return abs(math.log(p) - math.log1p(-p)) + 1.0


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- torch reference
def solve_tau_torch(a: torch.Tensor, k: float, temperature: float, n_iter: int = DEFAULT_ITERS,
                    early_exit: bool = True) -> torch.Tensor:
    """tau of shape (rows,) for ``a`` of shape (rows, n) in the accumulation dtype."""
    n = a.shape[-1]
    t = float(temperature)
    margin = t * bracket_margin(k, n)
    lo = a.amin(dim=1) - margin
    hi = a.amax(dim=1) + margin
    tau = 0.5 * (lo + hi)
    inv_t = 1.0 / t
    tiny = torch.finfo(a.dtype).tiny
    eps = torch.finfo(a.dtype).eps
    for _ in range(n_iter):
        s = torch.sigmoid((a - tau[:, None]) * inv_t)
        f = s.sum(dim=1) - k
        fp = (s * (1.0 - s)).sum(dim=1) * inv_t
        pos = f > 0
        lo = torch.where(pos, tau, lo)
        hi = torch.where(pos, hi, tau)
        newton = tau + f / fp.clamp_min(tiny)
        ok = (fp > 0) & (newton >= lo) & (newton <= hi)
        new_tau = torch.where(ok, newton, 0.5 * (lo + hi))
        if early_exit and bool(((new_tau - tau).abs() <= 4 * eps * (tau.abs() + t)).all()):
            tau = new_tau
            break
        tau = new_tau
    return tau


def softtopk_backward_torch(s: torch.Tensor, grad: torch.Tensor, temperature: float) -> torch.Tensor:
    """grad_a = d * (g - <g, d> / D), d = s (1 - s) / T; rows along dim 0."""
    d = s * (1.0 - s) * (1.0 / temperature)
    dsum = d.sum(dim=1, keepdim=True)
    gd = (grad * d).sum(dim=1, keepdim=True)
    corr = torch.where(dsum > 0, gd / dsum.clamp_min(torch.finfo(d.dtype).tiny), torch.zeros_like(dsum))
    return d * (grad - corr)


def solve_tau_host(a: torch.Tensor, k: float, temperature: float, n_iter: int = DEFAULT_ITERS) -> torch.Tensor:
    """The same safeguarded Newton solve with the scalars on the host, row by row.

    For CPU tensors: about five tensor ops per iteration instead of a dozen (the
    bracket logic is Python float arithmetic), so small rows (the search's ~1k) pay
    little per-op overhead. Returns tau of shape (rows,) in a's dtype.
    """
    n = a.shape[-1]
    t = float(temperature)
    inv_t = 1.0 / t
    margin = t * bracket_margin(k, n)
    tiny = torch.finfo(a.dtype).tiny
    eps = torch.finfo(a.dtype).eps
    out = torch.empty(a.shape[0], dtype=a.dtype)
    amin, amax = a.amin(dim=1).tolist(), a.amax(dim=1).tolist()
    buf = torch.empty(n, dtype=a.dtype)
    for r in range(a.shape[0]):
        row = a[r]
        lo, hi = amin[r] - margin, amax[r] + margin
        tau = 0.5 * (lo + hi)
        for _ in range(n_iter):
            torch.sub(row, tau, out=buf).mul_(inv_t).sigmoid_()
            s1 = float(buf.sum())
            f = s1 - k
            fp = (s1 - float(torch.dot(buf, buf))) * inv_t
            if f > 0:
                lo = tau
            else:
                hi = tau
            newton = tau + f / max(fp, tiny)
            new_tau = newton if (fp > 0 and lo <= newton <= hi) else 0.5 * (lo + hi)
            done = abs(new_tau - tau) <= 4 * eps * (abs(tau) + t)
            tau = new_tau
            if done:
                break
        out[r] = tau
    return out


class _SoftTopKTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, k, temperature, n_iter):
        acc = a.to(_acc_dtype(a.dtype))
        with torch.no_grad():
            if acc.device.type == "cpu":
                tau = solve_tau_host(acc, k, temperature, n_iter)
            else:
                tau = solve_tau_torch(acc, k, temperature, n_iter)
            s = torch.sigmoid((acc - tau[:, None]) * (1.0 / temperature))
        ctx.save_for_backward(s)
        ctx.temperature = temperature
        ctx.in_dtype = a.dtype
        ctx.mark_non_differentiable(tau)
        return s.to(a.dtype), tau

    @staticmethod
    def backward(ctx, grad_s, grad_tau):
        (s,) = ctx.saved_tensors
        g = softtopk_backward_torch(s, grad_s.to(s.dtype), ctx.temperature)
        return g.to(ctx.in_dtype), None, None, None


def soft_topk_torch(a: torch.Tensor, k: float, temperature: float, n_iter: int = DEFAULT_ITERS):
    """Torch reference. ``a`` of shape (rows, n); returns ``(s, tau)``, tau of shape (rows,)."""
    return _SoftTopKTorch.apply(a, float(k), float(temperature), int(n_iter))


# --------------------------------------------------------------------------- Triton
try:  # Triton is optional: the torch path above needs none of this.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without triton
    triton = None

if triton is not None:

    @triton.jit
    def _sigmoid(x, tau, inv_t, zmax):
        """s = sigmoid((x - tau) / T), exp's argument capped at zmax."""
        return 1.0 / (1.0 + tl.exp(tl.minimum((tau - x) * inv_t, zmax)))

    @triton.jit
    def _softtopk_fwd_kernel(A, S, TAU, PARAMS, n, stride_a, stride_s,
                             N_ITER: tl.constexpr, BLOCK: tl.constexpr):
        # PARAMS (accumulation dtype): [k, T, T * L, tiny, zmax]; loaded, not passed as Python
        # floats, so that float64 rows solve in float64. zmax caps exp()'s argument below
        # overflow (sigmoid(-zmax) is below 1e-34 either way).
        row = tl.program_id(0).to(tl.int64)
        a_row = A + row * stride_a
        s_row = S + row * stride_s
        k = tl.load(PARAMS + 0)
        t = tl.load(PARAMS + 1)
        margin = tl.load(PARAMS + 2)
        tiny = tl.load(PARAMS + 3)
        zmax = tl.load(PARAMS + 4)
        acc_ty = k.dtype
        inv_t = 1.0 / t
        offs = tl.arange(0, BLOCK)
        vmin = tl.full([BLOCK], float("inf"), acc_ty)
        vmax = tl.full([BLOCK], float("-inf"), acc_ty)
        for start in range(0, n, BLOCK):
            o = start + offs
            m = o < n
            x = tl.load(a_row + o, mask=m, other=0.0).to(acc_ty)
            vmin = tl.minimum(vmin, tl.where(m, x, float("inf")))
            vmax = tl.maximum(vmax, tl.where(m, x, float("-inf")))
        lo = tl.min(vmin, axis=0) - margin
        hi = tl.max(vmax, axis=0) + margin
        tau = 0.5 * (lo + hi)
        for _ in range(N_ITER):
            acc_s = tl.zeros([BLOCK], acc_ty)
            acc_d = tl.zeros([BLOCK], acc_ty)
            for start in range(0, n, BLOCK):
                o = start + offs
                m = o < n
                sv = _sigmoid(tl.load(a_row + o, mask=m, other=0.0).to(acc_ty), tau, inv_t, zmax)
                acc_s += tl.where(m, sv, 0.0)
                acc_d += tl.where(m, sv * (1.0 - sv), 0.0)
            f = tl.sum(acc_s, axis=0) - k
            fp = tl.sum(acc_d, axis=0) * inv_t
            pos = f > 0
            lo = tl.where(pos, tau, lo)
            hi = tl.where(pos, hi, tau)
            newton = tau + f / tl.maximum(fp, tiny)
            ok = (fp > 0) & (newton >= lo) & (newton <= hi)
            tau = tl.where(ok, newton, 0.5 * (lo + hi))
        for start in range(0, n, BLOCK):
            o = start + offs
            m = o < n
            sv = _sigmoid(tl.load(a_row + o, mask=m, other=0.0).to(acc_ty), tau, inv_t, zmax)
            tl.store(s_row + o, sv.to(S.dtype.element_ty), mask=m)
        tl.store(TAU + row, tau)

    @triton.jit
    def _softtopk_bwd_kernel(S, G, GA, PARAMS, n, stride_s, stride_g, stride_ga, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        s_row = S + row * stride_s
        g_row = G + row * stride_g
        ga_row = GA + row * stride_ga
        t = tl.load(PARAMS + 1)
        tiny = tl.load(PARAMS + 3)
        acc_ty = t.dtype
        inv_t = 1.0 / t
        offs = tl.arange(0, BLOCK)
        acc_d = tl.zeros([BLOCK], acc_ty)
        acc_gd = tl.zeros([BLOCK], acc_ty)
        for start in range(0, n, BLOCK):
            o = start + offs
            m = o < n
            sv = tl.load(s_row + o, mask=m, other=0.0).to(acc_ty)
            gv = tl.load(g_row + o, mask=m, other=0.0).to(acc_ty)
            d = sv * (1.0 - sv) * inv_t
            acc_d += d
            acc_gd += gv * d
        dsum = tl.sum(acc_d, axis=0)
        gdsum = tl.sum(acc_gd, axis=0)
        corr = tl.where(dsum > 0, gdsum / tl.maximum(dsum, tiny), 0.0)
        for start in range(0, n, BLOCK):
            o = start + offs
            m = o < n
            sv = tl.load(s_row + o, mask=m, other=0.0).to(acc_ty)
            gv = tl.load(g_row + o, mask=m, other=0.0).to(acc_ty)
            d = sv * (1.0 - sv) * inv_t
            tl.store(ga_row + o, (d * (gv - corr)).to(GA.dtype.element_ty), mask=m)


def _launch(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for rows of n: a power of two covering a row up to 4096
    (longer rows are looped over in 4096-blocks), 8 warps above 1024."""
    block = max(16, min(4096, 1 << max(0, (n - 1).bit_length())))
    return block, 4 if block <= 1024 else 8


def _params(k: float, temperature: float, n: int, dtype: torch.dtype, device) -> torch.Tensor:
    fi = torch.finfo(dtype)
    zmax = 80.0 if dtype == torch.float32 else 700.0
    vals = [k, temperature, temperature * bracket_margin(k, n), fi.tiny, zmax]
    return torch.tensor(vals, dtype=dtype, device=device)


class _SoftTopKTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, k, temperature, n_iter):
        a2 = a.contiguous()
        rows, n = a2.shape
        acc = _acc_dtype(a.dtype)
        # s kept in the accumulation dtype for an accurate backward; returned in a's dtype.
        s = torch.empty((rows, n), dtype=acc, device=a.device)
        tau = torch.empty((rows,), dtype=acc, device=a.device)
        params = _params(k, temperature, n, acc, a.device)
        block, warps = _launch(n)
        _softtopk_fwd_kernel[(rows,)](a2, s, tau, params, n, a2.stride(0), s.stride(0),
                                      N_ITER=n_iter, BLOCK=block, num_warps=warps)
        ctx.save_for_backward(s, params)
        ctx.launch = (block, warps)
        ctx.in_dtype = a.dtype
        ctx.mark_non_differentiable(tau)
        return s.to(a.dtype), tau

    @staticmethod
    def backward(ctx, grad_s, grad_tau):
        s, params = ctx.saved_tensors
        g = grad_s.contiguous()
        rows, n = s.shape
        ga = torch.empty((rows, n), dtype=ctx.in_dtype, device=s.device)
        _softtopk_bwd_kernel[(rows,)](s, g, ga, params, n, s.stride(0), g.stride(0), ga.stride(0),
                                      BLOCK=ctx.launch[0], num_warps=ctx.launch[1])
        return ga, None, None, None


def soft_topk_triton(a: torch.Tensor, k: float, temperature: float, n_iter: int = DEFAULT_ITERS):
    """Triton kernels. ``a`` of shape (rows, n); returns ``(s, tau)``. Needs CUDA or TRITON_INTERPRET=1."""
    if triton is None:  # pragma: no cover
        raise RuntimeError("soft_topk_triton needs the triton package")
    return _SoftTopKTriton.apply(a, float(k), float(temperature), int(n_iter))
