"""torch.distributed plumbing for sharded pools.

When a process group is initialised (or one is passed), a PoolOutputs given to
a strategy is this rank's shard; shards are in rank order, so rank r's local
index i is global index ``offset_r + i`` with ``offset_r`` the sum of the
sizes of ranks < r. Everything here returns the same value on every rank.

A *reducer* is the one interface the query path uses: ``reducer(n_local, group)`` gives a
``LocalReducer`` (one process: every exchange is the identity) or a ``GroupReducer``
(the shards of a process group: sizes exchanged once on construction). Both offer

- ``n_total``: rows of the whole pool; ``check_pool(pool, caller)``;
- ``agree(fn, caller)``: ``fn()``, its ValueError/TypeError made collective;
- ``topk(values, k)``: global indices of the k largest of the whole pool (merge of the
  local top-k's), ties to the lower index;
- ``rank_normalize(score)``: ``search.candidates.rank_normalize`` over the whole pool,
  this shard's rows;
- ``argmax(values)``: global index of the largest value (one (value, index) exchange);
- ``shared_seed(seed)``: the same seed on every rank;
- ``local_rows(global_idx, device)``: the global indices that fall in this shard, as rows;

and ``shard`` / ``group`` (None when local) for the strategies' own sharded steps.

Collectives run on CPU tensors for gloo and on the current CUDA device for
NCCL. The exchanges are small by design: sizes once, local top-k's once, and
one (value, index) pair (plus one centre row) per greedy step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Shard", "resolve_group", "shard_of", "merge_topk", "global_argmax",
           "all_reduce_sum", "broadcast_from", "agree_on_errors",
           "reducer", "LocalReducer", "GroupReducer"]


class _Local:
    """``group=LOCAL``: this process's data alone, even inside an initialised process group."""

    def __repr__(self):
        return "LOCAL"


#: Pass as ``group=`` for single-process work while a process group is initialised (AutoAL's
#: search on the labeled set, which every rank holds whole, uses it for its candidates).
LOCAL = _Local()


def resolve_group(group=None):
    """The group to use, or None for single-process work.

    ``group=None`` uses the default group when torch.distributed is
    initialised; a world of size 1 is single-process work; ``group=LOCAL`` is
    single-process work whatever is initialised.
    """
    import torch.distributed as dist

    if group is LOCAL:
        return None
    if not dist.is_available() or not dist.is_initialized():
        if group is not None:
            raise ValueError("group was given but torch.distributed is not initialised")
        return None
    group = group if group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def comm_device(group) -> torch.device:
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@dataclass(frozen=True)
class Shard:
    """Where this rank's rows sit in the concatenated pool."""

    group: object
    rank: int
    world: int
    offset: int      # global index of this rank's first row
    n_local: int
    n_total: int
    sizes: tuple     # rows per rank, in rank order


def shard_of(n_local: int, group) -> Shard:
    """All-gathers the shard sizes (one collective)."""
    import torch.distributed as dist

    dev = comm_device(group)
    world = dist.get_world_size(group)
    mine = torch.tensor([n_local], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine, group=group)
    sizes = tuple(int(s) for s in sizes)
    rank = dist.get_rank(group)
    return Shard(group, rank, world, sum(sizes[:rank]), n_local, sum(sizes), sizes)


def _all_gather_rows(t: torch.Tensor, group) -> torch.Tensor:
    """All-gather equally shaped tensors, concatenated along dim 0 in rank order."""
    import torch.distributed as dist

    world = dist.get_world_size(group)
    dev = comm_device(group)
    t = t.to(dev).contiguous()
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t, group=group)
    return torch.cat(parts)


def merge_topk(values: torch.Tensor, global_idx: torch.Tensor, k: int, largest: bool, group):
    """Global top-k from each rank's local top-k (values, global indices).

    Each rank contributes at most k candidates; ranks with fewer are padded
    with entries that rank last. Order: best value, then lower global index.
    Returns (values float64, indices int64) on CPU, identical on every rank.
    """
    pad = k - values.numel()
    fill = float("-inf") if largest else float("inf")
    v = torch.cat([values.detach().double().cpu(), torch.full((pad,), fill, dtype=torch.float64)])
    i = torch.cat([global_idx.detach().long().cpu(),
                   torch.full((pad,), np.iinfo(np.int64).max, dtype=torch.int64)])
    allv = _all_gather_rows(v, group).cpu().numpy()
    alli = _all_gather_rows(i, group).cpu().numpy()
    key = -allv if largest else allv
    order = np.lexsort((alli, key))[:k]
    return torch.from_numpy(allv[order]), torch.from_numpy(alli[order])


def global_argmax(value: float, global_index: int, group):
    """(value, index) of the global maximum; ties go to the lower index.

    One all_gather of a (2,) float64 tensor (indices are exact below 2**53).
    A rank with nothing to offer passes value = -inf.
    """
    pair = torch.tensor([value, float(global_index)], dtype=torch.float64)
    allp = _all_gather_rows(pair[None], group).cpu()
    vals, idxs = allp[:, 0], allp[:, 1]
    best = vals.max()
    cand = idxs[vals == best] if not torch.isnan(best) else idxs
    return float(best), int(cand.min())


def all_reduce_sum(t: torch.Tensor, group) -> torch.Tensor:
    """Sum over ranks (returns a new tensor on t's device)."""
    import torch.distributed as dist

    buf = t.detach().to(comm_device(group)).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    return buf.to(t.device)


