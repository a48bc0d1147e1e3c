"""kmeans: k-means with k = b on the embeddings; the pool point nearest each
centroid is picked (the AutoAL paper's diversity candidate).

Procedure (seeded, deterministic for a given seed and backend):

1. Init: greedy k-means++ (D^2 sampling with ``2 + ln k`` candidates per
   step, the best kept; first centre uniform), as scikit-learn does, on a
   seeded uniform subsample of ``min(n, INIT_SAMPLE_PER_CENTRE * k)`` rows.
   On CUDA every step stays on the device and the steps are replayed as CUDA
   graphs (``kmeanspp_rows_device``; same procedure, inverse-CDF draws).
2. Lloyd iterations (``n_iter``, default 20) on the whole pool:
   - FAISS (``faiss.Kmeans`` seeded with the step-1 centroids, nredo=1; FAISS
     trains on at most 256 points per centroid, its documented subsampling)
     when faiss is installed, the pool is on CPU and its embeddings are
     float32 with unit stride (so FAISS reads them in place; a memmap is paged,
     not copied);
   - torch otherwise (CUDA pools, float16/bfloat16 pools, no faiss): chunked
     ``||c||^2 - 2 x c^T`` assignment under the chunk budget, centroid sums
     by ``index_add_``; stops early when no assignment changes; an empty
     cluster keeps its previous centroid.
   The backend is recorded as ``_backend.last_used["kmeans"]`` ("faiss-cpu" or
   "torch"). FAISS-GPU is not used for CUDA pools: it would need the pool on
   the host, and the PyPI faiss-gpu wheels do not load on CUDA 13 machines.
3. Snap: for every centroid the ``N_CANDIDATES`` nearest pool points are
   found in one chunked pass. Centroids are served in order of their nearest
   distance (ties to the lower centroid id); each takes its nearest unused
   point (ties to the lower pool index), and if all its candidates are taken,
   the nearest unused point found by an exact pass. The result is in that
   serving order.

References
----------
Wang, Zhan, Huang. "AutoAL: Automated Active Learning with Differentiable
Query Strategy Search." ICML 2025. Arthur and Vassilvitskii, "k-means++: The
Advantages of Careful Seeding." SODA 2007.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .. import _backend
from ._greedy import (SMALL_WORK, EuclideanRows, d2_sample, make_generator, rows_per_chunk,
                      small_op_threads, torch_threads)

N_ITER = 20
#: Init subsample rows per centre: 4 costs a quarter of 16 with the same final
#: cost (20k x 64 Gaussian mixture, k=500, 3 seeds: 1.98e6 vs 1.98e6).
INIT_SAMPLE_PER_CENTRE = 4
N_CANDIDATES = 8
#: Facts about the last call (backend, iterations run), for benchmarks.
last_stats: dict = {}


def kmeanspp_init(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ centroids (k, d) float32 from a seeded subsample of x's rows.

    As in scikit-learn's default: the first centre is uniform; then each step
    draws ``2 + floor(ln k)`` candidates by D^2 sampling and keeps the one that
    lowers the potential (sum of squared distances) most. Candidate potentials
    come from one (s, n_candidates) matmul; the kept centre's distances are then
    updated exactly by the fused step.
    """
    n = x.shape[0]
    idx = init_sample(n, k, gen)
    if idx is not None:
        xs = x.index_select(0, idx.to(x.device)).to(torch.float32).contiguous()
    else:
        xs = x.to(torch.float32).contiguous() if x.dtype != torch.float32 or x.stride(1) != 1 else x
    return kmeanspp_rows(xs, k, gen)


def init_sample(n: int, k: int, gen: torch.Generator):
    """Sorted row ids of the init subsample (CPU int64), or None for all n rows."""
    s = min(n, INIT_SAMPLE_PER_CENTRE * k)
    if s < n:
        return torch.randperm(n, generator=gen, device=gen.device)[:s].sort().values.cpu()
    return None


