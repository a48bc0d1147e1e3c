"""coreset: exact k-center greedy (Sener & Savarese, ICLR 2018) on embeddings.

Each pick is the pool point whose distance to its nearest centre (labeled
samples and earlier picks) is largest; ties go to the lower pool index.

Starting point: with a labeled set, its embeddings are the initial centres
(nearest-labeled distances are computed in chunks with
``||a||^2 + ||b||^2 - 2ab`` matmuls to find the nearest labeled sample, then
recomputed exactly in difference form for that winner). Without one, the first
pick is the pool point nearest to the pool mean (ties to the lower index): a
deterministic, representative start; the k-center 2-approximation holds from
any start.

Cost: never an n x n matrix; memory is O(n) (float32 running minimum + int32
nearest-centre id) plus (n_labeled + k) x d float32 for the centres, plus
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


def nearest_centres(x: torch.Tensor, centres: torch.Tensor):
    """(mind, assign): exact distance to, and id of, the nearest row of ``centres``.

    x (n, d) any float dtype (possibly memmap-backed), centres (m, d) float32 on
    x's device. The argmin comes from chunked matmuls; the distance to the
    winner is recomputed in difference form (no cancellation) in float64 and
    rounded once to float32.
    """
    n, d = x.shape
    m = centres.shape[0]
    cn = centres.pow(2).sum(1)
    cchunk = min(m, 4096)
    rows = rows_per_chunk(4 * (5 * d + cchunk))
    mind = torch.empty(n, dtype=torch.float32, device=x.device)
    assign = torch.empty(n, dtype=torch.int32, device=x.device)
    for lo in range(0, n, rows):
        xp = x[lo:lo + rows].to(torch.float32)
        # argmin over centres of ||c||^2 - 2 x.c (||x||^2 is the same for the whole row)
        if m <= cchunk:
            barg = torch.addmm(cn[None, :], xp, centres.T, alpha=-2.0).argmin(1)
        else:
            best = torch.full((xp.shape[0],), float("inf"), device=x.device)
            barg = torch.zeros(xp.shape[0], dtype=torch.long, device=x.device)
            for a in range(0, m, cchunk):
                d2 = torch.addmm(cn[None, a:a + cchunk], xp, centres[a:a + cchunk].T, alpha=-2.0)
                v, i = d2.min(1)
                better = v < best
                best = torch.where(better, v, best)
                barg = torch.where(better, i + a, barg)
        # float64, then one rounding: torch's float32 sqrt is not always correctly
        # rounded on CPU, which would break exact ties the pool steps keep
        diff = xp.to(torch.float64) - centres[barg].to(torch.float64)
        mind[lo:lo + rows] = diff.pow_(2).sum(1).sqrt_().to(torch.float32)
        del diff
        assign[lo:lo + rows] = barg.to(torch.int32)
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
        lx = labeled.embeddings
        rows = rows_per_chunk(4 * d)
        for lo in range(0, nl, rows):
            store.x[lo:min(nl, lo + rows)] = lx[lo:lo + rows].to(device=x.device, dtype=torch.float32)
        store.size = nl
        if n:
            mind, assign = nearest_centres(x, store.x[:nl])
            eng.set_initial(mind, assign, nl)
    return store, metric, eng


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
    if nl:
        lab = torch.empty(nl, d, dtype=torch.float32)
        step = rows_per_chunk(4 * d)
        for lo in range(0, nl, step):
            lab[lo:lo + step] = labeled.embeddings[lo:lo + step].to(device="cpu", dtype=torch.float32)
        mind, assign = nearest_centres(x, lab)  # chunked BLAS matmuls under torch's threads
        first = -1
    else:
        mind = torch.full((n,), float("inf"), dtype=torch.float32)
        assign = torch.zeros(n, dtype=torch.int32)
        first = _nearest_to_mean(x)
    picks, (refreshes, pops) = ext.kcenter_lazy(xn, mind.numpy(), assign.numpy(), nl, k, first,
                                                torch.get_num_threads(), bfloat16=bf16)
    _backend.record("coreset", "cpp")
    last_stats.clear()
    last_stats.update(full_passes=int(first >= 0), rows_visited=int(refreshes), heap_pops=int(pops),
                      n=n, k=k, backend="cpp", lazy=True)
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
