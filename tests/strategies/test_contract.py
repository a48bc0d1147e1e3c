"""One contract over every strategy in strategies.names()."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import strategies

N, C, D, T = 300, 5, 16, 4


def make_pool(n=N, seed=0, with_mc=True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g)
    emb = torch.randn(n, D, generator=g)
    mc = logits + 0.5 * torch.randn(T, n, C, generator=g) if with_mc else None
    return aaf.PoolOutputs(logits, embeddings=emb, mc_logits=mc)


def labeled_set():
    g = torch.Generator().manual_seed(99)
    return aaf.PoolOutputs(torch.randn(20, C, generator=g), embeddings=torch.randn(20, D, generator=g))


def test_names_are_the_documented_ten():
    assert strategies.names() == ["entropy", "margin", "least_confidence", "var_ratio", "bald",
                                  "mean_std", "kmeans", "coreset", "badge", "random"]


@pytest.mark.parametrize("name", strategies.names())
@pytest.mark.parametrize("k", [1, 17, N])
def test_k_unique_in_range(name, k):
    pool = make_pool()
    idx = strategies.select(name, pool, k, labeled=labeled_set(), seed=3)
    assert idx.dtype == torch.int64 and idx.shape == (k,)
    assert idx.unique().numel() == k
    assert int(idx.min()) >= 0 and int(idx.max()) < N


@pytest.mark.parametrize("name", strategies.names())
def test_same_seed_same_picks(name):
    pool = make_pool()
    a = strategies.select(name, pool, 25, labeled=labeled_set(), seed=7)
    b = strategies.select(name, pool, 25, labeled=labeled_set(), seed=7)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", strategies.UNCERTAINTY)
def test_uncertainty_select_is_top_of_score_in_order(name):
    pool = make_pool()
    s = strategies.score(name, pool)
    idx = strategies.select(name, pool, 40)
    ref = np.lexsort((np.arange(N), -s.double().numpy()))[:40]
    np.testing.assert_array_equal(idx.numpy(), ref)


@pytest.mark.parametrize("name", strategies.UNCERTAINTY)
def test_permuting_pool_permutes_scores(name):
    pool = make_pool()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    permuted = aaf.PoolOutputs(pool.logits[perm], embeddings=pool.embeddings[perm],
                               mc_logits=pool.mc_logits[:, perm])
    torch.testing.assert_close(strategies.score(name, permuted), strategies.score(name, pool)[perm])


@pytest.mark.parametrize("name", strategies.names())
def test_bad_k(name):
    pool = make_pool()
    for k in (0, -1, N + 1):
        with pytest.raises(ValueError, match=r"k must be an int in \[1, n_pool=300\]"):
            strategies.select(name, pool, k, labeled=labeled_set())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="entropy.*random"):
        strategies.select("entropyy", make_pool(), 3)
    with pytest.raises(ValueError, match="entropy"):
        strategies.score("kmeans", make_pool())


@pytest.mark.parametrize("name", ["kmeans", "coreset", "badge"])
def test_missing_embeddings(name):
    pool = aaf.PoolOutputs(torch.randn(10, C))
    with pytest.raises(ValueError, match="embeddings"):
        strategies.select(name, pool, 2)


@pytest.mark.parametrize("name", ["var_ratio", "bald", "mean_std"])
def test_missing_mc(name):
    pool = make_pool(with_mc=False)
    with pytest.raises(ValueError, match="mc_logits"):
        strategies.select(name, pool, 2)


def test_empty_pool():
    with pytest.raises(ValueError, match="empty"):
        strategies.select("entropy", aaf.PoolOutputs(torch.zeros(0, C)), 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["entropy", "margin", "badge"])
def test_nonfinite_logits(bad, name):
    pool = make_pool()
    pool.logits[5, 2] = bad
    with pytest.raises(ValueError, match="logits"):
        strategies.select(name, pool, 3)


def test_wrong_shapes_name_the_argument():
    with pytest.raises(ValueError, match="logits must be 2-D"):
        aaf.PoolOutputs(torch.zeros(5))
    with pytest.raises(ValueError, match="embeddings must have n_samples=5"):
        aaf.PoolOutputs(torch.zeros(5, 3), embeddings=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="mc_logits must have shape"):
        aaf.PoolOutputs(torch.zeros(5, 3), mc_logits=torch.zeros(2, 5, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["kmeans", "coreset", "badge"])
def test_nonfinite_embeddings(bad, name):
    pool = make_pool()
    pool.embeddings[7, 3] = bad
    with pytest.raises(ValueError, match="embeddings"):
        strategies.select(name, pool, 3, labeled=labeled_set())


def test_nonfinite_labeled_embeddings_for_coreset():
    lab = labeled_set()
    lab.embeddings[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"labeled.embeddings contain NaN/inf at row 2"):
        strategies.select("coreset", make_pool(), 3, labeled=lab)