def kmeanspp_rows(xs: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ on the (already subsampled) float32 rows xs (s, d).

    CUDA rows take ``kmeanspp_rows_device`` (no host sync per step); CPU rows
    the loop below.
    """
    if xs.device.type == "cuda":
        return kmeanspp_rows_device(xs, k, gen)
    return kmeanspp_rows_host(xs, k, gen)


def _first_centre(metric: EuclideanRows, k: int, first: int):
    """(mind, assign, centres) of a k-means++ run after placing row ``first`` as centre 0."""
    s, d = metric.n, metric.d
    mind = torch.full((s,), float("inf"), dtype=torch.float32, device=metric.device)
    assign = torch.zeros(s, dtype=torch.int32, device=metric.device)
    centres = torch.empty(k, d, dtype=torch.float32, device=metric.device)
    c = metric.vec(first)
    metric.update(None, c, 0, mind, assign)
    mind[first] = -1.0
    centres[0] = c
    return mind, assign, centres


def _candidate_potentials(xs, xsn, cand, w):
    """Potential (sum over rows of min(w, d^2 to the candidate)) for each candidate row
    ``cand`` of xs, with w the rows' current squared distances (float32)."""
    cx = xs.index_select(0, cand)
    d2 = torch.addmm(xsn[:, None] + cx.pow(2).sum(1)[None, :], xs, cx.T, alpha=-2.0).clamp_(min=0.0)
    return torch.minimum(w[:, None], d2).sum(0)


def kmeanspp_rows_host(xs: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """The host-driven loop of ``kmeanspp_rows`` (multinomial draws from ``gen``),
    on any device: CPU rows use it; on CUDA it is the baseline of the device loop."""
    s, d = xs.shape
    n_trials = 2 + int(np.log(k))
    xsn = xs.pow(2).sum(1)
    metric = EuclideanRows(xs)
    # per-step bookkeeping single-threaded (a thread team per tiny op costs more than it
    # saves, and far more on a loaded machine: 9.5 s against 1.2 s at s=10k, k=1000 on 2
    # threads here); the (s, n_trials) matmul and the distance pass keep the threads when big
    big = s * n_trials * d >= SMALL_WORK
    with small_op_threads(xs.device) as nt:
        metric.threads = nt
        first = min(int(torch.rand((), generator=gen, device=gen.device, dtype=torch.float64) * s), s - 1)
        mind, assign, centres = _first_centre(metric, k, first)
        for t in range(1, k):
            w = mind.clamp(min=0.0).to(torch.float64).pow_(2)
            total = float(w.sum())
            if total > 0.0:
                cand = torch.multinomial(w.to(gen.device), n_trials, replacement=True, generator=gen).to(xs.device)
                with torch_threads(nt if big else 1):
                    pot = _candidate_potentials(xs, xsn, cand, w.to(torch.float32))
                i = int(cand[int(torch.argmin(pot))])
            else:  # every remaining point duplicates a centre
                i = d2_sample(mind, gen)
            c = metric.vec(i)
            metric.update(None, c, t, mind, assign)
            mind[i] = -1.0
            centres[t] = c
    return centres


#: Steps per captured CUDA graph in ``kmeanspp_rows_device``.
GRAPH_STEPS = 64


def kmeanspp_rows_device(xs: torch.Tensor, k: int, gen: torch.Generator,
                         use_graphs: bool | None = None) -> torch.Tensor:
    """Greedy k-means++ on float32 rows xs (s, d) with every step on xs's device.

    The procedure of ``kmeanspp_rows`` (first centre uniform; each step draws
    ``2 + floor(ln k)`` candidates by D^2 sampling and keeps the one lowering the
    potential most) without a single host synchronisation per step, so that a
    GPU runs the k sequential steps back to back instead of waiting on the host
    each time (measured on an H200 at k=10k, s=40k, d=512: 6.4 s with the
    host-driven loop; benchmarks/gpu/kmeans_breakdown.py has the new figure):

    - all uniforms are drawn up front from ``gen`` (k x n_trials, float64), and
      candidates are found by inverse CDF: ``searchsorted(cumsum(w), u * sum(w))``;
    - when every remaining point duplicates a centre (sum(w) = 0) the weights
      become 1 on the points not yet chosen (uniform among them, as ``d2_sample``);
    - the kept candidate, its distance update and the centre write stay
      device tensors.

    On CUDA (``use_graphs`` None or True) the steps are captured once as a CUDA
    graph of ``GRAPH_STEPS`` steps and replayed, which also removes the
    per-kernel launch cost. For a given ``gen`` state the result is
    deterministic; it differs from ``kmeanspp_rows``'s draws (multinomial).
    """
    s, d = xs.shape
    dev = xs.device
    n_trials = 2 + int(np.log(k))
    u = torch.rand(k, n_trials, generator=gen, device=gen.device, dtype=torch.float64).to(dev)
    first = min(int(u[0, 0].item() * s), s - 1)
    xsn = xs.pow(2).sum(1)
    metric = EuclideanRows(xs)
    mind, assign, centres = _first_centre(metric, k, first)

    def step(u_row, out_row):
        w = mind.clamp(min=0.0).square()
        w64 = w.to(torch.float64)
        total = w64.sum()
        w64 = torch.where(total > 0, w64, (mind >= 0).to(torch.float64))
        cs = torch.cumsum(w64, 0)
        cand = torch.searchsorted(cs, u_row * cs[-1], right=True).clamp_(max=s - 1)
        pot = _candidate_potentials(xs, xsn, cand, w)
        best = cand.gather(0, pot.argmin().view(1))
        c = xs.index_select(0, best).view(d)
        metric.update(None, c, 0, mind, assign)
        mind.index_fill_(0, best, -1.0)
        out_row.copy_(c)

    use_graphs = dev.type == "cuda" if use_graphs is None else bool(use_graphs)
    t = 1
    if use_graphs and k - 1 >= 2 * GRAPH_STEPS:
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm-up (real steps): compiles kernels, sets up cuBLAS
            for _ in range(3):
                step(u[t], centres[t])
                t += 1
        torch.cuda.current_stream(dev).wait_stream(side)
        static_u = torch.empty(GRAPH_STEPS, n_trials, dtype=torch.float64, device=dev)
        static_out = torch.empty(GRAPH_STEPS, d, dtype=torch.float32, device=dev)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (concurrent candidate strategies on other
        # streams, search/candidates.py) may synchronise while this one captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            for j in range(GRAPH_STEPS):
                step(static_u[j], static_out[j])
        while t + GRAPH_STEPS <= k:
            static_u.copy_(u[t:t + GRAPH_STEPS])
            graph.replay()
            centres[t:t + GRAPH_STEPS].copy_(static_out)
            t += GRAPH_STEPS
        del graph
    while t < k:
        step(u[t], centres[t])
        t += 1
    return centres


def lloyd_torch(x: torch.Tensor, centres: torch.Tensor, n_iter: int, group=None) -> tuple[torch.Tensor, int]:
    """Chunked Lloyd iterations in place on ``centres`` (k, d) float32; returns (centres, iters).

    With a process group, x is this rank's shard: centroid sums, counts and the
    changed-assignment count are all-reduced once per iteration.
    """
    n, d = x.shape
    k = centres.shape[0]
    rows = rows_per_chunk(4 * (2 * d + k))
    labels = torch.full((n,), -1, dtype=torch.int32, device=x.device)
    it = 0
    with _tf32_assignment(x.device):
        for it in range(1, n_iter + 1):
            changed = _lloyd_step(x, centres, labels, rows, group)
            if int(changed) == 0:
                break
    return centres, it


@contextlib.contextmanager
def _tf32_assignment(device):
    """On CUDA the assignment matmul runs in TF32 (sums and centroids stay float32).

    Measured on an H200, 1M x 512, k=10k, 20 Lloyd iterations: 6.24 s in float32,
    2.42 s with TF32. Only the argmin of near-equidistant points can change.
    """
    if device.type != "cuda":
        yield
        return
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _lloyd_step(x, centres, labels, rows, group):
    """One Lloyd iteration in place on centres and labels; returns the changed count."""
    n, d = x.shape
    k = centres.shape[0]
    cn = centres.pow(2).sum(1)
    sums = torch.zeros(k, d, dtype=torch.float32, device=x.device)
    counts = torch.zeros(k, dtype=torch.float32, device=x.device)
    changed = torch.zeros((), dtype=torch.long, device=x.device)
    for lo in range(0, n, rows):
        xp = x[lo:lo + rows].to(torch.float32)
        lab = torch.addmm(cn[None, :], xp, centres.T, alpha=-2.0).argmin(1)
        sums.index_add_(0, lab, xp)
        counts += torch.bincount(lab, minlength=k).to(torch.float32)
        lab32 = lab.to(torch.int32)
        changed += (labels[lo:lo + rows] != lab32).sum()
        labels[lo:lo + rows] = lab32
    if group is not None:
        from ..distributed import all_reduce_sum

        buf = all_reduce_sum(torch.cat([sums.view(-1), counts, changed.view(1).to(torch.float32)]), group)
        sums, counts = buf[:k * d].view(k, d), buf[k * d:k * d + k]
        changed = buf[-1].to(torch.long)
    ok = counts > 0
    centres[ok] = sums[ok] / counts[ok, None]
    return changed


def lloyd_faiss(faiss, x: torch.Tensor, centres: torch.Tensor, n_iter: int, seed: int):
    n, d = x.shape
    k = centres.shape[0]
    km = faiss.Kmeans(d, k, niter=n_iter, nredo=1, seed=seed, verbose=False,
                      min_points_per_centroid=1)
    km.train(x.numpy(), init_centroids=np.ascontiguousarray(centres.numpy()))
    return torch.from_numpy(np.array(km.centroids, dtype=np.float32)), n_iter


def nearest_unique(x: torch.Tensor, centres: torch.Tensor) -> torch.LongTensor:
    """One distinct pool point per centroid (see module docstring, step 3)."""
    n = x.shape[0]
    best_v, best_i = snap_candidates(x, centres, min(N_CANDIDATES, n))
    vals = best_v.cpu().numpy().astype(np.float64)
    idxs = best_i.cpu().numpy()
    return serve_centroids(vals, idxs, n, lambda c, used: _nearest_unused(x, centres[c], used))


def snap_candidates(x: torch.Tensor, centres: torch.Tensor, m: int):
    """The m nearest rows of x to every centroid: (values (m', k), row ids (m', k)),
    m' = min(m, n), squared distances, in one chunked pass."""
    n, d = x.shape
    k = centres.shape[0]
    cn = centres.pow(2).sum(1)
    rows = rows_per_chunk(4 * (2 * d + 2 * k))
    best_v = best_i = None
    for lo in range(0, n, rows):
        xp = x[lo:lo + rows].to(torch.float32)
        d2 = torch.addmm(cn[None, :], xp, centres.T, alpha=-2.0)
        d2 += xp.pow(2).sum(1)[:, None]
        mm = min(m, xp.shape[0])
        v, i = torch.topk(d2, mm, dim=0, largest=False)
        i = i + lo
        if best_v is not None:
            v = torch.cat([best_v, v])
            i = torch.cat([best_i, i])
            v, j = torch.topk(v, min(m, v.shape[0]), dim=0, largest=False)
            i = i.gather(0, j)
        best_v, best_i = v, i
    if best_v is None:
        best_v = torch.empty(0, k, dtype=torch.float32, device=x.device)
        best_i = torch.empty(0, k, dtype=torch.long, device=x.device)
    return best_v, best_i


def serve_centroids(vals: np.ndarray, idxs: np.ndarray, n: int, nearest_unused) -> torch.LongTensor:
    """Serving order of step 3 over candidate (vals, idxs) of shape (m, k);
    ``nearest_unused(c, used)`` is the exact fallback for centroid c."""
    k = vals.shape[1]
    used = np.zeros(n, dtype=bool)
    order = np.lexsort((np.arange(k), vals.min(0)))
    out = np.empty(k, dtype=np.int64)
    for t, c in enumerate(order):
        cand = np.lexsort((idxs[:, c], vals[:, c]))
        pick = -1
        for j in cand:
            if not used[idxs[j, c]]:
                pick = int(idxs[j, c])
                break
        if pick < 0:
            pick = nearest_unused(c, used)
        used[pick] = True
        out[t] = pick
    return torch.from_numpy(out)


def _nearest_unused(x, centre, used: np.ndarray) -> int:
    n, d = x.shape
    rows = rows_per_chunk(4 * d)
    best_v, best_i = float("inf"), -1
    used_t = torch.from_numpy(used).to(x.device)
    for lo in range(0, n, rows):
        d2 = (x[lo:lo + rows].to(torch.float32) - centre).pow_(2).sum(1)
        d2 = d2.masked_fill(used_t[lo:lo + rows], float("inf"))
        j = int(torch.argmin(d2))
        if float(d2[j]) < best_v:
            best_v, best_i = float(d2[j]), lo + j
    return best_i


def select_kmeans(pool, k: int, seed=None, n_iter: int = N_ITER, backend: str = "auto") -> torch.LongTensor:
    """k-means picks (validated input assumed).

    Parameters
    ----------
    pool : PoolOutputs with embeddings of shape (n_pool, n_features)
    k : int, 1 <= k <= n_pool
    seed : int, torch.Generator or None
    n_iter : int, default=20
        Lloyd iterations (the torch backend stops earlier when assignments settle).
    backend : {"auto", "torch"}, default="auto"
        "auto": FAISS when usable (see the module docstring), torch otherwise;
        "torch": always the torch Lloyd iterations (the backend of the
        multi-process path, so the one to compare it with).

    Returns
    -------
    torch.LongTensor of shape (k,) on the pool's device.
    """
    x = pool.embeddings
    gen = make_generator(seed)
    centres = kmeanspp_init(x, k, gen)
    faiss = _backend.faiss_module()
    if backend == "auto" and faiss is not None and x.device.type == "cpu" and x.dtype == torch.float32 \
            and x.stride(1) == 1 and x.stride(0) == x.shape[1]:
        fseed = int(torch.randint(0, 2**31 - 1, (), generator=gen, device=gen.device))
        centres, iters = lloyd_faiss(faiss, x, centres, n_iter, fseed)
        backend = "faiss-cpu"
    else:
        centres, iters = lloyd_torch(x, centres, n_iter)
        backend = "torch"
    _backend.record("kmeans", backend)
    last_stats.clear()
    last_stats.update(backend=backend, n_iter=iters)
    return nearest_unique(x, centres).to(x.device)
