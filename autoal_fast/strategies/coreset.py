"""coreset: exact k-center greedy (Sener & Savarese, ICLR 2018) on embeddings.

Each pick is the pool point whose distance to its nearest centre (labeled
samples and earlier picks) is largest; ties go to the lower pool index.

Starting point: with a labeled set, its embeddings are the initial centres,
and every pool row starts from its exact distance to the nearest labeled row:
the one with the smallest float64 difference-form squared distance, ties to
the lower labeled index, rounded once to float32. ``nearest_centres`` is the
plain reference (every pair through chunked ``||c||^2 - 2 x.c`` float32
matmuls; rows where a second labeled row comes within the matmul's rounding
bound are settled in float64). On CPU, ``nearest_labeled`` gives the same
result pruned: the labeled rows fall into ~4 sqrt(n_labeled) groups around
farthest-first anchors, one BLAS matmul gives each pool row its anchor
distances, and C++ (``_C.nearest_labeled_pruned``) skips every group whose
members the triangle inequality puts farther than the best found so far
(all float32 rounding bounded, so no nearest row is ever skipped). A probe
of 256 pool rows measures how many labeled rows survive; where pruning
cannot pay (isotropic high-dimensional data) the plain init runs instead.
Measured (``benchmarks/bench_lazy_greedy.py``, 1000 labeled, 2 threads, load
average ~1): class-structured 100k x 512 0.20 s vs 0.72 s plain, 1M x 512
1.70 s vs 7.77 s, ~10 of the 1000 labeled rows measured per pool row;
isotropic 100k x 512: the probe picks the plain init (0.73 s vs 0.77 s).
Without a labeled set, the first pick is the pool point nearest to the pool
mean (ties to the lower index): a deterministic, representative start; the
k-center 2-approximation holds from any start.

Cost: never an n x n matrix; memory is O(n) (float32 running minimum + int32
nearest-centre id) plus (n_labeled + k) x d float32 for the centres (the
pruned init holds one more, group-ordered copy of the labeled rows), plus
chunk temporaries under ``_greedy.CHUNK_BYTES``.

CPU pools the C++ step reads (float32 / float16 / bfloat16, unit feature
stride) use lazy evaluation (``_C.kcenter_lazy``): a point's distance to its
nearest centre only falls as centres are added, so a stale value is an upper
bound. The bounds sit in a max-heap ordered by (bound, lower index); the top
is refreshed against the centres added since its last refresh (O(d) per new
centre instead of a pass over the pool) until the top is fresh, which is then
the exact argmax, ties to the lower index. Distances are the fused step's bit
for bit, so the picks equal the one-pass-per-step greedy's exactly. Extra
memory: 8 bytes per row (heap) + 4 (refresh count) + k x d float32.
Elsewhere (CUDA, float64, the sharded path) each step uses the pruned engine of
``_greedy`` (triangle-inequality cluster bounds), falling back to a fused full
pass (Triton on CUDA, C++/OpenMP on CPU) when pruning cannot help.
float16 / bfloat16 CPU pools use the C++ step too, widening rows as they are read
(100k x 512 float16, 1000 labeled, k=1000, 2 threads, vs the torch step it replaced,
``benchmarks/coreset_16bit.py``: clustered 2.01 s vs 2.43 s, isotropic 9.7 s vs 207 s).

References
----------
Sener, O. and Savarese, S. "Active Learning for Convolutional Neural Networks:
A Core-Set Approach." ICLR 2018.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import _backend
from . import _greedy
from ._greedy import (CenterStore, EuclideanRows, PrunedGreedy, center_dists_euclid, cpp_rows,
                      rows_per_chunk, small_op_threads)

#: Use the C++ lazy greedy where it applies (False: the pruned engine, e.g. to compare).
LAZY = True
#: Counters of the last call (full passes, rows visited) for benchmarks.
last_stats: dict = {}


def _nearest_to_mean(x: torch.Tensor) -> int:
    n, d = x.shape
    rows = rows_per_chunk(8 * d)
    acc = torch.zeros(d, dtype=torch.float64, device=x.device)
    for lo in range(0, n, rows):
        acc += x[lo:lo + rows].to(torch.float64).sum(0)
    mean = (acc / n).to(torch.float32)
    best_v, best_i = None, 0
    rows = rows_per_chunk(4 * d)
    for lo in range(0, n, rows):
        d2 = (x[lo:lo + rows].to(torch.float32) - mean).pow_(2).sum(1)
        j = int(torch.argmin(d2))
        v = float(d2[j])
        if best_v is None or v < best_v:
            best_v, best_i = v, lo + j
    return best_i


def matmul_unit_roundoff() -> float:
    """Unit roundoff of torch's float32 matmuls under the current precision
    setting (``torch.get_float32_matmul_precision``): 2^-24 for 'highest', the
    TF32 / bfloat16 mantissa for 'high' / 'medium'."""
    return {"highest": 2.0 ** -24, "high": 2.0 ** -11}.get(torch.get_float32_matmul_precision(), 2.0 ** -8)


def _sq_dist64(xp, cent, col):
    """float64 difference-form squared distances of rows xp (float32) to cent[col]:
    the C++ kernel's summation order on CPU (the pruned init ranks by the same
    numbers), torch elsewhere."""
    ext = _greedy.load_ext()
    if xp.device.type == "cpu" and ext is not None and hasattr(ext, "sq_dist64_rows"):
        xp = xp if xp.stride(-1) == 1 else xp.contiguous()
        out = torch.empty(xp.shape[0], dtype=torch.float64)
        ext.sq_dist64_rows(xp.numpy(), cent.contiguous().numpy(), col.contiguous().numpy(), out.numpy(),
                           torch.get_num_threads())
        return out
    return (xp.to(torch.float64) - cent[col].to(torch.float64)).pow_(2).sum(1)


def _chunk_winners(xp, cent, d2s, xn, cmax, cnmax, gamma, unit):
    """Exact nearest column of each row of one matmul block: (float64 squared
    distance, column). d2s (rows, m) holds ||c||^2 - 2 x.c from a float32 matmul;
    its error is at most ``e`` per entry, so every column within 2e of the row's
    smallest value may be the nearest: rows with more than one such column are
    settled in float64 difference form (ties to the lower column)."""
    v, arg = d2s.min(1)
    e = 1.05 * (2.0 * gamma * xn * cmax + 2.0 * gamma * cnmax) + 8.0 * unit * v.abs() + 1e-30
    cut = v + 2.0 * e
    if d2s.shape[1] > 1:
        d2s.scatter_(1, arg[:, None], float("inf"))
        multi = torch.nonzero(d2s.min(1).values <= cut).view(-1)
        if multi.numel():
            mask = d2s[multi] <= cut[multi, None]
            mask[torch.arange(multi.numel()), arg[multi]] = True
            r, c = torch.nonzero(mask, as_tuple=True)
            dd = _sq_dist64(xp[multi[r]], cent, c)
            # per row: smallest float64 distance, then the lowest column
            o = torch.argsort(c, stable=True)
            o = o[torch.argsort(dd[o], stable=True)]
            o = o[torch.argsort(r[o], stable=True)]
            first = torch.ones(o.numel(), dtype=torch.bool)
            first[1:] = r[o][1:] != r[o][:-1]
            arg[multi[r[o][first]]] = c[o][first]
    return _sq_dist64(xp, cent, arg), arg


def nearest_centres(x: torch.Tensor, centres: torch.Tensor):
    """(mind, assign): exact distance to, and id of, the nearest row of ``centres``.

    x (n, d) any float dtype (possibly memmap-backed), centres (m, d) float32 on
    x's device, m >= 1. The plain reference of the labeled init: every pair
    through chunked ``||c||^2 - 2 x.c`` float32 matmuls. Their rounding error is
    bounded (``matmul_unit_roundoff``), so the rows where a second centre comes
    within that error of the smallest value are settled in float64 difference
    form. The nearest is the centre with the smallest float64 difference-form
    squared distance, ties to the lower index; mind is its square root, rounded
    once to float32 (torch's float32 sqrt is not always correctly rounded on
    CPU, which would break exact ties the pool steps keep).
    """
    n, d = x.shape
    m = centres.shape[0]
    cn = centres.to(torch.float64).pow(2).sum(1)
    cnmax = float(cn.max()) if m else 0.0
    cmax = cnmax ** 0.5 * (1.0 + 1e-6)
    cn = cn.to(torch.float32)
    unit = matmul_unit_roundoff()
    gamma = (d + 2) * unit / max(1e-12, 1.0 - (d + 2) * unit)
    cchunk = min(m, 4096)
    rows = rows_per_chunk(4 * (5 * d + 2 * cchunk))
    mind = torch.empty(n, dtype=torch.float32, device=x.device)
    assign = torch.empty(n, dtype=torch.int32, device=x.device)
    for lo in range(0, n, rows):
        xp = x[lo:lo + rows].to(torch.float32)
        xn = torch.linalg.vector_norm(xp, dim=1) * (1.0 + 1e-5)
        best, barg = None, None
        for a in range(0, m, cchunk):
            cent = centres[a:a + cchunk]
            d2s = torch.addmm(cn[None, a:a + cchunk], xp, cent.T, alpha=-2.0)
            d64, arg = _chunk_winners(xp, cent, d2s, xn, cmax, cnmax, gamma, unit)
            del d2s
            if best is None:
                best, barg = d64, arg
            else:  # strictly better only: ties stay with the lower chunk
                better = d64 < best
                best = torch.where(better, d64, best)
                barg = torch.where(better, arg + a, barg)
        mind[lo:lo + rows] = best.sqrt_().to(torch.float32)
        assign[lo:lo + rows] = barg.to(torch.int32)
    return mind, assign


#: The pruned labeled init is tried from this many labeled rows (fewer: the plain matmul init).
PRUNED_INIT_MIN_LABELED = 256
#: Pool rows of the probe that decides between the pruned and the plain init.
PROBE_ROWS = 256
#: Cost of one member distance of the pruned init (C++, float32 difference form) in units of one
#: row-centre pair of the plain init's BLAS matmul (measured on this 2-core machine: ~2.5).
MEMBER_COST = 2.5
#: The pruned init is used when its estimated cost is below this share of the plain init's.
PRUNED_MAX_SHARE = 0.6
#: Counters of the last nearest_labeled call.
last_init_stats: dict = {}


def n_anchor_groups(m: int) -> int:
    """Anchor groups of the pruned init for m labeled rows: 4 sqrt(m), within [1, m]."""
    return max(1, min(m, int(round(4.0 * m ** 0.5))))


def anchor_groups(lab: torch.Tensor, groups: int, ext):
    """Groups of the labeled rows for the pruned init: anchors by farthest-first
    traversal from row 0 (``_C.kcenter_lazy`` over the labeled rows), every row in
    the group of its nearest anchor by a float32 matmul (any assignment is exact:
    the radius is measured on the one made).

    Returns (order, start, anchors, anchor_sq, radius): the rows of group g are
    ``lab[order[start[g]:start[g + 1]]]`` (no empty group), anchors (G, d)
    float32, anchor_sq float64 (their exact squared norms) and radius float64,
    an upper bound on each member's distance to its anchor. Stops early once
    every row sits on an anchor (duplicate rows).
    """
    m, d = lab.shape
    # farthest-first = k-center greedy from row 0: the lazy C++ greedy, one thread (small work)
    mind = np.full(m, np.inf, np.float32)
    picks, _ = ext.kcenter_lazy(lab.numpy(), mind, np.zeros(m, np.int32), 0, min(groups, m), 0, 1)
    picks = picks[picks >= 0]
    anchors = lab[torch.from_numpy(picks)]
    # each row to (about) its nearest anchor: any assignment is exact, the radius covers it
    an = anchors.pow(2).sum(1)
    near_t = torch.cat([torch.addmm(an[None], lab[lo:lo + 8192], anchors.T, alpha=-2.0).argmin(1)
                        for lo in range(0, m, 8192)])
    near_t[torch.from_numpy(picks)] = torch.arange(len(picks))  # an anchor is in its own group
    # drop anchors left without members (duplicates of another anchor)
    used = torch.bincount(near_t, minlength=len(picks)) > 0
    if not bool(used.all()):
        remap = torch.cumsum(used.long(), 0) - 1
        anchors, near_t, picks = anchors[used], remap[near_t], picks[used.numpy()]
    # upper bound on each member's distance to its anchor: float64 difference form, inflated
    r = (lab.to(torch.float64) - anchors[near_t].to(torch.float64)).pow_(2).sum(1).sqrt_()
    radius = torch.zeros(len(picks), dtype=torch.float64).scatter_reduce_(0, near_t, r, "amax")
    radius = radius * (1.0 + 1e-9) + 1e-30
    order = torch.argsort(near_t, stable=True)
    counts = torch.bincount(near_t, minlength=len(picks))
    start = torch.zeros(len(picks) + 1, dtype=torch.int64)
    start[1:] = torch.cumsum(counts, 0)
    return order, start, anchors, anchors.to(torch.float64).pow(2).sum(1), radius


def nearest_labeled(x: torch.Tensor, lab: torch.Tensor, prune: str = "auto"):
    """(mind, assign) of every pool row to its nearest labeled row: equal to
    ``nearest_centres(x, lab)`` (the same float64 winner rule), pruned by the
    triangle inequality where the data allows it.

    x (n, d) CPU pool rows the C++ step reads (float32 / float16 / bfloat16,
    unit feature stride; otherwise, or without the extension, the plain
    ``nearest_centres``), lab (m, d) float32 CPU, contiguous. m == 0 gives
    mind +inf and assign -1.

    The labeled rows fall into G = ``n_anchor_groups(m)`` groups around anchors
    (``anchor_groups``); the anchor distances of a row block come from one BLAS
    matmul (n x G); C++ (``_C.nearest_labeled_pruned``) then visits the groups
    nearest-first and skips a group when d(x, anchor) - radius exceeds the best
    distance so far, every float32 rounding error bounded so that no skipped
    member can be the nearest. prune: 'auto' (a probe of ``PROBE_ROWS`` rows
    measures how many labeled rows survive the bounds; when the estimated cost
    is above ``PRUNED_MAX_SHARE`` of the plain init's, e.g. isotropic
    high-dimensional data, the plain init runs), 'always', 'never'.
    """
    n, d = x.shape
    lab = lab.to(device="cpu", dtype=torch.float32).contiguous()
    m = lab.shape[0]
    last_init_stats.clear()
    if m == 0:
        return (torch.full((n,), float("inf"), dtype=torch.float32),
                torch.full((n,), -1, dtype=torch.int32))
    ext = _greedy.load_ext()
    rows = cpp_rows(x, ext)
    unit = matmul_unit_roundoff()
    usable = (rows is not None and hasattr(ext, "nearest_labeled_pruned") and n > 0
              and (d + 2) * unit < 0.1 and prune != "never")
    if not usable or (prune == "auto" and m < PRUNED_INIT_MIN_LABELED):
        last_init_stats.update(path="plain", n=n, m=m)
        return nearest_centres(x, lab)
    xn, bf16 = rows
    nt = torch.get_num_threads()
    groups = n_anchor_groups(m)
    order, start, anchors, anchor_sq, radius = anchor_groups(lab, groups, ext)
    g = anchors.shape[0]
    lab_g = lab[order].contiguous()
    args = (lab_g.numpy(), order.numpy(), start.numpy())
    aT = anchors.T.contiguous()

    def run(xpart, xnp, out_m, out_a):
        dots = torch.mm(xpart.to(torch.float32), aT)
        return ext.nearest_labeled_pruned(xnp, *args, dots.numpy(), anchor_sq.numpy(), radius.numpy(),
                                          unit, out_m.numpy(), out_a.numpy(), nt, bfloat16=bf16)

    if prune == "auto":
        probe = torch.linspace(0, n - 1, min(n, PROBE_ROWS)).long().unique()
        xs = x[probe].contiguous()
        sm = torch.empty(len(probe), dtype=torch.float32)
        sa = torch.empty(len(probe), dtype=torch.int32)
        per_row = run(xs, cpp_rows(xs, ext)[0], sm, sa) / len(probe)
        share = (g + MEMBER_COST * per_row) / m
        if share > PRUNED_MAX_SHARE:
            last_init_stats.update(path="plain", n=n, m=m, groups=g, probe_members_per_row=per_row,
                                   est_share=share)
            return nearest_centres(x, lab)
    mind = torch.empty(n, dtype=torch.float32)
    assign = torch.empty(n, dtype=torch.int32)
    visited = 0
    step = min(8192, rows_per_chunk(4 * (d + g)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        visited += run(x[lo:hi], xn[lo:hi], mind[lo:hi], assign[lo:hi])
    last_init_stats.update(path="pruned", n=n, m=m, groups=g, members_per_row=visited / n)
    return mind, assign


def greedy_setup(x: torch.Tensor, k: int, labeled):
    """(store, metric, engine) of a k-center greedy over the rows of x.

    The store holds the labeled embeddings (float32, on x's device) and room for
    k picks; when there is a labeled set, the engine starts from each row's exact
    nearest-labeled distance. With no rows in x (an empty shard) metric and
    engine are None.
    """
    n, d = x.shape
    nl = 0 if labeled is None else labeled.n_samples
    store = CenterStore(nl + k, d, x.device)
    metric = eng = None
    if n:
        metric = EuclideanRows(x)
        eng = PrunedGreedy(
            n, nl + k, x.device,
            update_rows=lambda idx, c, cid: metric.update(idx, c, cid, eng.mind, eng.assign),
            center_dists=lambda c: center_dists_euclid(store, c, metric),
        )
    if nl:
        _copy_rows_f32(labeled.embeddings, store.x[:nl])
        store.size = nl
        if n:
            mind, assign = nearest_centres(x, store.x[:nl])
            eng.set_initial(mind, assign, nl)
    return store, metric, eng


def _copy_rows_f32(src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Copy the rows of src (any float dtype or device, possibly memmap-backed) into the
    float32 tensor out, in chunks under ``CHUNK_BYTES``; returns out."""
    step = rows_per_chunk(4 * src.shape[1])
    for lo in range(0, src.shape[0], step):
        out[lo:lo + step] = src[lo:lo + step].to(device=out.device, dtype=torch.float32)
    return out


def _lazy_picks(x: torch.Tensor, k: int, labeled):
    """Picks of the C++ lazy greedy (CPU LongTensor), or None where it does not apply."""
    ext = _greedy.load_ext() if LAZY else None
    if ext is not None and _backend.use_triton(x.device):
        from ..kernels import distance as kd

        if kd.HAS_TRITON:  # the Triton step (CUDA, or TRITON_INTERPRET=1) keeps the pruned engine
            return None
    rows = cpp_rows(x, ext)
    if rows is None or not hasattr(ext, "kcenter_lazy"):
        return None
    xn, bf16 = rows
    n, d = x.shape
    nl = 0 if labeled is None else labeled.n_samples
    t0 = time.perf_counter()
    if nl:
        lab = _copy_rows_f32(labeled.embeddings, torch.empty(nl, d, dtype=torch.float32))
        mind, assign = nearest_labeled(x, lab)  # pruned where the data allows, else plain
        first = -1
    else:
        mind = torch.full((n,), float("inf"), dtype=torch.float32)
        assign = torch.zeros(n, dtype=torch.int32)
        first = _nearest_to_mean(x)
    t1 = time.perf_counter()
    picks, (refreshes, pops) = ext.kcenter_lazy(xn, mind.numpy(), assign.numpy(), nl, k, first,
                                                torch.get_num_threads(), bfloat16=bf16)
    _backend.record("coreset", "cpp")
    last_stats.clear()
    last_stats.update(full_passes=int(first >= 0), rows_visited=int(refreshes), heap_pops=int(pops),
                      n=n, k=k, backend="cpp", lazy=True, init_s=t1 - t0, greedy_s=time.perf_counter() - t1,
                      init_path=last_init_stats.get("path") if nl else None)
    return torch.from_numpy(picks)


def select_coreset(pool, k: int, labeled=None) -> torch.LongTensor:
    """k-center greedy picks, in selection order (validated input assumed).

    Parameters
    ----------
    pool : PoolOutputs with embeddings of shape (n_pool, n_features)
    k : int, 1 <= k <= n_pool
    labeled : PoolOutputs with embeddings of shape (n_labeled, n_features), default=None

    Returns
    -------
    torch.LongTensor of shape (k,) on the pool's device.
    """
    x = pool.embeddings
    n = x.shape[0]
    lazy = _lazy_picks(x, k, labeled)
    if lazy is not None:
        return lazy.to(x.device)
    store, metric, eng = greedy_setup(x, k, labeled)
    first = None if labeled is not None and labeled.n_samples else _nearest_to_mean(x)
    picks = torch.empty(k, dtype=torch.long)
    with small_op_threads(x.device) as nt:
        metric.threads = nt
        for t in range(k):
            i = first if (t == 0 and first is not None) else int(torch.argmax(eng.mind))
            c = metric.vec(i)
            eng.add_centre(c, point=i)  # uses the centres stored so far
            store.add(c)
            picks[t] = i
    _backend.record("coreset", metric.backend)
    last_stats.clear()
    last_stats.update(full_passes=eng.full_passes, rows_visited=eng.rows_visited, n=n, k=k,
                      backend=metric.backend)
    return picks.to(x.device)
