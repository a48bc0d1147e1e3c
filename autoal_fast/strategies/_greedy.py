"""Shared machinery of the diversity strategies: chunking under a memory budget,
and a pruned greedy "farthest / D^2-sampled next centre" engine.

Memory budget
-------------
Pools may be numpy memmaps much larger than RAM. Everything here reads the pool
in row chunks whose float32 temporaries stay under ``CHUNK_BYTES`` (default
256 MiB; environment ``AUTOAL_FAST_CHUNK_MB`` overrides it) and keeps only O(n)
per-sample state: a running minimum distance (float32) and the id of the
nearest centre (int32). The pool itself is never copied whole.

Pruned greedy engine
--------------------
Both exact k-center greedy (coreset) and k-means++ seeding (badge, kmeans init)
keep, for every point i, ``mind[i]`` = distance to its nearest centre and
``assign[i]`` = that centre. When a centre c is added, only points that could
move need their distance recomputed. With r_j = max of mind over the points
assigned to centre j, the triangle inequality gives, for such a point i,
``d(i, c) >= d(c, j) - d(i, j) >= d(c, j) - r_j``; so if ``d(c, j) >= 2 r_j``
no point of cluster j can get closer to c than to j and the whole cluster is
skipped. Per step the engine computes the distances from c to the existing
centres (small), marks the clusters that can change, and recomputes exact
distances only for their points; the radii of the touched clusters are then
recomputed exactly. The result is the same as the plain one-full-pass-per-step
algorithm (a small relative margin absorbs float32 rounding in the test); when
more than ``FULL_PASS_FRACTION`` of the pool is touched a fused full pass is
used instead.
"""
from __future__ import annotations

import contextlib
import os

import torch

from .. import _backend

#: Bytes of float32 temporaries per chunk (see module docstring).
CHUNK_BYTES = int(float(os.environ.get("AUTOAL_FAST_CHUNK_MB", "256")) * (1 << 20))
#: Above this fraction of touched points a step becomes a full fused pass.
FULL_PASS_FRACTION = 0.5
#: Relative slack on the pruning test ``d(c, j) <= 2 r_j`` for float32 rounding.
PRUNE_SLACK = 1e-4


#: Below this many multiply-adds a CPU step runs on one thread: a thread team
#: costs more than it saves on small work, and far more on a loaded machine.
SMALL_WORK = 1 << 22


