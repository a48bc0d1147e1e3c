"""select('random'): seeded uniform sampling without replacement."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import _backend
from autoal_fast.strategies import select
from autoal_fast.strategies.random import select_random


def _pool(n):
    return aaf.PoolOutputs(torch.zeros(n, 2))


@pytest.mark.parametrize("n,k", [(1, 1), (10, 10), (1000, 37), (100_000, 1000)])
def test_unique_in_range(n, k):
    idx = select("random", _pool(n), k, seed=3)
    assert idx.dtype == torch.long and idx.shape == (k,)
    assert len(set(idx.tolist())) == k
    assert 0 <= int(idx.min()) and int(idx.max()) < n
    assert _backend.last_used["random"] == "torch"


def test_seed_reproducible_and_generator():
    a = select("random", _pool(500), 50, seed=7)
    b = select("random", _pool(500), 50, seed=7)
    c = select("random", _pool(500), 50, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1 = torch.Generator().manual_seed(7)
    g2 = torch.Generator().manual_seed(7)
    assert torch.equal(select("random", _pool(500), 50, seed=g1), select("random", _pool(500), 50, seed=g2))
    # a generator is advanced: the next draw differs
    assert not torch.equal(select("random", _pool(500), 50, seed=g1), select("random", _pool(500), 50, seed=g1))


def test_k_equals_n_is_permutation():
    idx = select_random(64, 64, seed=0)
    assert sorted(idx.tolist()) == list(range(64))


def test_roughly_uniform():
    n, k, reps = 20, 5, 2000
    counts = np.zeros(n)
    g = torch.Generator().manual_seed(0)
    for _ in range(reps):
        counts[select_random(n, k, g).numpy()] += 1
    expected = reps * k / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 45  # 19 dof; p ~ 1e-3


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        select("random", _pool(10), 2, seed=-1)
