"""badge: k-means++ seeding on gradient embeddings (Ash et al., ICLR 2020).

The gradient embedding of sample i is ``g_i = a_i (x) e_i`` with
``a_i = p_i - onehot(argmax p_i)`` (p = softmax of the logits) and e_i its
embedding. It is never materialised (n x C*D would be 40 GB at
200k x 100 x 512); distances come from the factorisation

    ||g_i - g_j||^2 = ||a_i||^2 ||e_i||^2 + ||a_j||^2 ||e_j||^2 - 2 (a_i . a_j)(e_i . e_j),

with ``a_i . a_j = p_i . a_j - a_j[y_i]``. Per sample only O(1) numbers are
kept (log-sum-exp, argmax, ||a||^2, ||e||^2, running minimum distance,
nearest-centre id); probabilities are cached in float32 when n*C*4 bytes fit
``PROB_CACHE_BYTES`` (1 GiB), else recomputed from the logits rows when a row
is visited. Visits are pruned with the triangle inequality in g-space
(see ``_greedy``): a new centre only revisits clusters it can change.

Selection: the first pick is the sample with the largest ||g|| (ties to the
lower index), as in the authors' code; each next pick is drawn with
probability proportional to D(x)^2, the squared distance to the nearest pick
(one uniform from the seeded generator per pick; float64 cumulative sums).

CPU pools of at least ``REJECTION_MIN_ROWS`` rows draw each next pick by rejection from stale bounds (Cohen-Addad
et al. 2020): D only falls as centres are added, so a row's distance at its
last refresh bounds the current one. A sum tree (``_C.SumTree``, float64)
holds the squared bounds; a draw takes row i with probability b_i^2 / sum b^2
(O(log n)), refreshes it against the centres added since its last refresh
(O(C + D) per centre), writes the refreshed value back to the tree, and
accepts with probability D_i^2 / b_i^2. Every accepted draw is exactly
D^2-distributed. All bounds are rebuilt (one batched pass against the new
centres, matmuls) when the rejections since the last rebuild have cost about
as much as a rebuild (``ATTEMPT_FLOPS``). The uniforms come from the seeded
generator in blocks, so the same seed gives the same picks; for a given seed
the picks differ from the one-draw-per-pick loop used on other devices (and by
earlier versions), the distribution does not. Extra memory: 16 bytes per row
(tree) + 4 (refresh count).

Sharded (``select(..., group=...)``, ``_dist._badge``): the same choice of sampler
by ``use_rejection`` on the GLOBAL row count (and every rank on CPU with the
extension), and the same sampler spread over the ranks: each rank keeps the sum
tree of its shard's bounds, a draw picks the rank by the all-gathered per-rank
masses and the row inside its tree with the same uniform, the owner refreshes it
and decides with the next uniform, and rebuilds follow the same rule (global row
count). The uniforms are consumed exactly as here, so the picks equal this
function's for the same seed up to float summation order (the per-rank masses
add in another order than one tree does; the refreshed distances may round
differently): only a draw within float rounding of a rank or row boundary, or of
the accept threshold, can go another way.

Duplicates: a squared distance below ``DUP_TOL * (||g_i||^2 + ||g_j||^2)``
(float32 rounding of the factorised form) counts as 0, so a point identical to
a chosen one has probability 0 and is never picked while any point at positive
distance remains. If every unchosen point is at distance 0 (all duplicates of
picks), the next pick is uniform among the unchosen points, drawn from the
same seeded generator (so still reproducible).

References
----------
Cohen-Addad, V., Lattanzi, S., Norouzi-Fard, A., Sohler, C. and Svensson, O.
"Fast and Accurate k-means++ via Rejection Sampling." NeurIPS 2020.
Ash, J. T., Zhang, C., Krishnamurthy, A., Langford, J. and Agarwal, A. "Deep
Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds." ICLR 2020.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from . import _greedy
from ._greedy import PrunedGreedy, d2_sample, make_generator, rows_per_chunk, small_op_threads, torch_threads

#: Probabilities (n, C) are cached in float32 when they fit in this many bytes
#: (80 MB at 200k x 100); above it they are recomputed from the logits rows at
#: each visit, so memory stays O(n) for any pool size.
PROB_CACHE_BYTES = 1 << 30
#: Relative tolerance under which a factorised squared distance counts as 0.
DUP_TOL = 1e-5
#: Rejection sampling from stale bounds on CPU (False: the one-draw-per-pick loop).
REJECTION = True
#: ... on pools of at least this many rows (the GLOBAL row count when sharded: one process
#: and N ranks take the same path, see ``use_rejection``). Below it the one-draw-per-pick
#: loop costs little.
REJECTION_MIN_ROWS = 5000
#: Cost of one rejected draw in multiply-adds (a few small numpy calls, ~30 us); a
#: rebuild (2 n m (C + D) for m centres since the last one) runs once the rejections
#: since then have cost as much, so rejections never cost more than twice the rebuilds.
ATTEMPT_FLOPS = 5e5
#: Counters of the last call, for benchmarks.
last_stats: dict = {}


def use_rejection(n_total: int, device, ext) -> bool:
    """Whether BADGE draws by rejection from stale bounds: the rule the single-process
    path and the sharded one (``_dist._badge``, with the pool's global row count and every
    rank's device and extension) share, so both draw the same picks for a seed."""
    return bool(REJECTION and n_total >= REJECTION_MIN_ROWS and torch.device(device).type == "cpu"
                and ext is not None and hasattr(ext, "SumTree"))


class _GradRows:
    """Factorised gradient-embedding distances over the pool (float32)."""

    def __init__(self, logits: torch.Tensor, emb: torch.Tensor, threads: int):
        self.z, self.e = logits, emb
        self.n, self.c = logits.shape
        self.d = emb.shape[1]
        self.device = logits.device
        self.threads = threads
        n = self.n
        f32 = dict(dtype=torch.float32, device=self.device)
        self.lse = torch.empty(n, **f32)
        self.y = torch.empty(n, dtype=torch.long, device=self.device)
        self.na = torch.empty(n, **f32)
        self.ne = torch.empty(n, **f32)
        rows = rows_per_chunk(4 * (3 * self.c + 2 * self.d))
        bad_z = torch.zeros((), dtype=torch.long, device=self.device)
        bad_e = torch.zeros((), dtype=torch.long, device=self.device)
        for lo in range(0, n, rows):
            zf = self.z[lo:lo + rows].to(torch.float32)
            bad_z += (~torch.isfinite(self.z[lo:lo + rows])).sum()
            bad_e += (~torch.isfinite(self.e[lo:lo + rows])).sum()
            lse = torch.logsumexp(zf, 1)
            p = torch.exp(zf - lse[:, None])
            y = torch.argmax(zf, 1)
            py = p.gather(1, y[:, None]).squeeze(1)
            self.lse[lo:lo + rows] = lse
            self.y[lo:lo + rows] = y
            self.na[lo:lo + rows] = (p.pow(2).sum(1) - 2.0 * py + 1.0).clamp_(min=0.0)
            self.ne[lo:lo + rows] = self.e[lo:lo + rows].to(torch.float32).pow(2).sum(1)
        for name, bad in (("logits", bad_z), ("embeddings", bad_e)):
            if int(bad):
                raise ValueError(f"pool.{name} contains {int(bad)} non-finite value(s) (select('badge')); "
                                 "BADGE needs finite model outputs: clean or drop those samples")
        self.g2 = self.na * self.ne
        self.p = None
        if n * self.c * 4 <= PROB_CACHE_BYTES:
            self.p = torch.empty(n, self.c, **f32)
            for lo in range(0, n, rows):
                self.p[lo:lo + rows] = torch.exp(self.z[lo:lo + rows].to(torch.float32)
                                                 - self.lse[lo:lo + rows, None])
        # capacity for centres is set by the caller
        self.ca = self.ce = self.cg2 = None
        self._np = None

    def alloc_centres(self, cap: int):
        self.ca = torch.empty(cap, self.c, dtype=torch.float32, device=self.device)
        self.ce = torch.empty(cap, self.d, dtype=torch.float32, device=self.device)
        self.cg2 = torch.empty(cap, dtype=torch.float32, device=self.device)

    def vec(self, i: int):
        zf = self.z[i].to(torch.float32)
        a = torch.exp(zf - self.lse[i])
        a[self.y[i]] -= 1.0
        return a, self.e[i].to(torch.float32), self.g2[i]

    def store(self, cid: int, v):
        self.ca[cid], self.ce[cid], self.cg2[cid] = v

    def _dist(self, z_rows, e_rows, lse, y, g2, v, p=None):
        a, e, g2c = v
        if p is None:
            p = torch.exp(z_rows.to(torch.float32) - lse[:, None])
        dot_a = p @ a - a[y]
        dot_e = e_rows.to(torch.float32) @ e
        tot = g2 + g2c
        d2 = tot - 2.0 * dot_a * dot_e
        d2 = torch.where(d2 <= DUP_TOL * tot, torch.zeros_like(d2), d2)
        return d2.sqrt_()

    def update(self, idx, v, cid, mind, assign):
        m = self.n if idx is None else int(idx.numel())
        nt = self.threads if m * (self.c + self.d) >= (1 << 24) else 1
        with torch_threads(nt) if self.device.type == "cpu" else _null():
            rows = rows_per_chunk(4 * (3 * self.c + 2 * self.d))
            for lo in range(0, m, rows):
                if idx is None:
                    r = slice(lo, min(m, lo + rows))
                    sel = torch.arange(r.start, r.stop, device=self.device)
                    er = self.e[r]
                    pr = self.p[r] if self.p is not None else None
                    zr = self.z[r] if pr is None else None
                else:
                    sel = idx[lo:lo + rows]
                    er = self.e.index_select(0, sel)
                    pr = self.p.index_select(0, sel) if self.p is not None else None
                    zr = self.z.index_select(0, sel) if pr is None else None
                dist = self._dist(zr, er, self.lse[sel], self.y[sel], self.g2[sel], v, pr)
                old = mind[sel]
                upd = (old >= 0) & (dist < old)
                mind[sel] = torch.where(upd, dist, old)
                assign[sel] = torch.where(upd, torch.full_like(assign[sel], cid), assign[sel])

    def refresh_all(self, mind, s: int, t: int):
        """mind = min(mind, distance to centres [s, t)) on every row with mind >= 0 (matmuls)."""
        m = t - s
        if m <= 0:
            return
        ca, ce, cg2 = self.ca[s:t], self.ce[s:t], self.cg2[s:t]
        cat = ca.T.contiguous()
        rows = rows_per_chunk(4 * (3 * self.c + 2 * self.d + 4 * m))
        for lo in range(0, self.n, rows):
            r = slice(lo, min(self.n, lo + rows))
            p = self.p[r] if self.p is not None else \
                torch.exp(self.z[r].to(torch.float32) - self.lse[r, None])
            dot_a = torch.addmm(cat[self.y[r]], p, cat, beta=-1.0)
            dot_e = self.e[r].to(torch.float32) @ ce.T
            tot = self.g2[r, None] + cg2[None, :]
            d2 = tot.sub(dot_a.mul_(dot_e), alpha=2.0)
            d2.masked_fill_(d2 <= DUP_TOL * tot, 0.0)
            dmin = d2.min(1).values.sqrt_()
            old = mind[r]
            mind[r] = torch.where((old >= 0) & (dmin < old), dmin, old)

    def refresh_one(self, i: int, s: int, t: int) -> float:
        """Distance of row i to its nearest centre in [s, t) (numpy, small)."""
        if self._np is None:
            self._np = (self.ca.numpy(), self.ce.numpy(), self.cg2.numpy(),
                        None if self.p is None else self.p.numpy(), self.y.numpy(), self.g2.numpy())
        ca, ce, cg2, p, y, g2 = self._np
        pi = p[i] if p is not None else torch.exp(self.z[i].to(torch.float32) - self.lse[i]).numpy()
        ei = self.e[i].to(torch.float32).numpy()
        a = ca[s:t]
        dot_a = a @ pi - a[:, y[i]]
        tot = g2[i] + cg2[s:t]
        d2 = tot - 2.0 * dot_a * (ce[s:t] @ ei)
        d2[d2 <= DUP_TOL * tot] = 0.0
        return float(np.sqrt(d2.min()))

    def centre_dists(self, v, s: int):
        """Lower bounds (float32 slack removed) of the g-distances to centres [0, s)."""
        a, e, g2c = v
        tot = self.cg2[:s] + g2c
        d2 = tot - 2.0 * (self.ca[:s] @ a) * (self.ce[:s] @ e)
        return (d2 - DUP_TOL * tot).clamp_(min=0.0).sqrt_()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


class _Uniforms:
    """Uniforms in [0, 1) from a seeded generator, drawn in blocks (same seed, same stream)."""

    def __init__(self, gen, block: int = 512):
        self.gen, self.block, self.buf, self.pos = gen, block, None, block

    def __call__(self) -> float:
        if self.pos >= self.block:
            self.buf = torch.rand(self.block, generator=self.gen, device=self.gen.device,
                                  dtype=torch.float64).cpu().numpy()
            self.pos = 0
        self.pos += 1
        return float(self.buf[self.pos - 1])


def refresh_drawn(i: int, tree, rows, seen, md, t: int) -> tuple:
    """Bring drawn row i up to date against the centres added since it was last seen.

    Returns (its stale squared bound b2, its true D^2, how many centres it was refreshed
    against); the tree and md hold the fresh value after (0 once picked: md < 0).
    Shared by the single-process and the sharded rejection samplers.
    """
    b2 = tree.get(i)
    fresh = 0
    if seen[i] < t:
        dv = rows.refresh_one(i, int(seen[i]), t)
        fresh = t - int(seen[i])
        seen[i] = t
        if dv < md[i]:
            md[i] = dv
        tree.set(i, float(md[i]) ** 2 if md[i] >= 0 else 0.0)
    return b2, (float(md[i]) ** 2 if md[i] >= 0 else 0.0), fresh


def _rejection_picks(rows, k: int, gen, nt: int, ext) -> torch.LongTensor:
    """BADGE picks on CPU by rejection from stale bounds (module docstring)."""
    n = rows.n
    picks = torch.empty(k, dtype=torch.long)
    mind = torch.full((n,), float("inf"), dtype=torch.float32)
    assign = torch.zeros(n, dtype=torch.int32)
    i = int(torch.argmax(rows.g2))
    v = rows.vec(i)
    rows.store(0, v)
    rows.update(None, v, 0, mind, assign)
    mind[i] = -1.0
    picks[0] = i
    md = mind.numpy()
    seen = np.ones(n, dtype=np.int32)  # centres [0, seen[i]) are in md[i]
    tree = ext.SumTree(n)

    def rebuild(t):
        with torch_threads(nt):
            rows.refresh_all(mind, int(seen.min()), t)
        seen[:] = t
        tree.build(np.square(np.maximum(md, 0.0), dtype=np.float64))

    rebuild(1)
    last_rebuild = 1
    uni = _Uniforms(gen)
    attempts = rebuilds = refreshes = rejected = 0
    for t in range(1, k):
        while True:
            total = tree.total()
            if not total > 0.0:
                if last_rebuild < t:
                    rebuild(t)
                    rebuilds += 1
                    last_rebuild, rejected = t, 0
                    continue
                i = d2_sample(mind, gen)  # every unchosen row duplicates a pick: uniform
                break
            attempts += 1
            i = tree.find(uni() * total)
            b2, d2, fresh = refresh_drawn(i, tree, rows, seen, md, t)
            refreshes += fresh
            if uni() * b2 < d2:
                break
            rejected += 1
            if rejected * ATTEMPT_FLOPS > 2.0 * n * (t - last_rebuild) * (rows.c + rows.d):
                rebuild(t)
                rebuilds += 1
                last_rebuild, rejected = t, 0
        v = rows.vec(i)
        rows.store(t, v)
        md[i] = -1.0
        tree.set(i, 0.0)
        picks[t] = i
    last_stats.clear()
    last_stats.update(attempts=attempts, rebuilds=rebuilds, refreshes=refreshes, n=n, k=k,
                      full_passes=1 + rebuilds, rows_visited=refreshes, rejection=True)
    return picks


def select_badge(pool, k: int, seed=None) -> torch.LongTensor:
    """BADGE picks in selection order (validated input assumed).

    Parameters
    ----------
    pool : PoolOutputs with logits (n_pool, n_classes) and embeddings (n_pool, n_features)
    k : int, 1 <= k <= n_pool
    seed : int, torch.Generator or None

    Returns
    -------
    torch.LongTensor of shape (k,) on the pool's device.
    """
    gen = make_generator(seed)
    device = pool.device
    picks = torch.empty(k, dtype=torch.long)
    with small_op_threads(device) as nt:
        with torch_threads(nt) if device.type == "cpu" else _null():
            rows = _GradRows(pool.logits, pool.embeddings, nt)
        rows.alloc_centres(k)
        ext = _greedy.load_ext()
        if use_rejection(rows.n, device, ext):
            picks = _rejection_picks(rows, k, gen, nt, ext)
            _backend.record("badge", "torch+rejection")
            return picks.to(device)
        eng = PrunedGreedy(
            rows.n, k, device,
            update_rows=lambda idx, v, cid: rows.update(idx, v, cid, eng.mind, eng.assign),
            center_dists=lambda v: rows.centre_dists(v, eng.n_centres),
        )
        for t in range(k):
            i = int(torch.argmax(rows.g2)) if t == 0 else d2_sample(eng.mind, gen)
            v = rows.vec(i)
            eng.add_centre(v, point=i)
            rows.store(t, v)
            picks[t] = i
    _backend.record("badge", "torch")
    last_stats.clear()
    last_stats.update(full_passes=eng.full_passes, rows_visited=eng.rows_visited, n=rows.n, k=k)
    return picks.to(device)
