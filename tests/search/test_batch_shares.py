"""AutoAL(batch="shares"): the query's batch made of each candidate's own best-ranked
samples in proportion to its weight."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.autoal import _quotas, _round_robin, fill_round_robin
from autoal_fast.distributed import LocalReducer

from test_credit import _toy


def _plain_quotas(shares, total):
    s = np.asarray(shares, dtype=np.float64)
    want = s / s.sum() * total
    q = np.floor(want).astype(int)
    frac = want - q
    for j in sorted(range(len(s)), key=lambda j: (-frac[j], j))[: total - q.sum()]:
        q[j] += 1
    return q.tolist()


@pytest.mark.parametrize("K,total,seed", [(2, 5, 0), (8, 90, 1), (3, 0, 2), (5, 1, 3), (4, 1000, 4)])
def test_quotas_are_largest_remainder(K, total, seed):
    g = torch.Generator().manual_seed(seed)
    shares = torch.rand(K, generator=g)
    shares[0] = 0.0  # a candidate with no weight gets nothing
    q = _quotas(shares, total)
    assert q == _plain_quotas(shares.tolist(), total) and sum(q) == total and q[0] == 0
    # ties (equal shares): the remainder goes to the lower indices
    assert _quotas(torch.full((K,), 1.0 / K), total) == _plain_quotas([1.0] * K, total)
    assert _quotas(torch.tensor([1.0, 0.0]), 7) == [7, 0]


def _plain_round_robin(idx, ranks, quotas):
    n, K = ranks.shape
    orders = [sorted(range(n), key=lambda i, c=c: (-float(ranks[i, c]), i)) for c in range(K)]
    chosen, extra, left, j = set(idx), [], list(quotas), 0
    while len(extra) < sum(quotas):
        if left[j]:
            nxt = next(i for i in orders[j] if i not in chosen)
            chosen.add(nxt)
            extra.append(nxt)
            left[j] -= 1
        j = (j + 1) % K
    return list(idx) + extra


@pytest.mark.parametrize("n,start,quotas,seed", [(60, 0, [6, 3], 0), (200, 10, [0, 12, 5, 1], 1),
                                                 (20, 0, [10, 10], 2), (12, 4, [8, 0, 0], 3), (5, 0, [0, 0], 4)])
def test_round_robin_matches_plain(n, start, quotas, seed):
    g = torch.Generator().manual_seed(seed)
    K = len(quotas)
    ranks = torch.rand(n, K, generator=g)
    ranks[:, -1] = (ranks[:, -1] > 0.5).float()  # a picks-only candidate: ties, to the lower index
    red = LocalReducer(n)
    idx = red.topk(torch.rand(n, generator=g), start) if start else torch.empty(0, dtype=torch.long)
    got = _round_robin(idx, ranks, quotas, red)
    assert got.tolist() == _plain_round_robin(idx.tolist(), ranks, quotas)
    assert torch.unique(got).numel() == got.numel() == start + sum(quotas)


def test_fill_round_robin_stops_when_every_list_is_used_up():
    """Short lists: each spends its quota on its unchosen entries, then its turns are lost
    rather than looped on; the order is the lists' turns, duplicates across lists once."""
    assert fill_round_robin([1], [[1, 2, 3], [2, 4]], [3, 3]) == [2, 4, 3]
    assert fill_round_robin([], [[5, 6], [6, 7]], [1, 1]) == [5, 6]
    assert fill_round_robin([0, 1], [[0, 1], [1]], [2, 2]) == []  # nothing left: returns, short
    assert fill_round_robin([9], [[], [8]], [0, 4]) == [8]
    assert fill_round_robin([], [[1, 2]], [0]) == []


def test_shares_query_hedges_between_the_prior_candidates():
    """Frozen at equal shares of margin and badge, "score" returns badge's batch
    (lexicographic) while "shares" returns half of each candidate's own ranking."""
    lab, y = _toy(60, 0)
    pool, _ = _toy(400, 1)
    k = 20
    kw = dict(strategies=("entropy", "margin", "badge"), seed=3, prior="margin+badge", search_steps=0,
              pretrain_steps=5, explore=0.0)
    out = {}
    for batch in ("score", "shares"):
        al = aaf.AutoAL(batch=batch, **kw)
        al.fit(lab, y, k=k, n_pool=400)
        res = al.query(pool, k)
        out[batch] = res.indices.tolist()
    assert len(set(out["shares"])) == k
    margin_top = aaf.strategies.select("margin", pool, k).tolist()
    # margin's quota (10): its own best-ranked 10, each taken by margin or already by badge
    assert set(margin_top[:10]) <= set(out["shares"])
    assert len(set(margin_top) & set(out["score"])) < len(set(margin_top) & set(out["shares"]))


def test_shares_follow_the_weights_and_keep_the_exploration_share():
    lab, y = _toy(80, 2)
    pool, _ = _toy(500, 3)
    al = aaf.AutoAL(strategies=("margin", "kmeans"), seed=1, batch="shares", prior="margin", search_steps=0,
                    pretrain_steps=5, explore=0.2)
    al.fit(lab, y, k=30, n_pool=500)
    res = al.query(pool, 30)
    idx = res.indices.tolist()
    assert len(set(idx)) == 30
    # the prior "margin" gives kmeans a share near 0: its quota of the 24 is 0, so they are
    # margin's own top 24; the last 6 are the exploration share, round-robin
    margin_order = aaf.strategies.select("margin", pool, 30).tolist()
    assert idx[:24] == margin_order[:24]
    assert set(idx[24:]) - set(margin_order)  # kmeans' exploration picks are not margin's


def test_same_seed_same_picks():
    lab, y = _toy(60, 4)
    pool, _ = _toy(300, 5)
    kw = dict(strategies=("entropy", "margin", "badge"), seed=9, batch="shares", pretrain_steps=10, search_steps=10)
    a1, a2 = aaf.AutoAL(**kw), aaf.AutoAL(**kw)
    a1.fit(lab, y, k=15, n_pool=300)
    a2.fit(lab, y, k=15, n_pool=300)
    q = a1.query(pool, 15).indices
    assert torch.equal(q, a2.query(pool, 15).indices)
    a3 = aaf.AutoAL(**kw).load_state_dict(a1.state_dict())
    assert torch.equal(a3.query(pool, 15).indices, q)


def test_bad_batch():
    with pytest.raises(ValueError, match="batch must be 'score' or 'shares'"):
        aaf.AutoAL(batch="mix")
    with pytest.raises(ValueError, match="batch='shares' needs one weight vector"):
        aaf.AutoAL(batch="shares", per_sample_weights=True)
