"""AutoAL(explore_from="random"): the exploration share drawn uniformly at random from the
pool rows the score's top did not take."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.autoal import _explore_random

from test_credit import _toy


@pytest.mark.parametrize("n,k,m,seed", [(10, 4, 2, 0), (200, 30, 7, 1), (50, 49, 10, 2), (5, 5, 5, 3), (7, 3, 0, 4)])
def test_explore_random_matches_a_plain_draw(n, k, m, seed):
    top = torch.randperm(n, generator=torch.Generator().manual_seed(100 + seed))[:k - m]
    got = _explore_random(top, n, m, seed)
    assert torch.equal(got[:k - m], top) and got.numel() == k and torch.unique(got).numel() == k
    # plain: the same seeded uniform keys, the m largest among the rows not in top, largest first
    keys = torch.rand(n, generator=torch.Generator().manual_seed(seed)).numpy().astype(np.float64)
    rest = [i for i in np.argsort(-keys, kind="stable") if i not in set(top.tolist())]
    assert got[k - m:].tolist() == rest[:m]


def test_explore_random_is_uniform_over_the_rest():
    n, k, m = 40, 12, 4
    top = torch.arange(k - m)
    counts = np.zeros(n)
    for s in range(3000):
        counts[_explore_random(top, n, m, s)[k - m:].numpy()] += 1
    assert counts[:k - m].sum() == 0
    freq = counts[k - m:] / 3000  # expected m / (n - k + m) = 0.125 each; 3 standard errors
    assert np.abs(freq - m / (n - k + m)).max() < 3 * np.sqrt(0.125 * 0.875 / 3000)



def test_query_with_random_exploration_keeps_the_score_top_and_repeats():
    lab, y = _toy(60, 0)
    pool, _ = _toy(300, 1)
    kw = dict(strategies=("entropy", "margin", "badge"), seed=0, pretrain_steps=5, search_steps=5, explore=0.3)
    a = aaf.AutoAL(explore_from="random", **kw)
    a.fit(lab, y, k=20, n_pool=300)
    r = a.query(pool, 20)
    b = aaf.AutoAL(explore_from="candidates", **kw)
    b.fit(lab, y, k=20, n_pool=300)
    rb = b.query(pool, 20)
    m = round(0.3 * 20)
    assert torch.equal(r.indices[:20 - m], rb.indices[:20 - m])  # the same search, the same top
    assert torch.unique(r.indices).numel() == 20
    c = aaf.AutoAL(explore_from="random", **kw).load_state_dict(a.state_dict())
    assert torch.equal(c.query(pool, 20).indices, r.indices)  # same seed, same picks, also reloaded
    with pytest.raises(ValueError, match="explore_from must be"):
        aaf.AutoAL(explore_from="uniform")
