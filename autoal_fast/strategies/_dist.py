"""Multi-process selection: the diversity strategies over a pool sharded across a process group.

``strategies.select(..., group=...)`` comes here for kmeans, coreset and badge when the
group has more than one rank (uncertainty and random need only the reducer's exchanges,
``autoal_fast.distributed.GroupReducer``: local fused scores and merged top-k's; the
same seeded permutation of ``n_total`` on every rank, a seed of None drawn on rank 0 and
broadcast). Each rank holds a shard (shards in rank order, see
``autoal_fast.distributed``); every function returns the same global indices on every
rank, equal to what one process returns on the concatenated pool with the same seed:

- coreset: exact k-center greedy; per step one ``global_argmax`` of the local
  (largest distance, global index) and the winning row broadcast from its owner.
  Without a labeled set the start is the point nearest to the pool mean (sums
  all-reduced in float64, nearest point by a global argmin).
- badge: the sampler is chosen by ``badge.use_rejection`` on the global row count, as
  one process chooses it. Below ``badge.REJECTION_MIN_ROWS`` (or off CPU): per step
  one all_gather of every rank's (sum of D^2, free count), one uniform from the
  shared seeded generator, the owner of the drawn mass picks the point and
  broadcasts (index, gradient-embedding factors). At or above it: rejection from
  stale bounds with a sum tree per rank (``_badge_rejection``): per attempt the
  rank is drawn by the per-rank masses and the row in its tree with the same
  uniform, the owner refreshes and decides with the next uniform and broadcasts
  (accepted, its new mass, index, factors); rebuilds by the single-process rule.
- kmeans: the init subsample (global row ids from the shared generator) is
  assembled on every rank by one all-reduce, greedy k-means++ runs on it
  identically everywhere; Lloyd iterations all-reduce centroid sums and counts;
  the snap all-gathers each rank's nearest candidates. Always the torch backend:
  FAISS is single-process only, so equality is with
  ``select_kmeans(..., backend="torch")`` (or a single process without FAISS,
  ``AUTOAL_FAST_FAISS=0``).

Equality holds up to float summation order: global sums (pool mean, D^2 total,
centroid sums) are added in another order than one process would, which can only
change a pick when two candidates are within float rounding of each other.
A seed given as a torch.Generator must be in the same state on every rank.
MC dropout generated through ``pool.head`` is drawn chunk by chunk on each shard,
so it equals the single-process draws only when the stochastic predictions are
given as ``mc_logits``.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from .. import distributed as D
from ._greedy import (PrunedGreedy, make_generator, rows_per_chunk, small_op_threads, torch_threads, uniform)

__all__ = ["select_distributed"]


def _global_argmax_of(values, shard: D.Shard) -> int:
    """Global index of the largest of every rank's ``values`` (None on an empty
    shard); ties go to the lower global index. One exchange."""
    return D.GroupReducer(shard).argmax(values)


def _owner(gi: int, shard: D.Shard) -> tuple[int, int]:
    r = D.owner_of(gi, shard)
    return r, gi - sum(shard.sizes[:r])


def select_distributed(name: str, pool, k: int, labeled, seed, red: D.GroupReducer) -> torch.LongTensor:
    """Global indices (k,) of kmeans, coreset or badge on the pool's device, the same on
    every rank (validated input; ``seed`` already the same on every rank)."""
    shard = red.shard
    if name == "coreset":
        return _coreset(pool, k, labeled, shard).to(pool.device)
    if name == "badge":
        return _badge(pool, k, seed, shard).to(pool.device)
    return _kmeans(pool, k, seed, shard).to(pool.device)


# --------------------------------------------------------------------------- coreset
def _global_nearest_to_mean(x, shard) -> int:
    n, d = x.shape
    acc = torch.zeros(d, dtype=torch.float64, device=x.device)
    rows = rows_per_chunk(8 * d)
    for lo in range(0, n, rows):
        acc += x[lo:lo + rows].to(torch.float64).sum(0)
    acc = D.all_reduce_sum(acc, shard.group)
    mean = (acc / shard.n_total).to(torch.float32)
    best_v, best_i = float("inf"), 0
    rows = rows_per_chunk(4 * d)
    for lo in range(0, n, rows):
        d2 = (x[lo:lo + rows].to(torch.float32) - mean).pow_(2).sum(1)
        j = int(torch.argmin(d2))
        if float(d2[j]) < best_v:
            best_v, best_i = float(d2[j]), lo + j
    # argmin = argmax of the negation; ties still go to the lower global index
    return D.global_argmax(-best_v, shard.offset + best_i, shard.group)[1]


def _coreset(pool, k, labeled, shard):
    from .coreset import greedy_setup

    x = pool.embeddings
    n, d = x.shape
    dev = x.device
    store, metric, eng = greedy_setup(x, k, labeled)
    first = None if labeled is not None and labeled.n_samples else _global_nearest_to_mean(x, shard)
    picks = torch.empty(k, dtype=torch.long)
    with small_op_threads(dev) as nt:
        if metric is not None:
            metric.threads = nt
        for t in range(k):
            if t == 0 and first is not None:
                gi = first
            else:
                gi = _global_argmax_of(eng.mind if n else None, shard)
            owner, li = _owner(gi, shard)
            mine = metric.vec(li) if owner == shard.rank else None
            c = D.broadcast_from(mine, owner, (d,), torch.float32, shard.group).to(dev)
            if n:
                eng.add_centre(c, point=li if owner == shard.rank else None)
            store.add(c)
            picks[t] = gi
    _backend.record("coreset", (metric.backend if metric is not None else "none") + "+dist")
    return picks


# --------------------------------------------------------------------------- badge
def _dist_d2_sample(mind, gen, shard) -> int:
    """Global index drawn with probability proportional to max(mind, 0)^2 over all
    shards; the same law, uniform and tie rules as ``_greedy.d2_sample``."""
    u = uniform(gen)
    if mind is not None and mind.numel():
        w = mind.clamp(min=0.0).to(torch.float64).pow_(2)
        cs = torch.cumsum(w, 0)
        local = (float(cs[-1]), float((mind >= 0).sum()))
    else:
        w = cs = None
        local = (0.0, 0.0)
    allp = D._all_gather_rows(torch.tensor([local], dtype=torch.float64), shard.group).cpu().numpy()
    totals, frees = allp[:, 0], allp[:, 1]
    ctot = np.cumsum(totals)
    total = float(ctot[-1])
    pick = None  # (owner, local index) decided identically on every rank except the index
    if total > 0.0 and total != float("inf"):
        target = u * total
        r = int(np.searchsorted(ctot, target, side="right"))
        if r >= shard.world:  # rounding at the top end: the last point with positive weight
            r = int(np.nonzero(totals > 0)[0][-1])
            mode = "last"
        else:
            mode = "search"
        if r == shard.rank:
            if mode == "search":
                lt = target - (ctot[r - 1] if r > 0 else 0.0)
                i = int(torch.searchsorted(cs, torch.tensor([lt], dtype=torch.float64, device=cs.device),
                                           right=True))
                i = min(i, mind.numel() - 1)
                if not w[i] > 0:
                    i = int(torch.nonzero(w > 0)[-1])
            else:
                i = int(torch.nonzero(w > 0)[-1])
            pick = i
    else:
        nfree = int(frees.sum())
        j = min(int(u * nfree), nfree - 1)
        cf = np.cumsum(frees)
        r = int(np.searchsorted(cf, j, side="right"))
        if r == shard.rank:
            free = torch.nonzero(mind >= 0).view(-1)
            pick = int(free[j - int(cf[r - 1] if r > 0 else 0)])
    return r, pick


def _rejection_everywhere(dev, shard) -> bool:
    """``badge.use_rejection`` on the global row count, true only if it holds on every
    rank (device and extension are per rank: one small all-gather, only when the global
    count and the switch already allow rejection)."""
    from . import _greedy
    from . import badge as bm

    if not (bm.REJECTION and shard.n_total >= bm.REJECTION_MIN_ROWS):
        return False
    mine = int(bm.use_rejection(shard.n_total, dev, _greedy.load_ext()))
    flags = D._all_gather_rows(torch.tensor([mine], dtype=torch.int64), shard.group)
    return bool(int(flags.min()))


def _badge_rejection(rows, k, gen, nt, shard, c, d):
    """``badge._rejection_picks`` over the shards (the module docstring of badge: the same
    uniforms, draws, refreshes and rebuild rule; each rank a sum tree of its own rows).

    Per attempt one broadcast from the drawn row's owner: (accepted, its tree's new mass,
    global index, the row's gradient-embedding factors when accepted). Per rebuild one
    all-gather of the per-rank masses. ``rows`` is None on an empty shard."""
    from . import _greedy
    from . import badge as bm

    n, n_total, rank, world = shard.n_local, shard.n_total, shard.rank, shard.world
    picks = torch.empty(k, dtype=torch.long)
    width = 3 + c + d + 1

    def factors(li):
        a, e, g2 = rows.vec(li)
        return torch.cat([a.double(), e.double(), g2.double().view(1)])

    def unpack(buf):
        f = buf.to(torch.float32)
        return f[:c].clone(), f[c:c + d].clone(), f[c + d].clone()

    def gather_masses():
        mine = torch.tensor([tree.total() if n else 0.0], dtype=torch.float64)
        return D._all_gather_rows(mine, shard.group).cpu().numpy().astype(np.float64)

    # pick 0: the largest ||g|| (ties to the lower global index)
    gi = _global_argmax_of(rows.g2 if n else None, shard)
    owner, li = _owner(gi, shard)
    v = unpack(D.broadcast_from(factors(li) if owner == rank else None, owner, (c + d + 1,),
                                torch.float64, shard.group).cpu())
    picks[0] = gi
    if n:
        ext = _greedy.load_ext()
        mind = torch.full((n,), float("inf"), dtype=torch.float32)
        assign = torch.zeros(n, dtype=torch.int32)
        rows.store(0, v)
        rows.update(None, v, 0, mind, assign)
        if owner == rank:
            mind[li] = -1.0
        md = mind.numpy()
        seen = np.ones(n, dtype=np.int32)  # centres [0, seen[i]) are in md[i]
        tree = ext.SumTree(n)
    else:
        mind = None

    def rebuild(t):
        if n:
            with torch_threads(nt):
                rows.refresh_all(mind, int(seen.min()), t)
            seen[:] = t
            tree.build(np.square(np.maximum(md, 0.0), dtype=np.float64))
        return gather_masses()

    masses = rebuild(1)
    last_rebuild = 1
    uni = bm._Uniforms(gen)
    attempts = rebuilds = refreshes = rejected = 0
    for t in range(1, k):
        while True:
            cum = np.cumsum(masses)
            total = float(cum[-1])
            if not total > 0.0:
                if last_rebuild < t:
                    masses = rebuild(t)
                    rebuilds += 1
                    last_rebuild, rejected = t, 0
                    continue
                # every unchosen row duplicates a pick: uniform (the same draw as d2_sample)
                owner, li = _dist_d2_sample(mind, gen, shard)
                if owner == rank:
                    md[li] = -1.0
                    tree.set(li, 0.0)
                    mine = torch.cat([torch.tensor([1.0, tree.total(), float(shard.offset + li)],
                                                   dtype=torch.float64), factors(li)])
                buf = D.broadcast_from(mine if owner == rank else None, owner, (width,), torch.float64,
                                       shard.group).cpu()
                masses[owner] = float(buf[1])
                break
            attempts += 1
            target = uni() * total
            owner = int(np.searchsorted(cum, target, side="right"))
            if owner >= world:  # rounding at the top end: the last rank with mass, its last leaf
                owner = int(np.nonzero(masses > 0)[0][-1])
                local = float(masses[owner])
            else:
                local = target - (float(cum[owner - 1]) if owner > 0 else 0.0)
            u_acc = uni()
            mine = None
            if owner == rank:
                i = tree.find(local)
                b2, d2, fresh = bm.refresh_drawn(i, tree, rows, seen, md, t)
                refreshes += fresh
                acc = u_acc * b2 < d2
                if acc:
                    md[i] = -1.0
                    tree.set(i, 0.0)
                head = torch.tensor([float(acc), tree.total(), float(shard.offset + i)], dtype=torch.float64)
                mine = torch.cat([head, factors(i) if acc else torch.zeros(width - 3, dtype=torch.float64)])
            buf = D.broadcast_from(mine, owner, (width,), torch.float64, shard.group).cpu()
            masses[owner] = float(buf[1])
            if float(buf[0]) > 0.0:
                break
            rejected += 1
            if rejected * bm.ATTEMPT_FLOPS > 2.0 * n_total * (t - last_rebuild) * (c + d):
                masses = rebuild(t)
                rebuilds += 1
                last_rebuild, rejected = t, 0
        picks[t] = int(buf[2])
        if n:
            rows.store(t, unpack(buf[3:]))
    bm.last_stats.clear()
    bm.last_stats.update(attempts=attempts, rebuilds=rebuilds, refreshes=refreshes, n=n_total, k=k,  # refreshes: this rank's
                         full_passes=1 + rebuilds, rows_visited=refreshes, rejection=True, sharded=True)
    return picks


def _badge(pool, k, seed, shard):
    from .badge import _GradRows, _null

    gen = make_generator(seed)
    dev = pool.device
    n, c = pool.n_samples, pool.n_classes
    d = pool.embeddings.shape[1]
    picks = torch.empty(k, dtype=torch.long)
    with small_op_threads(dev) as nt:
        eng = None
        with torch_threads(nt) if dev.type == "cpu" else _null():  # non-finite values are found here
            rows = D.agree_on_errors(lambda: _GradRows(pool.logits, pool.embeddings, nt) if n else None,
                                     shard.group, "select('badge')")
        if n:
            rows.alloc_centres(k)
        if _rejection_everywhere(dev, shard):
            picks = _badge_rejection(rows, k, gen, nt, shard, c, d)
            _backend.record("badge", "torch+rejection+dist")
            return picks
        if n:
            eng = PrunedGreedy(
                n, k, dev,
                update_rows=lambda idx, v, cid: rows.update(idx, v, cid, eng.mind, eng.assign),
                center_dists=lambda v: rows.centre_dists(v, eng.n_centres),
            )
        for t in range(k):
            if t == 0:
                gi = _global_argmax_of(rows.g2 if n else None, shard)
                owner, li = _owner(gi, shard)
            else:
                owner, li = _dist_d2_sample(eng.mind if n else None, gen, shard)
            mine = None
            if owner == shard.rank:
                a, e, g2 = rows.vec(li)
                mine = torch.cat([torch.tensor([float(shard.offset + li)], dtype=torch.float64),
                                  a.double().cpu(), e.double().cpu(), g2.double().view(1).cpu()])
            buf = D.broadcast_from(mine, owner, (1 + c + d + 1,), torch.float64, shard.group).cpu()
            gi = int(buf[0])
            v = (buf[1:1 + c].to(dev, torch.float32), buf[1 + c:1 + c + d].to(dev, torch.float32),
                 buf[-1].to(dev, torch.float32))
            if n:
                eng.add_centre(v, point=li if owner == shard.rank else None)
                rows.store(t, v)
            picks[t] = gi
    _backend.record("badge", "torch+dist")
    return picks


# --------------------------------------------------------------------------- kmeans
def _kmeans(pool, k, seed, shard, n_iter=None):
    from . import kmeans as km

    x = pool.embeddings
    n, d = x.shape
    dev = x.device
    gen = make_generator(seed)
    # 1. the init subsample, assembled on every rank (zeros elsewhere, one all-reduce)
    idx = km.init_sample(shard.n_total, k, gen)
    if idx is None:
        idx = torch.arange(shard.n_total)
    lo, hi = shard.offset, shard.offset + n
    a, b = int(torch.searchsorted(idx, lo)), int(torch.searchsorted(idx, hi))
    xs = torch.zeros(idx.numel(), d, dtype=torch.float32, device=dev)
    if b > a:
        xs[a:b] = x.index_select(0, (idx[a:b] - lo).to(dev)).to(torch.float32)
    xs = D.all_reduce_sum(xs, shard.group)
    centres = km.kmeanspp_rows(xs, k, gen)
    del xs
    # 2. Lloyd with all-reduced sums
    centres, iters = km.lloyd_torch(x, centres, km.N_ITER if n_iter is None else n_iter, group=shard.group)
    # 3. snap: every rank's m nearest per centroid, merged by (distance, global index)
    m = min(km.N_CANDIDATES, shard.n_total)
    v, i = km.snap_candidates(x, centres, m)
    pad = m - v.shape[0]
    v = torch.cat([v.double().cpu(), torch.full((pad, k), float("inf"), dtype=torch.float64)])
    i = torch.cat([i.cpu() + shard.offset, torch.full((pad, k), np.iinfo(np.int64).max, dtype=torch.int64)])
    allv = D._all_gather_rows(v, shard.group).cpu().numpy()
    alli = D._all_gather_rows(i, shard.group).cpu().numpy()
    vals = np.empty((m, k))
    idxs = np.empty((m, k), dtype=np.int64)
    for col in range(k):
        o = np.lexsort((alli[:, col], allv[:, col]))[:m]
        vals[:, col], idxs[:, col] = allv[o, col], alli[o, col]

    def nearest_unused(col, used):
        loc = torch.from_numpy(used[lo:hi])
        rows = rows_per_chunk(4 * d)
        best_v, best_i = float("inf"), 0
        cc = centres[col]
        for r0 in range(0, n, rows):
            d2 = (x[r0:r0 + rows].to(torch.float32) - cc).pow_(2).sum(1)
            d2 = d2.masked_fill(loc[r0:r0 + rows].to(dev), float("inf"))
            j = int(torch.argmin(d2))
            if float(d2[j]) < best_v:
                best_v, best_i = float(d2[j]), r0 + j
        return D.global_argmax(-best_v, lo + best_i, shard.group)[1]

    out = km.serve_centroids(vals, idxs, shard.n_total, nearest_unused)
    _backend.record("kmeans", "torch+dist")
    km.last_stats.clear()
    km.last_stats.update(backend="torch+dist", n_iter=iters)
    return out
