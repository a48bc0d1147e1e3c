"""Fused uncertainty scores: all six in one pass over a chunk of logits.

Scores (docs/method.md; higher = query first), from logits ``z`` of shape
(n, C) and stochastic logits ``mc`` of shape (T, n, C):

- ``entropy``          -sum_c p_c log p_c
- ``margin``           -(p_(1) - p_(2))
- ``least_confidence`` 1 - max_c p_c
- ``var_ratio``        1 - (count of the modal argmax over the T samples) / T
- ``bald``             H(mean_t p_t) - mean_t H(p_t)
- ``mean_std``         mean over classes of the population std over t of p_t,c

Three layers, as style.md section 5 asks:

1. ``reference_scores``: the plain torch version, one score at a time, as
   eager code would write it. It is the test oracle and the benchmark baseline.
   Memory traffic: every score re-reads its input and materialises softmax
   (entropy 3 passes over z, margin 2 plus a top-k, var_ratio/bald/mean_std
   one softmax over mc each, plus their reductions).
2. ``fused_scores_torch``: the same math as ONE fused expression per input
   (single max/argmax, exp, sums; a streaming-friendly form), run through
   ``torch.compile`` on CPU (inductor emits one C++/OpenMP loop nest) or eagerly.
3. ``fused_scores_triton``: one Triton program per block of rows, looping over
   class blocks with an online (rescaled) max/sum, so C=1000 or wider works;
   masks use neutral fills (-inf before a max, 0 before a sum); offsets are
   int64; float16/bfloat16/float32/float64 inputs are read as they are and
   accumulated in float32. It runs on CUDA tensors, or on CPU tensors under
   TRITON_INTERPRET=1 (tests).

Numerics (all three layers compute in float32): with m = max z, the
"rest" r = sum_{c != argmax} exp(z_c - m) and s = 1 + r,

    entropy = log1p(r) - sum_c exp(z_c - m)(z_c - m) / s
    least_confidence = r / s                 (no 1 - 1/s cancellation)
    margin = expm1(z_(2) - m) / s            (no 1 - exp(.) cancellation)

so tiny scores of confident rows keep their relative precision. mean_std uses
Welford's update over t of p - p(t=0) (Triton) or a two-pass mean (torch), not E[p^2]-E[p]^2.
bald is a difference of two entropies; its float32 absolute error is about
1e-7 * log(C), which is what the tests allow on top of rtol.

Argmax ties (var_ratio) go to the lower class index, as ``numpy.argmax``.
Non-finite inputs are flagged per row in the same pass (bit ``BAD_LOGITS`` /
``BAD_MC`` of the returned ``flags``); the caller raises.

4. ``fused_scores_c``: C++ on CPU (``autoal_fast._C``, csrc/uncertainty.cpp),
   one row at a time, one read and one exp per input value, OpenMP over rows.

CPU path choice, measured on the 2-core dev machine (AMD EPYC, shared and
noisy; torch 2.13 CPU), 200k x 100 float32 logits + T=10 mc_logits, all six
scores, best of 5 in one run: plain C 0.91 s, torch.compile of the fused
expression 1.66 s (it re-evaluates exp about 3 times per value over ~9 loop
nests; 20k-row chunks: 0.49-3 s, too noisy to tune), eager fused 14 s, eager
one-by-one reference about 11 s. So "auto" on CPU is the C++ kernel, then torch.compile
when the extension is missing; benchmarks/bench_uncertainty.py re-measures.
"""
from __future__ import annotations

import contextlib
import functools

import torch

SCORE_NAMES = ("entropy", "margin", "least_confidence", "var_ratio", "bald", "mean_std")
LOGIT_NAMES = SCORE_NAMES[:3]
MC_NAMES = SCORE_NAMES[3:]
#: Bits of the per-row ``flags`` output.
BAD_LOGITS = 1
BAD_MC = 2

try:  # Triton is optional: the CPU path never needs it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    tl = None


