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


def _query_and_centres(pool, batch, k, factor, explore):
    """The query's result and indices, and by plain means the top of its score and kmeans'
    picks (the cells' centres) on it."""
    al = _fitted(k, pool.n_samples, diverse_factor=factor, explore=explore)
    al.batch = batch
    res = al.query(pool, k)
    m = int(round(explore * k))
    got = res.indices.tolist()
    assert len(set(got)) == k
    top = _plain_top(res.scores, min(pool.n_samples, math.ceil(factor * (k - m))))
    seed = _derive_seed(al._fitted["round_seed"], 2)
    sub = aaf.PoolOutputs(pool.logits[top], pool.embeddings[top])
    centres = [top[i] for i in aaf.strategies.select("kmeans", sub, k - m, seed=seed).tolist()]
    return res, got, top, centres, m


@pytest.mark.parametrize("n,k,factor,explore", [(400, 20, 10.0, 0.0), (400, 20, 3.0, 0.1), (120, 15, 10.0, 0.2),
                                                (50, 10, 2.5, 0.0)])
def test_diverse_batch_is_kmeans_on_the_top_of_the_score(n, k, factor, explore):
    res, got, top, want, m = _query_and_centres(_toy(n, 1)[0], "diverse", k, factor, explore)
    assert got[:k - m] == want
    assert set(got[:k - m]) <= set(top)


def test_factor_one_is_the_top_of_the_score():
    pool, _ = _toy(300, 2)
    al = _fitted(12, 300, diverse_factor=1.0, explore=0.0)
    res = al.query(pool, 12)
    assert sorted(res.indices.tolist()) == sorted(_plain_top(res.scores, 12))


def _margin_only_batches(pool, batches, k, factor):
    """{batch: set of picks} of a frozen margin-only AutoAL (no exploration share)."""
    lab, y = _toy(40, 5)
    out = {}
    for batch in batches:
        al = aaf.AutoAL(strategies=("margin",), seed=1, pretrain_steps=5, search_steps=0, explore=0.0,
                        batch=batch, diverse_factor=factor)
        al.fit(lab, y, k=k, n_pool=pool.n_samples)
        out[batch] = set(al.query(pool, k).indices.tolist())
    return out


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
    picks = _margin_only_batches(aaf.PoolOutputs(logits, emb), ("score", "diverse"), 5, 10.0)
    groups = {b: {i // 10 for i in idx} for b, idx in picks.items()}
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


def _plain_cluster_top(emb, scores, top, centres):
    """Each centre's cell (nearest centre, ties to the earlier one) gives its best-scored member
    (ties to the lower pool index); a cell left empty gives its centre."""
    out = []
    e = emb.double()
    cells = {j: [] for j in range(len(centres))}
    for i in top:
        d = [float(torch.sum((e[i] - e[c]) ** 2)) for c in centres]
        cells[min(range(len(centres)), key=lambda j: (d[j], j))].append(i)
    for j, c in enumerate(centres):
        mem = cells[j]
        out.append(min(mem, key=lambda i: (-float(scores[i]), i)) if mem else c)
    return out


@pytest.mark.parametrize("n,k,factor,explore", [(400, 20, 10.0, 0.0), (300, 12, 3.0, 0.25), (60, 10, 2.0, 0.0)])
def test_cluster_top_takes_each_cells_best_scored_sample(n, k, factor, explore):
    pool, _ = _toy(n, 6)
    res, got, top, centres, m = _query_and_centres(pool, "cluster_top", k, factor, explore)
    assert got[:k - m] == _plain_cluster_top(pool.embeddings, res.scores, top, centres)
    # every pick scores at least its cell's centre
    assert all(float(res.scores[g]) >= float(res.scores[c]) for g, c in zip(got, centres))


def test_cluster_top_keeps_the_informative_end_of_each_cluster():
    """Two far clusters, each with an uncertain end and a confident core: nearest-centre picks
    land in the cores, cluster_top on the uncertain ends."""
    g = torch.Generator().manual_seed(2)
    core = [torch.randn(40, 6, generator=g) * 0.05 + 10 * torch.eye(6)[c] for c in range(2)]
    edge = [torch.randn(5, 6, generator=g) * 0.05 + 10 * torch.eye(6)[c] + 0.5 for c in range(2)]
    emb = torch.cat([core[0], edge[0], core[1], edge[1]])
    logits = torch.zeros(90, 3)
    logits[:, 0] = 3.0
    logits[40:45, 0] = 0.01 * torch.arange(1, 6)  # the uncertain ends: the lowest margins
    logits[85:90, 0] = 0.01 * torch.arange(6, 11)
    out = _margin_only_batches(aaf.PoolOutputs(logits, emb), ("diverse", "cluster_top"), 2, 45.0)
    assert out["cluster_top"] == {40, 85}
    assert not out["diverse"] & (set(range(40, 45)) | set(range(85, 90)))



def test_cluster_top_cell_left_empty_by_an_equal_centre_gives_its_centre(monkeypatch):
    """Two centres with equal embeddings: every sample's nearest centre is the earlier one (ties
    to serving order), so the later cell is empty and gives its own centre."""
    from autoal_fast import strategies
    from autoal_fast.autoal import _diverse_top
    from autoal_fast.distributed import LocalReducer

    emb = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.1, 5.0], [0.1, 0.0], [5.0, 5.1]])
    pool = aaf.PoolOutputs(torch.zeros(6, 3), emb)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.5])  # top order: 4, 0, 1, 2, 3, 5
    # kmeans stand-in: centres at pool indices 0, 1 (equal embeddings) and 2 (positions 1-3 in the top)
    monkeypatch.setattr(strategies, "select", lambda name, sub, k, seed=None: torch.tensor([1, 2, 3]))
    got = _diverse_top(pool, scores, 3, 2.0, 0, LocalReducer(6), best_of_cell=True).tolist()
    assert got == [4, 1, 2]  # cell of 0: {0, 1, 4}, best 4; cell of 1: empty; cell of 2: {2, 3, 5}, best 2
