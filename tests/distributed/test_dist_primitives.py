"""autoal_fast.distributed primitives on 2 and 3 gloo processes."""
import numpy as np
import pytest
import torch

from dist_harness import run_world, shard_bounds

from autoal_fast import distributed as D
from autoal_fast import topk


def _primitives(rank, world, x):
    group = D.resolve_group()
    lo, hi = shard_bounds(len(x), world, rank)
    shard = D.shard_of(hi - lo, group)
    local = torch.from_numpy(x[lo:hi])
    k = 50
    v, i = topk(local, min(k, hi - lo))
    mv, mi = D.merge_topk(v, i + shard.offset, k, True, group)
    j = int(torch.argmax(local)) if hi > lo else 0
    best = (float(local[j]) if hi > lo else float("-inf"), shard.offset + j)
    # every rank offers the same value: the lowest index must win
    tie = D.global_argmax(1.0, shard.offset, group)
    s = D.all_reduce_sum(torch.tensor([float(hi - lo)]), group)
    return shard.offset, shard.n_total, mi.numpy(), D.global_argmax(*best, group), tie, float(s)


@pytest.mark.parametrize("world", [2, 3])
def test_primitives_match_single_process(world):
    x = np.random.default_rng(world).integers(0, 20, 1000).astype(np.float32)  # many ties
    res = run_world(_primitives, world, x)
    ref_i = topk(x, 50)[1]
    for rank, (offset, total, mi, (av, ai), tie, s) in enumerate(res):
        assert offset == shard_bounds(len(x), world, rank)[0]
        assert total == len(x)
        np.testing.assert_array_equal(mi, ref_i)
        assert (av, ai) == (float(x.max()), int(np.argmax(x)))
        assert tie == (1.0, 0)
        assert s == len(x)


def test_resolve_group_without_init_is_single_process():
    assert D.resolve_group() is None
    with pytest.raises(ValueError, match="not initialised"):
        D.resolve_group(object())
