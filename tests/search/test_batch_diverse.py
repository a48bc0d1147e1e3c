"""AutoAL(batch="diverse"): the query's batch is k-means' picks (on the embeddings) among
the top ``diverse_factor`` times its size by aggregated score."""
import math

import pytest
import torch

import autoal_fast as aaf
from autoal_fast.autoal import _derive_seed

from test_credit import _toy


def _plain_top(scores, m):
    """The m highest scores, ties to the lower index (a plain sort)."""
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return order[:m]


def _fitted(k, n_pool, seed=3, **kw):
    lab, y = _toy(60, 0)
    al = aaf.AutoAL(strategies=("entropy", "margin", "badge"), seed=seed, pretrain_steps=5, search_steps=5,
                    batch="diverse", **kw)
    al.fit(lab, y, k=k, n_pool=n_pool)
    return al


@pytest.mark.parametrize("n,k,factor,explore", [(400, 20, 10.0, 0.0), (400, 20, 3.0, 0.1), (120, 15, 10.0, 0.2),
                                                (50, 10, 2.5, 0.0)])
def test_diverse_batch_is_kmeans_on_the_top_of_the_score(n, k, factor, explore):
    pool, _ = _toy(n, 1)
    al = _fitted(k, n, diverse_factor=factor, explore=explore)
    res = al.query(pool, k)
    m = int(round(explore * k))
    got = res.indices.tolist()
    assert len(set(got)) == k
    top = _plain_top(res.scores, min(n, math.ceil(factor * (k - m))))
    seed = _derive_seed(al._fitted["round_seed"], 2)
    sub = aaf.PoolOutputs(pool.logits[top], pool.embeddings[top])
    want = [top[i] for i in aaf.strategies.select("kmeans", sub, k - m, seed=seed).tolist()]
    assert got[:k - m] == want
    assert set(got[:k - m]) <= set(top)


def test_factor_one_is_the_top_of_the_score():
    pool, _ = _toy(300, 2)
    al = _fitted(12, 300, diverse_factor=1.0, explore=0.0)
    res = al.query(pool, 12)
    assert sorted(res.indices.tolist()) == sorted(_plain_top(res.scores, 12))


def test_diverse_batch_spreads_over_clusters_that_the_score_batch_piles_into():
    """Five tight clusters of near-duplicates, the first the most uncertain: margin's top 5 are
    all in it; the diverse batch takes one sample from each cluster."""
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(6)[:5] * 10
    emb = torch.cat([centres[c] + 0.01 * torch.randn(10, 6, generator=g) for c in range(5)]
                    + [torch.randn(200, 6, generator=g) * 0.1 - 5])
    margin = torch.cat([torch.full((10,), 0.01 * (c + 1)) for c in range(5)] + [torch.full((200,), 5.0)])
    margin = margin + 1e-4 * torch.rand(250, generator=g)
    logits = torch.zeros(250, 3)
    logits[:, 0] = margin  # top-1 minus top-2 = the margin
    pool = aaf.PoolOutputs(logits, emb)
    lab, y = _toy(40, 5)
    groups = {}
    for batch in ("score", "diverse"):
        al = aaf.AutoAL(strategies=("margin",), seed=1, pretrain_steps=5, search_steps=0, explore=0.0,
                        batch=batch, diverse_factor=10.0)
        al.fit(lab, y, k=5, n_pool=250)
        idx = al.query(pool, 5).indices.tolist()
        groups[batch] = {i // 10 for i in idx}
    assert groups["score"] == {0}
    assert groups["diverse"] == {0, 1, 2, 3, 4}


def test_diverse_same_seed_same_picks_and_state_round_trip():
    pool, _ = _toy(300, 4)
    a = _fitted(10, 300, seed=7)
    b = aaf.AutoAL(strategies=("entropy", "margin", "badge"), seed=7, pretrain_steps=5, search_steps=5,
                   batch="diverse").load_state_dict(a.state_dict())
    c = _fitted(10, 300, seed=7)
    qa, qb, qc = (x.query(pool, 10).indices for x in (a, b, c))
    assert torch.equal(qa, qb) and torch.equal(qa, qc)


def test_diverse_bad_input():
    with pytest.raises(ValueError, match="diverse_factor must be >= 1"):
        aaf.AutoAL(batch="diverse", diverse_factor=0.5)
    with pytest.raises(ValueError, match="diverse_factor must be a finite number"):
        aaf.AutoAL(batch="diverse", diverse_factor=float("nan"))
    with pytest.raises(ValueError, match="batch must be 'score' or 'shares' or 'diverse'"):
        aaf.AutoAL(batch="kmeans")
    al = _fitted(5, 100)
    with pytest.raises(ValueError, match="batch='diverse' needs pool.embeddings"):
        al.query(aaf.PoolOutputs(torch.randn(100, 3)), 5)