@contextlib.contextmanager
def small_op_threads(device):
    """Run the per-step bookkeeping (O(n) gathers, argmax) single-threaded on CPU.

    Yields the thread count to use for big fused passes (the caller's setting).
    torch's global thread count is restored on exit.
    """
    saved = torch.get_num_threads()
    if torch.device(device).type != "cpu" or saved == 1:
        yield saved
        return
    torch.set_num_threads(1)
    try:
        yield saved
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def torch_threads(n: int):
    saved = torch.get_num_threads()
    if saved == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def rows_per_chunk(bytes_per_row: int, budget: int | None = None) -> int:
    budget = CHUNK_BYTES if budget is None else budget
    return max(1, int(budget) // max(1, int(bytes_per_row)))


def load_ext():
    try:
        from .. import _C
    except ImportError:  # pragma: no cover - only without the build
        return None
    return _C if hasattr(_C, "min_dist_update") else None


def make_generator(seed, device=None) -> torch.Generator:
    """int / None / Generator -> a torch.Generator (CPU for ints and None)."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def uniform(gen: torch.Generator) -> float:
    """One uniform in [0, 1) from ``gen`` (on its own device), as a Python float."""
    return float(torch.rand((), generator=gen, device=gen.device, dtype=torch.float64))


def d2_sample(mind: torch.Tensor, gen) -> int:
    """Index drawn with probability proportional to max(mind, 0)^2."""
    u = uniform(gen)
    w = mind.clamp(min=0.0).to(torch.float64).pow_(2)
    cs = torch.cumsum(w, 0)
    total = float(cs[-1])
    if total > 0.0 and total != float("inf"):
        i = int(torch.searchsorted(cs, torch.tensor([u * total], dtype=torch.float64,
                                                    device=cs.device), right=True))
        i = min(i, mind.numel() - 1)
        if w[i] > 0:
            return i
        # rounding at the top end: the last point with positive weight
        return int(torch.nonzero(w > 0)[-1])
    free = torch.nonzero(mind >= 0).view(-1)
    return int(free[min(int(u * free.numel()), free.numel() - 1)])


# --------------------------------------------------------------------------- metrics
#: Row dtypes the C++ step reads in place: the extension's name for each, and the
#: dtype of the numpy view it is given (numpy has no bfloat16: those rows go as
#: their int16 bit patterns).
_CPP_ROWS = {torch.float32: ("float32", None), torch.float16: ("float16", None),
             torch.bfloat16: ("bfloat16", torch.int16)}


def cpp_rows(x: torch.Tensor, ext):
    """(numpy view of x, bfloat16 flag) for the C++ step, or None when it cannot
    read x in place (device, dtype, feature stride, or an extension built
    before it read that dtype). Never copies x."""
    if ext is None or x.device.type != "cpu" or x.dtype not in _CPP_ROWS or x.stride(1) != 1:
        return None
    name, view = _CPP_ROWS[x.dtype]
    if name not in getattr(ext, "min_dist_row_types", ("float32",)):
        return None
    return (x if view is None else x.view(view)).numpy(), x.dtype == torch.bfloat16


class EuclideanRows:
    """Exact Euclidean distances between rows of x (n, d) and a centre, float32.

    Backend: Triton kernel on CUDA (or under TRITON_INTERPRET=1), the C++ step
    (autoal_fast._C) for float32 / float16 / bfloat16 CPU rows with unit feature
    stride (16-bit rows are widened per element as they are read; the pool,
    e.g. a float16 memmap, is never copied), the torch reference otherwise.
    ``backend`` names the one in use.
    """

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.n, self.d = x.shape
        self.device = x.device
        self.threads = torch.get_num_threads()  # for big passes; set by the caller
        from ..kernels import distance as kd

        self._kd = kd
        self._C = None
        if _backend.use_triton(self.device) and kd.HAS_TRITON:
            self.backend = "triton"
        elif (rows := cpp_rows(x, load_ext())) is not None:
            self.backend = "cpp"
            self._C = load_ext()
            self._xn, self._bf16 = rows
        else:
            self.backend = "torch"

    def vec(self, i: int) -> torch.Tensor:
        return self.x[i].to(torch.float32).contiguous()

    def update(self, idx, c, cid: int, mind, assign, dist_out=None):
        """In-place fused step on all rows (idx None) or sorted rows idx."""
        m = self.n if idx is None else int(idx.numel())
        nt = self.threads if m * self.d >= SMALL_WORK else 1
        if self.backend == "cpp":
            self._C.min_dist_update(self._xn, None if idx is None else idx.numpy(), c.numpy(),
                                    mind.numpy(), assign.numpy(), int(cid),
                                    None if dist_out is None else dist_out.numpy(), nt,
                                    bfloat16=self._bf16)
        elif self.backend == "triton":
            self._kd.min_dist_update(self.x, idx, c, mind, assign, cid, dist_out)
        elif self.device.type == "cpu":
            with torch_threads(nt):
                self._kd.min_dist_update_reference(self.x, idx, c, mind, assign, cid, dist_out)
        else:
            self._kd.min_dist_update_reference(self.x, idx, c, mind, assign, cid, dist_out)


class CenterStore:
    """Centres chosen so far, as float32 rows, for centre-to-centre distances."""

    def __init__(self, capacity: int, d: int, device):
        self.x = torch.empty(capacity, d, dtype=torch.float32, device=device)
        self.size = 0

    def add(self, v: torch.Tensor) -> int:
        self.x[self.size] = v
        self.size += 1
        return self.size - 1


def center_dists_euclid(store: CenterStore, c: torch.Tensor, metric: EuclideanRows) -> torch.Tensor:
    """Exact distances from c to the stored centres (difference form)."""
    s = store.size
    out = torch.empty(s, dtype=torch.float32, device=c.device)
    if metric.backend == "cpp" and s > 0:
        dummy_m = torch.full((s,), -1.0)
        dummy_a = torch.zeros(s, dtype=torch.int32)
        nt = metric.threads if s * metric.d >= SMALL_WORK else 1
        metric._C.min_dist_update(store.x[:s].numpy(), None, c.numpy(), dummy_m.numpy(),
                                  dummy_a.numpy(), 0, out.numpy(), nt)
    elif s > 0:
        out = torch.sub(store.x[:s], c).pow_(2).sum(1).sqrt_()
    return out


# --------------------------------------------------------------------------- engine
class PrunedGreedy:
    """State of a greedy centre-selection over n points (see module docstring).

    ``update_rows(idx, c, cid)`` must update mind/assign in place for the rows
    idx (None = all); ``center_dists(c)`` must return distances from c to
    centres [0, n_centres) that do not exceed the true ones by more than the
    slack.
    """

    def __init__(self, n: int, capacity: int, device, update_rows, center_dists):
        self.n = n
        self.mind = torch.full((n,), float("inf"), dtype=torch.float32, device=device)
        self.assign = torch.full((n,), -1, dtype=torch.int32, device=device)
        self.radius = torch.full((capacity,), -1.0, dtype=torch.float32, device=device)
        self.n_centres = 0
        self.update_rows = update_rows
        self.center_dists = center_dists
        self.full_passes = 0
        self.rows_visited = 0

    def recompute_radii(self, idx=None):
        """Exact cluster radii: all (idx None) or for the clusters of rows idx."""
        if idx is None:
            self.radius.fill_(-1.0)
            ok = self.assign >= 0
            self.radius.scatter_reduce_(0, self.assign[ok].long(), self.mind[ok], "amax")
        else:
            a = self.assign[idx].long()
            self.radius.scatter_reduce_(0, a, self.mind[idx], "amax")

    def set_initial(self, mind, assign, n_centres: int):
        """Start from precomputed nearest-centre state (e.g. the labeled set)."""
        self.mind.copy_(mind)
        self.assign.copy_(assign)
        self.n_centres = n_centres
        self.recompute_radii()

    def add_centre(self, c, point: int | None = None):
        """Add centre vector c (pool row ``point``, or None for an outside centre
        such as a labeled sample) and update every point's nearest centre."""
        cid = self.n_centres
        if point is not None:
            self.mind[point] = -1.0  # chosen: never picked again, never updated
        if cid == 0:
            self.update_rows(None, c, cid)
            if point is not None:
                self.assign[point] = cid
            self.full_passes += 1
            self.rows_visited += self.n
            self.n_centres = 1
            self.recompute_radii()
            return
        cd = self.center_dists(c)
        r = self.radius[:cid]
        touch = cd <= 2.0 * r * (1.0 + PRUNE_SLACK)
        touch &= r >= 0
        self.n_centres = cid + 1
        a = self.assign if self.assign.device.type == "cpu" else self.assign.long()
        cand = torch.nonzero(touch[a]).view(-1)  # every point is assigned here
        m = int(cand.numel())
        if point is not None:
            self.assign[point] = cid  # after the gather: its old cluster is touched
        if m > FULL_PASS_FRACTION * self.n:
            self.update_rows(None, c, cid)
            self.full_passes += 1
            self.rows_visited += self.n
            self.recompute_radii()
            return
        if m == 0:
            return
        self.update_rows(cand, c, cid)
        self.rows_visited += m
        self.radius[:cid][touch] = -1.0
        self.recompute_radii(cand)