def broadcast_from(t: torch.Tensor | None, owner: int, shape, dtype, group) -> torch.Tensor:
    """Tensor ``t`` of rank ``owner`` on every rank (others pass None)."""
    import torch.distributed as dist

    dev = comm_device(group)
    buf = t.detach().to(dev, dtype).contiguous().clone() if t is not None else \
        torch.empty(shape, dtype=dtype, device=dev)
    dist.broadcast(buf, src=dist.get_global_rank(group, owner) if group is not None else owner,
                   group=group)
    return buf


def owner_of(global_index: int, shard: Shard) -> int:
    """The rank holding a global index."""
    acc = 0
    for r, s in enumerate(shard.sizes):
        if global_index < acc + s:
            return r
        acc += s
    raise IndexError(f"global index {global_index} is outside the pool of {acc}")


def agree_on_errors(fn, group, caller: str):
    """Run ``fn()`` (a rank-local step that may reject its input) and make the
    outcome collective: one all-gather of a flag per rank. If any rank raised
    ValueError or TypeError (bad input), every rank raises (a failing rank its own
    error, the others a ValueError naming the failing ranks), so no rank is left
    waiting in the next collective for a rank that has already given up. Returns
    ``fn()``'s result. Other errors (bugs, out of memory) are not caught.
    """
    err, out = None, None
    try:
        out = fn()
    except (ValueError, TypeError) as exc:
        err = exc
    flags = _all_gather_rows(torch.tensor([0 if err is None else 1], dtype=torch.int64), group)
    bad = torch.nonzero(flags).view(-1).tolist()
    if err is not None:
        raise err
    if bad:
        raise ValueError(f"rank(s) {bad} rejected their shard of the input ({caller}); this rank's "
                         "shard was valid: see the error raised on those ranks")
    return out


def reducer(n_local: int, group=None) -> "LocalReducer | GroupReducer":
    """The reducer of a pool of which this process holds ``n_local`` rows: a
    ``GroupReducer`` when ``resolve_group(group)`` has more than one rank (one
    all-gather of the sizes), else a ``LocalReducer``."""
    grp = resolve_group(group)
    if grp is None:
        return LocalReducer(n_local)
    return GroupReducer(shard_of(n_local, grp))


class LocalReducer:
    """Single-process work: the pool is all here and every exchange is the identity."""

    shard = None
    group = LOCAL

    def __init__(self, n_local: int):
        self.n_total = n_local

    def check_pool(self, pool, caller: str) -> None:
        from .strategies import check_pool

        check_pool(pool, caller)

    def agree(self, fn, caller: str):
        return fn()

    def topk(self, values: torch.Tensor, k: int) -> torch.Tensor:
        from ._topk import topk

        return topk(values, k)[1]

    def rank_normalize(self, score: torch.Tensor) -> torch.Tensor:
        from .search.candidates import rank_normalize

        return rank_normalize(score)

    def argmax(self, values) -> int:
        return int(torch.argmax(values))

    def shared_seed(self, seed):
        return seed

    def local_rows(self, global_idx: torch.Tensor, device) -> torch.Tensor:
        return global_idx.to(device)


class GroupReducer:
    """The pool is sharded over a process group (``shard``, shards in rank order);
    every method returns the same value on every rank (``rank_normalize`` and
    ``local_rows``: this rank's rows of the same global answer)."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.group = shard.group
        self.n_total = shard.n_total

    def check_pool(self, pool, caller: str) -> None:
        from .pool import PoolOutputs
        from .strategies import check_pool

        if not isinstance(pool, PoolOutputs):
            check_pool(pool, caller)  # raises TypeError
        if self.n_total == 0:  # empty shards are allowed; the pool is not
            raise ValueError(f"pool is empty ({caller}): 0 samples over {self.shard.world} ranks")

    def agree(self, fn, caller: str):
        return agree_on_errors(fn, self.group, caller)

    def topk(self, values: torch.Tensor, k: int) -> torch.Tensor:
        """Global indices (k,) on CPU: local top-k's merged (one all-gather)."""
        from ._topk import topk

        v, i = topk(values, min(k, self.shard.n_local))
        return merge_topk(v, i.cpu() + self.shard.offset, k, True, self.group)[1]

    def rank_normalize(self, score: torch.Tensor) -> torch.Tensor:
        from .search.candidates import rank_normalize_global

        return rank_normalize_global(score, self.shard)

    def argmax(self, values) -> int:
        """Global index of the largest of every rank's ``values`` (None on an empty
        shard); ties go to the lower global index. One exchange."""
        shard = self.shard
        if values is None:
            return global_argmax(float("-inf"), shard.offset, shard.group)[1]
        j = int(torch.argmax(values))
        return global_argmax(float(values[j]), shard.offset + j, shard.group)[1]

    def shared_seed(self, seed):
        """A seed of None becomes one int drawn on rank 0 and broadcast; others pass through."""
        if seed is not None:
            return seed
        mine = torch.randint(0, 2**62, (1,), dtype=torch.int64) if self.shard.rank == 0 else None
        return int(broadcast_from(mine, 0, (1,), torch.int64, self.group)[0])

    def local_rows(self, global_idx: torch.Tensor, device) -> torch.Tensor:
        """The global indices that fall in this rank's shard, as local row ids."""
        g = global_idx.to(device) - self.shard.offset
        return g[(g >= 0) & (g < self.shard.n_local)]
