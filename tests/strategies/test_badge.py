"""select('badge'): k-means++ on factorised gradient embeddings."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import _backend
from autoal_fast.strategies import _greedy, badge, select


def make_pool(n, c, d, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, c, (n,), generator=g)
    z = torch.randn(n, c, generator=g) + 4 * torch.nn.functional.one_hot(cls, c) * torch.rand(n, 1, generator=g)
    e = torch.randn(c, d, generator=g)[cls] + 0.3 * torch.randn(n, d, generator=g)
    return z.to(dtype), e.to(dtype)


def grad_embeddings(z, e):
    p = torch.softmax(z.double(), 1)
    a = p.clone()
    a[torch.arange(len(p)), p.argmax(1)] -= 1
    return (a[:, :, None] * e.double()[:, None, :]).reshape(len(p), -1)


def check_d2_picks(g, picks):
    """Every pick had positive float64 distance to all earlier picks; first = max ||g||."""
    assert int(picks[0]) == int(g.norm(dim=1).argmax())
    md = torch.full((g.shape[0],), float("inf"), dtype=torch.float64)
    for i in picks:
        assert md[i] > 0, i
        md = torch.minimum(md, (g - g[i]).norm(dim=1))


@pytest.mark.parametrize("n,c,d,k", [(300, 2, 8, 30), (2000, 10, 32, 100), (2000, 100, 8, 40)])
def test_valid_and_reproducible(n, c, d, k):
    z, e = make_pool(n, c, d)
    pool = aaf.PoolOutputs(z, e)
    a = select("badge", pool, k, seed=0)
    b = select("badge", pool, k, seed=0)
    other = select("badge", pool, k, seed=1)
    assert a.dtype == torch.long and a.shape == (k,)
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert len(set(a.tolist())) == k
    check_d2_picks(grad_embeddings(z, e), a.tolist())
    assert _backend.last_used["badge"] == "torch"  # below REJECTION_MIN_ROWS


def test_generator_seed():
    z, e = make_pool(500, 5, 8)
    pool = aaf.PoolOutputs(z, e)
    a = select("badge", pool, 20, seed=torch.Generator().manual_seed(5))
    b = select("badge", pool, 20, seed=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_d2_distribution():
    # four points on a line in g-space; after the first pick the second is drawn
    # with probability proportional to squared distance
    z = torch.tensor([[0.0, 0.0]] * 4)  # p = (.5,.5), a = (-.5, .5)
    e = torch.tensor([[4.0], [0.0], [1.0], [2.0]])  # g_i = a * e_i
    pool = aaf.PoolOutputs(z, e)
    counts = np.zeros(4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(1500):
        p = select("badge", pool, 2, seed=gen).tolist()
        assert p[0] == 0
        counts[p[1]] += 1
    # distances from g_0 along e: 4, 3, 2 -> weights 16, 9, 4
    expected = np.array([0, 16, 9, 4]) / 29 * 1500
    assert np.all(np.abs(counts - expected)[1:] < 5 * np.sqrt(expected[1:]))


def test_never_picks_duplicates_then_falls_back():
    z, e = make_pool(40, 4, 6, seed=2)
    z3, e3 = torch.cat([z] * 3), torch.cat([e] * 3)
    g = grad_embeddings(z3, e3)
    n_distinct = len({tuple(r) for r in g.round(decimals=9).tolist()})
    pool = aaf.PoolOutputs(z3, e3)
    picks = select("badge", pool, n_distinct, seed=0).tolist()
    assert len({tuple(r) for r in g[picks].round(decimals=9).tolist()}) == n_distinct
    # beyond the distinct points: unique, seeded uniform among the unchosen duplicates
    more = select("badge", pool, 100, seed=0)
    assert len(set(more.tolist())) == 100
    assert more[:n_distinct].tolist() == picks
    assert torch.equal(more, select("badge", pool, 100, seed=0))


def test_pruned_equals_full_pass(monkeypatch):
    monkeypatch.setattr(badge, "REJECTION", False)
    z, e = make_pool(3000, 10, 16, seed=3)
    pool = aaf.PoolOutputs(z, e)
    a = select("badge", pool, 80, seed=0)
    monkeypatch.setattr(_greedy, "FULL_PASS_FRACTION", 0.0)
    b = select("badge", pool, 80, seed=0)
    assert badge.last_stats["full_passes"] == 80
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    z, e = make_pool(800, 6, 12, dtype=dtype)
    picks = select("badge", aaf.PoolOutputs(z, e), 40, seed=0)
    assert len(set(picks.tolist())) == 40
    check_d2_picks(grad_embeddings(z, e), picks.tolist())


def test_memmap_pool(tmp_path, monkeypatch):
    z, e = make_pool(1500, 7, 20)
    np.save(tmp_path / "z.npy", z.numpy())
    np.save(tmp_path / "e.npy", e.numpy())
    monkeypatch.setattr(_greedy, "CHUNK_BYTES", 65536)
    mm = aaf.PoolOutputs(np.load(tmp_path / "z.npy", mmap_mode="r"), np.load(tmp_path / "e.npy", mmap_mode="r"))
    assert torch.equal(select("badge", mm, 30, seed=0), select("badge", aaf.PoolOutputs(z, e), 30, seed=0))


def test_uncached_probabilities_same_picks(monkeypatch):
    z, e = make_pool(1200, 9, 10, seed=4)
    pool = aaf.PoolOutputs(z, e)
    a = select("badge", pool, 40, seed=0)
    monkeypatch.setattr(badge, "PROB_CACHE_BYTES", 0)
    assert torch.equal(a, select("badge", pool, 40, seed=0))


# ------------------------------------------------------------- rejection sampling (CPU)
@pytest.fixture(autouse=True)
def _rejection_on_small_pools(request, monkeypatch):
    if "rejection" in request.node.name:
        monkeypatch.setattr(badge, "REJECTION_MIN_ROWS", 0)


def exact_pair_probs(g, first):
    """P(second = j, third = l) of exact D^2 sampling after pick 0 = first (float64)."""
    n = g.shape[0]
    dist = torch.cdist(g, g).pow(2).numpy()
    w1 = dist[first].copy()
    w1[first] = 0
    probs = {}
    for j in range(n):
        if w1[j] <= 0:
            continue
        p1 = w1[j] / w1.sum()
        w2 = np.minimum(w1, dist[j])
        w2[[first, j]] = 0
        for l in range(n):
            if w2[l] > 0:
                probs[(j, l)] = p1 * w2[l] / w2.sum()
    return probs


def chi_square_ok(counts, probs, runs):
    """Pearson chi-square against the exact cell probabilities (cells pooled below 5
    expected); passes at the 1e-4 level (Wilson-Hilferty quantile, z = 3.72)."""
    keys = sorted(probs, key=probs.get)
    obs, exp, pool_o, pool_e = [], [], 0.0, 0.0
    for key in keys:
        e_ = probs[key] * runs
        if e_ < 5:
            pool_o += counts.get(key, 0)
            pool_e += e_
        else:
            obs.append(counts.get(key, 0))
            exp.append(e_)
    if pool_e > 0:
        obs.append(pool_o)
        exp.append(pool_e)
    assert sum(counts.get(k_, 0) for k_ in counts if k_ not in probs) == 0, "impossible pair drawn"
    obs, exp = np.array(obs, float), np.array(exp)
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    q = df * (1 - 2 / (9 * df) + 3.72 * np.sqrt(2 / (9 * df))) ** 3
    return stat, q


@pytest.mark.parametrize("flops", [None, pytest.param(1e30, marks=pytest.mark.slow), 0.0])
# default rebuild rule (on 7 rows: a rebuild after each rejection) / always rebuild / never
def test_rejection_is_exact_d2_chi_square(monkeypatch, flops):
    if flops is not None:
        monkeypatch.setattr(badge, "ATTEMPT_FLOPS", flops)
    z, e = make_pool(7, 3, 2, seed=6)
    e[5] = e[4]
    z[5] = z[4]  # a duplicate row: probability 0 once its twin is picked
    pool = aaf.PoolOutputs(z, e)
    g = grad_embeddings(z, e)
    first = int(g.norm(dim=1).argmax())
    probs = exact_pair_probs(g, first)
    gen = torch.Generator().manual_seed(123)
    runs = 3000 if flops is not None else 1500  # the default rule's run is the slowest per call
    counts = {}
    for _ in range(runs):
        p = select("badge", pool, 3, seed=gen).tolist()
        assert p[0] == first
        counts[(p[1], p[2])] = counts.get((p[1], p[2]), 0) + 1
    assert badge.last_stats["rejection"]
    stat, q = chi_square_ok(counts, probs, runs)
    assert stat < q, (stat, q)


def test_rejection_rebuilds_and_counts(monkeypatch):
    z, e = make_pool(2000, 10, 16, seed=8)
    pool = aaf.PoolOutputs(z, e)
    a = select("badge", pool, 100, seed=3)
    st = dict(badge.last_stats)
    assert st["attempts"] >= 99 and st["refreshes"] < 100 * 2000 / 4
    monkeypatch.setattr(badge, "ATTEMPT_FLOPS", 1e30)  # a rebuild after every rejection
    b = select("badge", pool, 100, seed=3)
    assert badge.last_stats["rebuilds"] > st["rebuilds"]
    assert len(set(b.tolist())) == 100
    check_d2_picks(grad_embeddings(z, e), a.tolist())
    check_d2_picks(grad_embeddings(z, e), b.tolist())


def seeding_potential(g, picks):
    return float(torch.cdist(g, g[picks]).min(1).values.pow(2).sum())


def test_rejection_potential_matches_plain_loop(monkeypatch):
    z, e = make_pool(800, 10, 16, seed=9)
    pool = aaf.PoolOutputs(z, e)
    g = grad_embeddings(z, e)
    rej = [seeding_potential(g, select("badge", pool, 40, seed=s)) for s in range(12)]
    monkeypatch.setattr(badge, "REJECTION", False)
    plain = [seeding_potential(g, select("badge", pool, 40, seed=s)) for s in range(12)]
    # same distribution: means within a few standard errors of each other
    se = np.sqrt(np.var(rej) / 12 + np.var(plain) / 12)
    assert abs(np.mean(rej) - np.mean(plain)) < 4 * se + 1e-9, (np.mean(rej), np.mean(plain), se)


def test_sumtree_for_rejection():
    from autoal_fast import _C

    w = np.array([0.0, 2.0, 0.0, 1.0, 5.0])
    t = _C.SumTree(5)
    t.build(w)
    assert t.total() == 8.0 and len(t) == 5
    assert [t.find(u) for u in (0.0, 1.999, 2.0, 2.999, 3.0, 7.999)] == [1, 1, 3, 3, 4, 4]
    t.set(4, 0.0)
    assert t.total() == 3.0 and t.get(1) == 2.0 and t.find(2.5) == 3
    with pytest.raises(ValueError):
        t.set(5, 1.0)
    with pytest.raises(ValueError):
        t.build(np.array([1.0, -1.0, 0, 0, 0]))