# --------------------------------------------------------------------------
# 1. Plain torch reference (one score at a time)
# --------------------------------------------------------------------------
def reference_scores(logits=None, mc_logits=None, names=SCORE_NAMES, dtype=torch.float32) -> dict:
    """The six scores computed one by one in eager torch (the oracle / baseline).

    Parameters
    ----------
    logits : Tensor of shape (n, n_classes), default=None
        Needed by entropy, margin, least_confidence.
    mc_logits : Tensor of shape (n_mc, n, n_classes), default=None
        Needed by var_ratio, bald, mean_std.
    names : iterable of str
        Which scores.
    dtype : torch.dtype, default=torch.float32
        Compute type (inputs are upcast to it).

    Returns
    -------
    dict name -> Tensor of shape (n,) in ``dtype``.
    """
    out = {}
    for name in names:
        if name in LOGIT_NAMES:
            z = logits.to(dtype)
            if name == "entropy":
                out[name] = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)
            elif name == "margin":
                top2 = torch.softmax(z, -1).topk(2, dim=-1).values
                out[name] = -(top2[:, 0] - top2[:, 1])
            else:
                out[name] = 1.0 - torch.softmax(z, -1).amax(-1)
        elif name in MC_NAMES:
            x = mc_logits.to(dtype)
            t = x.shape[0]
            if name == "var_ratio":
                a = x.argmax(-1)  # (T, n)
                mode = torch.mode(a, dim=0).values
                out[name] = 1.0 - (a == mode).sum(0).to(dtype) / t
            elif name == "bald":
                p = torch.softmax(x, -1)
                logp = torch.log_softmax(x, -1)
                pbar = p.mean(0)
                h_mean = -(pbar * torch.log(pbar.clamp_min(torch.finfo(dtype).tiny))).sum(-1)
                mean_h = -(p * logp).sum(-1).mean(0)
                out[name] = h_mean - mean_h
            else:
                p = torch.softmax(x, -1)
                out[name] = p.std(0, correction=0).mean(-1)
        else:
            raise ValueError(f"unknown score name {name!r}; valid: {list(SCORE_NAMES)}")
    return out


# --------------------------------------------------------------------------
# 2. Fused torch expression (torch.compile on CPU, or eager)
# --------------------------------------------------------------------------
def _logit_part(z: torch.Tensor):
    """entropy, margin, least_confidence and a bad-row mask from (n, C) logits."""
    z = z.float()
    bad = ~torch.isfinite(z).all(-1)
    m, idx = z.max(-1, keepdim=True)  # first occurrence on ties
    d = z - m
    e = torch.exp(d)
    is_top = torch.arange(z.shape[-1], device=z.device) == idx
    rest = torch.where(is_top, 0.0, e).sum(-1)
    z2 = torch.where(is_top, float("-inf"), z).amax(-1)
    tsum = (e * d).sum(-1)
    s = rest + 1.0
    ent = torch.log1p(rest) - tsum / s
    lc = rest / s
    margin = torch.expm1(z2 - m.squeeze(-1)) / s
    return ent, margin, lc, bad


def _mc_part(x: torch.Tensor):
    """var_ratio, bald, mean_std and a bad-row mask from (T, n, C) logits."""
    x = x.float()
    t = x.shape[0]
    bad = ~torch.isfinite(x).all(-1).all(0)
    m, idx = x.max(-1, keepdim=True)  # (T, n, 1)
    d = x - m
    e = torch.exp(d)
    is_top = torch.arange(x.shape[-1], device=x.device) == idx
    rest = torch.where(is_top, 0.0, e).sum(-1)  # (T, n)
    s = rest + 1.0
    h_t = torch.log1p(rest) - (e * d).sum(-1) / s  # (T, n)
    p = e / s.unsqueeze(-1)
    pbar = p.mean(0)  # (n, C)
    std = (p - pbar).square().mean(0).sqrt()
    mean_std = std.mean(-1)
    h_bar = -torch.where(pbar > 0, pbar * torch.log(torch.where(pbar > 0, pbar, 1.0)), 0.0).sum(-1)
    bald = h_bar - h_t.mean(0)
    a = idx.squeeze(-1)  # (T, n)
    counts = (a.unsqueeze(0) == a.unsqueeze(1)).sum(1)  # (T, n): how often a_t occurs
    var_ratio = 1.0 - counts.amax(0).float() / t
    return var_ratio, bald, mean_std, bad


def _fused_l(z):
    return _logit_part(z)


def _fused_m(x):
    return _mc_part(x)


def _fused_lm(z, x):
    return _logit_part(z) + _mc_part(x)


_FUSED = {(True, False): _fused_l, (False, True): _fused_m, (True, True): _fused_lm}


