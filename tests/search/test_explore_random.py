"""AutoAL(explore_from="random"): the exploration share drawn uniformly at random from the
pool rows the score's top did not take."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.autoal import _explore_random

from test_credit import _toy, plain_round_robin


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


@pytest.mark.parametrize("prior,k,explore", [("margin+badge", 20, 0.3), ("margin", 15, 0.2),
                                              ({"entropy": 3.0, "badge": 1.0}, 24, 0.5)])
def test_prior_exploration_takes_the_prior_candidates_in_proportion(prior, k, explore):
    """explore_from="prior": the same search and the same top as "candidates"; the share is
    the prior's candidates' best-ranked samples not yet taken, their quotas in proportion to
    the prior (plain reference: a loop over the candidates' rankings)."""
    from autoal_fast.autoal import _derive_seed
    from autoal_fast.search.candidates import compute_candidates

    lab, y = _toy(60, 0)
    pool, _ = _toy(300, 1)
    kw = dict(strategies=("entropy", "margin", "badge"), seed=0, pretrain_steps=5, search_steps=5,
              explore=explore, prior=prior)
    a = aaf.AutoAL(explore_from="prior", **kw)
    a.fit(lab, y, k=k, n_pool=300)
    r = a.query(pool, k)
    b = aaf.AutoAL(explore_from="candidates", **kw)
    b.fit(lab, y, k=k, n_pool=300)
    rb = b.query(pool, k)
    m = round(explore * k)
    assert torch.equal(r.indices[:k - m], rb.indices[:k - m])
    assert torch.unique(r.indices).numel() == k
    # the reference: quotas by largest remainder of prior * m, then the candidates in turn
    w = np.array(a.prior, dtype=np.float64) * m
    q = np.floor(w).astype(int)
    for j in sorted(range(3), key=lambda j: (-(w[j] - q[j]), j))[:m - q.sum()]:
        q[j] += 1
    cand = compute_candidates(pool, a.strategies, k, labeled=None, seed=_derive_seed(a._fitted["round_seed"], 2))
    extra = plain_round_robin(r.indices[:k - m], cand.ranks, q.tolist())
    assert r.indices[k - m:].tolist() == extra
    if isinstance(prior, str) and "+" not in prior:  # one candidate: the share continues its ranking
        margin_order = sorted(range(300), key=lambda i: (-float(cand.ranks[i, 1]), i))
        assert set(extra) <= set(margin_order[:k + m])