@functools.lru_cache(maxsize=None)
def _compiled(key):
    # dynamic=True: one graph for every chunk length / T; dtype changes add a
    # graph each (at most 4). Each (do_logits, do_mc) variant is its own
    # function so that the recompile limit is never approached.
    return torch.compile(_FUSED[key], dynamic=True)


def fused_scores_torch(logits, mc_logits, do_logits: bool, do_mc: bool, compile: bool = True):
    """All requested scores of one chunk in one fused torch expression.

    Parameters
    ----------
    logits : Tensor of shape (n, C) or None
    mc_logits : Tensor of shape (T, n, C) or None
    do_logits, do_mc : bool
        Which half to compute (the other half's inputs are not read).
    compile : bool, default=True
        Run through ``torch.compile`` (else eager).

    Returns
    -------
    scores : dict name -> float32 Tensor of shape (n,)
    flags : int32 Tensor of shape (n,): ``BAD_LOGITS`` | ``BAD_MC`` bits per row.
    """
    key = (bool(do_logits), bool(do_mc))
    fn = _compiled(key) if compile else _FUSED[key]
    args = tuple(a for a, use in ((logits, do_logits), (mc_logits, do_mc)) if use)
    res = fn(*args)
    scores, flags = {}, None
    if do_logits:
        ent, margin, lc, bad_l = res[:4]
        scores.update(entropy=ent, margin=margin, least_confidence=lc)
        flags = bad_l.int() * BAD_LOGITS
        res = res[4:]
    if do_mc:
        vr, bald, mstd, bad_m = res
        scores.update(var_ratio=vr, bald=bald, mean_std=mstd)
        fm = bad_m.int() * BAD_MC
        flags = fm if flags is None else flags | fm
    return scores, flags


# --------------------------------------------------------------------------
# 3. Triton kernel
# --------------------------------------------------------------------------
#: Widest class block one program holds; wider rows loop over blocks.
MAX_BLOCK_C = 1024

if triton is not None:

    @triton.jit
    def _load_tile(ptr, rows, cols, row_ok, col_ok, stride_r, stride_c):
        """float32 tile; invalid columns of valid rows are -inf (neutral for a
        max), invalid rows are 0 (so they never make NaN); plus a per-row
        flag of non-finite values among the valid entries."""
        msk = row_ok[:, None] & col_ok[None, :]
        z = tl.load(ptr + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=msk, other=0.0)
        z = z.to(tl.float32)
        nonfinite = (z != z) | (tl.abs(z) == float("inf"))
        bad = tl.max(tl.where(msk & nonfinite, 1, 0), axis=1)
        z = tl.where(col_ok[None, :], z, float("-inf"))
        return z, bad

    @triton.jit
    def _log1p(x):
        # Goldberg's trick: exact to a few ulp without a libdevice call.
        u = 1.0 + x
        den = tl.where(u == 1.0, 1.0, u - 1.0)
        return tl.where(u == 1.0, x, tl.log(u) * (x / den))

    @triton.jit
    def _expm1(x):
        # Kahan's trick (x <= 0 here): exact to a few ulp.
        u = tl.exp(x)
        lu = tl.where((u == 1.0) | (u == 0.0), 1.0, tl.log(u))
        return tl.where(u == 1.0, x, tl.where(u == 0.0, -1.0, (u - 1.0) * (x / lu)))

    @triton.jit
    def _row_stats(ptr, rows, row_ok, cols0, C, stride_r, stride_c, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
        """One streamed pass over the classes of a row block: max m, second max
        z2, argmax, rest = sum_{c != argmax} exp(z_c - m), tsum = sum exp(d) d."""
        m = tl.full([BLOCK_N], float("-inf"), tl.float32)
        z2 = tl.full([BLOCK_N], float("-inf"), tl.float32)
        arg = tl.zeros([BLOCK_N], dtype=tl.int32)
        rest = tl.zeros([BLOCK_N], dtype=tl.float32)
        tsum = tl.zeros([BLOCK_N], dtype=tl.float32)
        bad = tl.zeros([BLOCK_N], dtype=tl.int32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + cols0
            col_ok = cols < C
            z, b = _load_tile(ptr, rows, cols, row_ok, col_ok, stride_r, stride_c)
            bad = tl.maximum(bad, b)
            b1 = tl.max(z, axis=1)
            bi = tl.argmax(z, axis=1, tie_break_left=True)
            is_top = cols0[None, :] == bi[:, None]
            b2 = tl.max(tl.where(is_top, float("-inf"), z), axis=1)
            newmax = b1 > m
            m_new = tl.maximum(m, b1)
            z2 = tl.maximum(tl.minimum(m, b1), tl.maximum(z2, b2))
            arg = tl.where(newmax, (c0 + bi).to(tl.int32), arg)
            # m == -inf only before the first block: keep every term finite.
            shift = tl.where(m == float("-inf"), 0.0, m - m_new)
            a = tl.exp(shift)
            a = tl.where(m == float("-inf"), 0.0, a)
            d = z - m_new[:, None]
            e = tl.exp(d)  # exp(-inf) = 0 on masked columns
            ed = tl.where(col_ok[None, :], e * d, 0.0)
            blk_all = tl.sum(e, axis=1)
            blk_excl = tl.sum(tl.where(is_top, 0.0, e), axis=1)
            s_old = rest + tl.where(m == float("-inf"), 0.0, 1.0)
            tsum = a * (tsum + shift * s_old) + tl.sum(ed, axis=1)
            rest = tl.where(newmax, (rest + tl.where(m == float("-inf"), 0.0, 1.0)) * a + blk_excl,
                            rest + blk_all)
            m = m_new
        return m, z2, arg, rest, tsum, bad

    @triton.jit
    def _one_block_stats(ptr, row_off, cols, C, stride_c, EVEN_C: tl.constexpr):
        """The row statistics of ``_row_stats`` when every class fits one block,
        in four reductions per row instead of seven: (max, argmax), the second
        max, rest and tsum (standard reductions only: the interpreter runs a
        custom combine function element by element). ``row_off`` holds in-range
        row offsets (rows past N are clamped to N - 1 by the caller and their
        results not stored), so only a ragged class tail is masked.

        Non-finite inputs: ``e * d + z * 0`` is NaN exactly when z is NaN or
        +-inf, so ``bad`` is ``tsum != tsum`` and costs no extra reduction.
        ``d`` is clamped at -FLT_MAX so that finite rows spanning more than
        FLT_MAX (z - m overflowing to -inf, e = 0) never make 0 * inf.
        Also returns the tile e = exp(z - m) (0 on masked columns)."""
        ptrs = ptr + row_off[:, None] + cols[None, :] * stride_c
        if EVEN_C:
            z = tl.load(ptrs).to(tl.float32)
        else:
            z = tl.load(ptrs, mask=(cols < C)[None, :], other=float("-inf")).to(tl.float32)
        m, arg = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
        is_top = cols[None, :] == arg[:, None]
        z2 = tl.max(tl.where(is_top, float("-inf"), z), axis=1)
        d = tl.maximum(z - m[:, None], -3.4028234663852886e38)
        e = tl.exp(d)
        ed = e * d + z * 0.0
        if not EVEN_C:
            ed = tl.where((cols < C)[None, :], ed, 0.0)
        rest = tl.sum(tl.where(is_top, 0.0, e), axis=1)
        tsum = tl.sum(ed, axis=1)
        bad = (tsum != tsum).to(tl.int32)
        return m, z2, arg, rest, tsum, bad, e

    @triton.jit
    def _welford_shifted(p, p0, mean_q, m2, t):
        """One Welford step over t of q = p - p0, p0 the t = 0 sample.

        The shift keeps the running sums at the scale of the spread, not of p:
        on a GPU, 1 / (t + 1) is not exactly rounded, and unshifted that
        1-ulp error of p (~3e-8 at p = 0.5) lands in M2 whole, which was 0.25%
        of a 5e-4 std (the C=2 GPU check). Returns (p0, mean_q, m2)."""
        p0 = tl.where(t == 0, p, p0)
        q = p - p0
        delta = q - mean_q
        mean_q += delta * (1.0 / (t + 1.0))
        m2 += delta * (q - mean_q)
        return p0, mean_q, m2

    @triton.jit
    def _mean_std_terms(p0, mean_q, m2, col_ok, T):
        """(-sum_c pbar log pbar, sum_c std_c) of a class block from the Welford state."""
        mean = p0 + mean_q
        plog = mean * tl.log(tl.where(mean > 0.0, mean, 1.0))
        std = tl.where(col_ok[None, :], tl.sqrt(tl.maximum(m2 / T, 0.0)), 0.0)
        return -tl.sum(plog, axis=1), tl.sum(std, axis=1)

    @triton.jit
    def _pick(tile, tcols, t):
        """Column t of a (BLOCK_N, BLOCK_T) tile."""
        return tl.sum(tl.where(tcols[None, :] == t, tile, 0), axis=1)

    @triton.jit
    def _uncertainty_kernel(
        z_ptr, mc_ptr, out_ptr, flag_ptr,
        N, C, T,
        stride_zn, stride_zc,
        stride_mt, stride_mn, stride_mc,
        stride_out,
        DO_LOGITS: tl.constexpr, DO_MC: tl.constexpr, ONE_BLOCK: tl.constexpr, EVEN_C: tl.constexpr,
        VEC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    ):
        pid = tl.program_id(0).to(tl.int64)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
        row_ok = rows < N
        # one-block path: rows past N read row N - 1 (never stored), so loads need no row mask
        rows_ld = tl.minimum(rows, N - 1)
        cols0 = tl.arange(0, BLOCK_C)
        flags = tl.zeros([BLOCK_N], dtype=tl.int32)

        if DO_LOGITS:
            if ONE_BLOCK:
                # VEC: the host checked that row offsets are multiples of VEC elements,
                # so VEC contiguous classes can be read as one vector load
                z_off = tl.multiple_of(rows_ld * stride_zn, VEC)
                m, z2, arg, rest, tsum, bad, _e = _one_block_stats(z_ptr, z_off, cols0, C, stride_zc, EVEN_C)
            else:
                m, z2, arg, rest, tsum, bad = _row_stats(
                    z_ptr, rows, row_ok, cols0, C, stride_zn, stride_zc, BLOCK_C, BLOCK_N)
            s = rest + 1.0
            ent = _log1p(rest) - tsum / s
            margin = _expm1(tl.where(row_ok, z2 - m, 0.0)) / s
            lc = rest / s
            tl.store(out_ptr + 0 * stride_out + rows, ent, mask=row_ok)
            tl.store(out_ptr + 1 * stride_out + rows, margin, mask=row_ok)
            tl.store(out_ptr + 2 * stride_out + rows, lc, mask=row_ok)
            flags = flags | (bad * 1)

        if DO_MC:
            tcols = tl.arange(0, BLOCK_T)
            args = tl.zeros([BLOCK_N, BLOCK_T], dtype=tl.int32)
            h_sum = tl.zeros([BLOCK_N], dtype=tl.float32)
            bad_mc = tl.zeros([BLOCK_N], dtype=tl.int32)
            h_bar = tl.zeros([BLOCK_N], dtype=tl.float32)
            std_sum = tl.zeros([BLOCK_N], dtype=tl.float32)
            if ONE_BLOCK:
                # All classes fit one block: a single read of mc, two reductions per (row, t).
                col_ok = cols0 < C
                p0 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
                mean_q = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
                m2 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
                x_off = tl.multiple_of(rows_ld * stride_mn, VEC)
                xt_ptr = mc_ptr  # advanced by stride_mt per t: 64-bit pointer math, no int32 wrap
                for t in range(0, T):
                    mt, z2t, at, rest, tsum, b, e = _one_block_stats(xt_ptr, x_off, cols0, C, stride_mc, EVEN_C)
                    xt_ptr += stride_mt
                    bad_mc = tl.maximum(bad_mc, b)
                    s = rest + 1.0
                    h_sum += _log1p(rest) - tsum / s
                    args = tl.where(tcols[None, :] == t, at[:, None].to(tl.int32), args)
                    p0, mean_q, m2 = _welford_shifted(e / s[:, None], p0, mean_q, m2, t)
                h_bar, std_sum = _mean_std_terms(p0, mean_q, m2, col_ok, T)
            else:
                # Wide rows: pass 1 streams classes per t for (m_t, s_t, H_t,
                # argmax_t); pass 2 streams class blocks, all t, for p_t,c.
                m_tile = tl.zeros([BLOCK_N, BLOCK_T], dtype=tl.float32)
                s_tile = tl.full([BLOCK_N, BLOCK_T], 1.0, dtype=tl.float32)
                xt_ptr = mc_ptr
                for t in range(0, T):
                    mt, z2t, at, rest, tsum, b = _row_stats(
                        xt_ptr, rows, row_ok, cols0, C, stride_mn, stride_mc, BLOCK_C, BLOCK_N)
                    xt_ptr += stride_mt
                    bad_mc = tl.maximum(bad_mc, b)
                    s = rest + 1.0
                    h_sum += _log1p(rest) - tsum / s
                    sel = tcols[None, :] == t
                    args = tl.where(sel, at[:, None], args)
                    m_tile = tl.where(sel, mt[:, None], m_tile)
                    s_tile = tl.where(sel, s[:, None], s_tile)
                for c0 in range(0, C, BLOCK_C):
                    cols = c0 + cols0
                    col_ok = cols < C
                    p0 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
                    mean_q = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
                    m2 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
                    xt_ptr = mc_ptr
                    for t in range(0, T):
                        z, b = _load_tile(xt_ptr, rows, cols, row_ok, col_ok, stride_mn, stride_mc)
                        xt_ptr += stride_mt
                        mt = _pick(m_tile, tcols, t)
                        st = _pick(s_tile, tcols, t)
                        p0, mean_q, m2 = _welford_shifted(tl.exp(z - mt[:, None]) / st[:, None], p0, mean_q, m2, t)
                    hb, ss = _mean_std_terms(p0, mean_q, m2, col_ok, T)
                    h_bar += hb
                    std_sum += ss
            # var_ratio: the modal argmax count over t (T^2 compares, T is small).
            best = tl.zeros([BLOCK_N], dtype=tl.int32)
            tvalid = tcols[None, :] < T
            for t in range(0, T):
                at = _pick(args, tcols, t)
                cnt = tl.sum(tl.where(tvalid & (args == at[:, None]), 1, 0), axis=1)
                best = tl.maximum(best, cnt)
            var_ratio = 1.0 - best.to(tl.float32) / T
            bald = h_bar - h_sum / T
            mean_std = std_sum / C
            tl.store(out_ptr + 3 * stride_out + rows, var_ratio, mask=row_ok)
            tl.store(out_ptr + 4 * stride_out + rows, bald, mask=row_ok)
            tl.store(out_ptr + 5 * stride_out + rows, mean_std, mask=row_ok)
            flags = flags | (bad_mc * 2)

        tl.store(flag_ptr + rows, flags, mask=row_ok)


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def launch_config(n_classes: int, n_mc: int, do_mc: bool, **overrides) -> dict:
    """Block sizes and warps for one launch (the one place these rules live).

    ``ONE_BLOCK`` (every class in one ``BLOCK_C`` block) takes the two-reduction
    path of ``_one_block_stats``; wider rows loop over class blocks with the online
    rescaling of ``_row_stats``. ``overrides`` (BLOCK_N, num_warps, ONE_BLOCK,
    VEC) are for tuning runs such as benchmarks/gpu/uncertainty.py; ``VEC`` is
    otherwise chosen per launch from the strides (see ``fused_scores_triton``).

    Measured on an H200 (Triton 3.6, benchmarks/results/gpu_h200_run6.json), one-block
    path, C=1000 (BLOCK_C=1024), ms for BLOCK_N / num_warps:

    - 1M x 1000 fp32 logits only: 1/1 1.51, 1/2 1.84, 2/2 2.12, 2/4 2.30, 4/4 2.34,
      1/4 2.42, 8/8 3.19 (the looped path at its best launch, 2/4: 2.88). One row
      per single-warp program keeps every reduction inside a warp (shuffles, no
      shared memory or barrier), so logits-only launches use one warp and
      ``MAX_BLOCK_C`` elements per program.
    - 100k x 1000 fp32, all six with T=10: 1/4 2.81, 2/4 3.37, 1/2 3.40, 2/8 4.28
      (looped 2/8: 7.40). The MC tiles (running mean and M2 of p) need more
      threads than one warp to stay in registers, so MC launches use 4 warps.

    Only C=1000 was swept; narrower rows keep ``MAX_BLOCK_C`` elements per program.
    Wider rows (the looped path) keep the earlier rule: two rows of ``MAX_BLOCK_C``,
    4 warps (8 with MC).
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1 (launch_config); got {n_classes}")
    block_c = min(_next_pow2(n_classes), MAX_BLOCK_C)
    block_t = max(2, _next_pow2(max(1, n_mc)))
    one_block = n_classes <= block_c
    if one_block:
        block_n = max(1, min(64, MAX_BLOCK_C // block_c))
        num_warps = 4 if do_mc else 1
    else:
        block_n = 2
        num_warps = 8 if do_mc else 4
    cfg = dict(BLOCK_N=block_n, BLOCK_C=block_c, BLOCK_T=block_t, ONE_BLOCK=one_block, num_warps=num_warps)
    unknown = set(overrides) - {"BLOCK_N", "num_warps", "ONE_BLOCK", "VEC"}
    if unknown:
        raise ValueError("launch_config overrides must be BLOCK_N, num_warps, ONE_BLOCK or VEC; "
                         f"got {sorted(unknown)}")
    if overrides.get("ONE_BLOCK") and n_classes > block_c:
        raise ValueError(f"ONE_BLOCK=True needs n_classes <= {block_c} (launch_config); got {n_classes}")
    cfg.update(overrides)
    return cfg


def _vec_width(tensors, row_dims, itemsize: int) -> int:
    """Widest VEC (elements, at most 16 bytes) dividing every row stride and the
    data pointer offset, with unit class stride; 1 otherwise."""
    vec = max(1, 16 // itemsize)
    while vec > 1:
        ok = True
        for a, dims in zip(tensors, row_dims):
            if a.stride(-1) != 1 or a.data_ptr() % (vec * itemsize) != 0 \
                    or any(a.stride(dim) % vec != 0 for dim in dims):
                ok = False
                break
        if ok:
            return vec
        vec //= 2
    return 1


def fused_scores_triton(logits, mc_logits, do_logits: bool, do_mc: bool, **config):
    """All requested scores of one chunk in one Triton launch.

    Same parameters and returns as ``fused_scores_torch``. Inputs may be any
    strides; they are read in place (no copy, no upcast). ``config``: launch
    overrides passed to ``launch_config``.
    """
    if triton is None:  # pragma: no cover
        raise RuntimeError("triton is not installed (fused_scores_triton)")
    ref = logits if do_logits else mc_logits
    n = int(ref.shape[-2])
    c = int(ref.shape[-1])
    t = int(mc_logits.shape[0]) if do_mc else 1
    device = ref.device
    out = torch.empty((6, n), dtype=torch.float32, device=device)
    flags = torch.empty((n,), dtype=torch.int32, device=device)
    if n == 0:
        return _pack(out, flags, do_logits, do_mc)
    cfg = launch_config(c, t, do_mc, **config)
    z = logits if do_logits else out  # dummy pointer when unused
    x = mc_logits if do_mc else out.unsqueeze(0)
    sz = (z.stride(0), z.stride(1)) if do_logits else (0, 0)
    sx = (x.stride(0), x.stride(1), x.stride(2)) if do_mc else (0, 0, 0)
    if "VEC" not in cfg:
        used = [(a, dims) for a, dims, use in ((z, (0,), do_logits), (x, (0, 1), do_mc)) if use]
        cfg["VEC"] = _vec_width([a for a, _ in used], [d for _, d in used], ref.element_size())
    grid = (triton.cdiv(n, cfg["BLOCK_N"]),)
    with _interpret_errstate(device):
        _uncertainty_kernel[grid](
            z, x, out, flags, n, c, t, sz[0], sz[1], sx[0], sx[1], sx[2], out.stride(0),
            DO_LOGITS=bool(do_logits), DO_MC=bool(do_mc), ONE_BLOCK=cfg["ONE_BLOCK"],
            EVEN_C=c == cfg["BLOCK_C"], VEC=cfg["VEC"],
            BLOCK_N=cfg["BLOCK_N"], BLOCK_C=cfg["BLOCK_C"], BLOCK_T=cfg["BLOCK_T"],
            num_warps=cfg["num_warps"],
        )
    return _pack(out, flags, do_logits, do_mc)


def _pack(out, flags, do_logits, do_mc):
    scores = {}
    if do_logits:
        scores.update(entropy=out[0], margin=out[1], least_confidence=out[2])
    if do_mc:
        scores.update(var_ratio=out[3], bald=out[4], mean_std=out[5])
    return scores, flags


def _interpret_errstate(device):
    """Under TRITON_INTERPRET=1 the kernel runs as numpy; rows holding NaN/inf
    (which we flag, then reject) would make numpy warn (and argmax of an all-NaN
    row raise a RuntimeWarning), so silence that there."""
    if torch.device(device).type == "cpu":
        return _quiet_numpy()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _quiet_numpy():
    import warnings

    import numpy as np

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        yield


# --------------------------------------------------------------------------
# 4. C++ on CPU (autoal_fast._C, csrc/uncertainty.cpp)
# --------------------------------------------------------------------------
# One row at a time, one read of each input value, one exp per value (a
# vectorised exp/log of our own so that `omp simd` loops vectorise without
# -ffast-math, which would break the NaN/inf checks); OpenMP over rows, as many
# threads as torch.get_num_threads(). Built with the package (CMake).


def has_c() -> bool:
    """Whether the compiled CPU kernel (autoal_fast._C) is importable."""
    try:
        from autoal_fast import _C  # noqa: F401
    except ImportError:
        return False
    return True


def fused_scores_c(logits, mc_logits, do_logits: bool, do_mc: bool, threads: int | None = None):
    """All requested scores of one CPU chunk with the compiled kernel.

    Same parameters and returns as ``fused_scores_torch``. float32 inputs whose
    class axis is contiguous are read in place; other dtypes/strides are
    converted chunk-wise (the caller's chunk budget covers it).
    """
    from autoal_fast import _C

    ref = logits if do_logits else mc_logits
    n = int(ref.shape[-2])
    out = torch.empty((6, n), dtype=torch.float32)
    flags = torch.zeros((n,), dtype=torch.int32)
    if n == 0:
        return _pack(out, flags, do_logits, do_mc)
    threads = threads or torch.get_num_threads()
    o = out.numpy()
    f = flags.numpy()
    if do_logits:
        _C.uncertainty_logits(_c_ready(logits).numpy(), o[0], o[1], o[2], f, threads)
    if do_mc:
        _C.uncertainty_mc(_c_ready(mc_logits).numpy(), o[3], o[4], o[5], f, threads)
    return _pack(out, flags, do_logits, do_mc)


def _c_ready(a: torch.Tensor) -> torch.Tensor:
    a = a.detach()
    if a.device.type != "cpu":
        raise ValueError(f"fused_scores_c needs CPU tensors; got device {a.device}")
    if a.dtype != torch.float32:
        a = a.float()
    if a.stride(-1) != 1:
        a = a.contiguous()
    return a


BACKENDS = ("auto", "triton", "c", "compile", "eager")


def fused_scores(logits, mc_logits, names=SCORE_NAMES, backend: str = "auto"):
    """Requested scores of one chunk: ``backend`` in ``BACKENDS``.

    "auto" takes Triton on CUDA (or under TRITON_INTERPRET=1), the C++
    kernel on CPU (torch.compile when the extension is missing). Returns
    ``(scores, flags, backend_used)``.
    """
    names = tuple(names)
    do_logits = any(nm in LOGIT_NAMES for nm in names)
    do_mc = any(nm in MC_NAMES for nm in names)
    if backend == "auto":
        backend = choose_backend((logits if do_logits else mc_logits).device)
    if backend == "triton":
        scores, flags = fused_scores_triton(logits, mc_logits, do_logits, do_mc)
    elif backend == "c":
        scores, flags = fused_scores_c(logits, mc_logits, do_logits, do_mc)
    elif backend in ("compile", "eager"):
        scores, flags = fused_scores_torch(logits, mc_logits, do_logits, do_mc, compile=backend == "compile")
    else:
        raise ValueError(f"backend must be one of {list(BACKENDS)} (fused_scores); got {backend!r}")
    return {nm: scores[nm] for nm in names}, flags, backend


def choose_backend(device) -> str:
    from autoal_fast._backend import use_triton

    if use_triton(torch.device(device)):
        return "triton"
    if torch.device(device).type == "cpu":
        return "c" if has_c() else "compile"
    return "eager"


__all__ = [
    "SCORE_NAMES", "LOGIT_NAMES", "MC_NAMES", "BAD_LOGITS", "BAD_MC",
    "reference_scores", "fused_scores_torch", "fused_scores_triton", "fused_scores_c", "fused_scores",
    "has_c", "BACKENDS",
    "choose_backend", "launch_config",
]
