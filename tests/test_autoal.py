"""AutoAL end to end: report, query, alignment, determinism, state, errors, a real AL loop."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import autoal_fast as aaf
from autoal_fast import AutoAL, PoolOutputs, QueryResult
from autoal_fast.strategies import AUTOAL_CANDIDATES, PAPER_CANDIDATES, select

FAST = dict(pretrain_steps=30, search_steps=40)
UNC_NO_TIES = ("entropy", "margin", "bald", "mean_std")

pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(n, C=5, D=16, T=6, seed=0, mc=True):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, D, generator=g)
    logits = 2 * torch.randn(n, C, generator=g)
    mc_logits = logits + torch.randn(T, n, C, generator=g) if mc else None
    return PoolOutputs(logits, embeddings=emb, mc_logits=mc_logits)


def _labels(n, C=5, seed=1):
    return torch.randint(0, C, (n,), generator=torch.Generator().manual_seed(seed))


def test_public_names():
    assert "AutoAL" in aaf.__all__ and "QueryResult" in aaf.__all__
    assert aaf.AutoAL is AutoAL


def test_fit_report_and_query():
    lab, y = _outputs(120), _labels(120)
    pool = _outputs(400, seed=3)
    al = AutoAL(seed=0, **FAST)
    assert al.strategies == AUTOAL_CANDIDATES == PAPER_CANDIDATES + ("badge",)
    assert al.objective == "value" and not al.per_sample_weights
    assert dict(zip(al.strategies, al.prior))["margin"] == pytest.approx(dict(zip(al.strategies, al.prior))["badge"])
    rep = al.fit(lab, y, k=20, n_pool=400)
    assert rep.n_a == 40 and rep.n_b == 40 and rep.strategies == AUTOAL_CANDIDATES  # C: the other 40
    for key in ("search_loss", "lift", "value", "count_penalty", "rank_loss", "fit_loss", "grad_norm_search",
                "grad_norm_loss_head", "grad_norm_fit", "soft_count", "topk_count"):
        assert len(getattr(rep, key)) == 40, key
    assert len(rep.pretrain_loss) == 30
    assert all(abs(c - rep.target_count) < 1e-3 for c in rep.topk_count)
    assert abs(sum(rep.weight_totals.values()) - rep.n_b) < 1e-3
    assert set(rep.weight_share) == set(AUTOAL_CANDIDATES) == set(rep.candidate_value)
    first = AutoAL(seed=0, strategies=PAPER_CANDIDATES, objective="max_loss", prior=None, per_sample_weights=True,
                   **FAST).fit(lab, y, k=20, n_pool=400)
    assert first.n_a == 60 and first.n_b == 60 and not first.candidate_value
    res = al.query(pool, 20)
    assert isinstance(res, QueryResult)
    assert res.indices.shape == (20,) and res.indices.dtype == torch.int64
    assert len(set(res.indices.tolist())) == 20 and int(res.indices.max()) < 400
    assert res.scores.shape == (400,) and res.weights.shape == (400, 8)
    assert torch.allclose(res.weights.sum(1), torch.ones(400), atol=1e-5)
    assert res.mc_source == "mc_logits"
    # indices: the top k - m of the scores, then m = round(explore k) round-robin exploration picks
    m = int(round(al.explore * 20))
    assert torch.equal(res.indices[:20 - m], aaf.topk(res.scores, 20 - m)[1])
    plain = AutoAL(seed=0, explore=0.0, **FAST)
    plain.fit(lab, y, k=20, n_pool=400)
    r0 = plain.query(pool, 20)
    assert torch.equal(r0.indices, aaf.topk(r0.scores, 20)[1])  # explore=0: the top k alone


def test_searchnet_gets_gradient_and_objective_improves_in_fit():
    lab, y = _outputs(200, seed=5), _labels(200, seed=6)
    al = AutoAL(strategies=UNC_NO_TIES, seed=0, pretrain_steps=30, search_steps=80)
    rep = al.fit(lab, y, k=20, n_pool=200)
    assert min(rep.grad_norm_search) > 0 and min(rep.grad_norm_loss_head) > 0
    assert np.mean(rep.search_loss[-10:]) < np.mean(rep.search_loss[:10])


def test_weights_concentrate_on_the_informative_candidate():
    # informative: entropy (FitNet's loss is highest where it is unsure); random carries no signal
    g = torch.Generator().manual_seed(0)
    C, D, n = 4, 12, 1600
    centers = 2.0 * torch.randn(C, D, generator=g)
    y_all = torch.randint(0, C, (n,), generator=g)
    emb = centers[y_all] + 1.5 * torch.randn(n, D, generator=g)
    logits = emb @ centers.T / D  # a rough task model
    lab = PoolOutputs(logits[:400], embeddings=emb[:400])
    pool = PoolOutputs(logits[400:], embeddings=emb[400:])
    al = AutoAL(strategies=("random", "entropy"), seed=0, pretrain_steps=60, search_steps=150)
    rep = al.fit(lab, y_all[:400], k=60, n_pool=1200)
    assert rep.weight_share["entropy"] > 0.7, rep.weight_share
    res = al.query(pool, 60)
    assert res.weight_share()["entropy"] > 0.7
    ent = set(select("entropy", pool, 60).tolist())
    overlap = len(ent & set(res.indices.tolist())) / 60
    assert overlap > 0.6 and overlap > 5 * 60 / 1200, overlap


def test_permuting_the_pool_permutes_the_scores():
    lab, y = _outputs(100), _labels(100)
    pool = _outputs(300, seed=3)
    al = AutoAL(strategies=UNC_NO_TIES, seed=0, **FAST)
    al.fit(lab, y, k=10, n_pool=300)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(9))
    pool_p = PoolOutputs(pool.logits[perm], embeddings=pool.embeddings[perm], mc_logits=pool.mc_logits[:, perm])
    r1, r2 = al.query(pool, 10), al.query(pool_p, 10)
    assert torch.allclose(r2.scores, r1.scores[perm], atol=1e-6)
    assert torch.allclose(r2.weights, r1.weights[perm], atol=1e-6)
    assert set(perm[r2.indices].tolist()) == set(r1.indices.tolist())


def test_same_seed_same_indices_and_global_rng_untouched():
    lab, y = _outputs(100), _labels(100)
    pool = _outputs(300, seed=3, mc=False)  # MC candidates through FitNet as MC-dropout head
    out = []
    for _ in range(2):
        torch.manual_seed(123)
        al = AutoAL(seed=7, **FAST)
        al.fit(lab, y, k=15, n_pool=300)
        res = al.query(pool, 15)
        assert res.mc_source == "fitnet"
        out.append((res.indices, torch.rand(1)))
    assert torch.equal(out[0][0], out[1][0])
    torch.manual_seed(123)
    assert torch.equal(out[0][1], torch.rand(1))  # fit/query left the caller's RNG as it was
    al3 = AutoAL(seed=8, **FAST)
    al3.fit(lab, y, k=15, n_pool=300)
    assert not torch.equal(al3.query(pool, 15).indices, out[0][0])  # another seed, another search


def test_state_dict_round_trip_gives_same_query():
    lab, y = _outputs(100), _labels(100)
    pool = _outputs(300, seed=3)
    al = AutoAL(seed=1, **FAST)
    al.fit(lab, y, k=15, n_pool=300)
    r1 = al.query(pool, 15)
    state = al.state_dict()
    al2 = AutoAL(seed=1, **FAST).load_state_dict(state)
    r2 = al2.query(pool, 15, labeled=lab)
    assert torch.equal(r1.indices, r2.indices) and torch.allclose(r1.scores, r2.scores)
    # warm start: the next round continues from the loaded nets and both copies stay in step
    lab2, y2 = _outputs(110, seed=11), _labels(110, seed=12)
    al.fit(lab2, y2, k=15, n_pool=300)
    al2.fit(lab2, y2, k=15, n_pool=300)
    assert torch.equal(al.query(pool, 15).indices, al2.query(pool, 15).indices)
    with pytest.raises(ValueError, match="strategies"):
        AutoAL(strategies=("entropy",)).load_state_dict(state)


def test_errors():
    lab, y = _outputs(40), _labels(40)
    al = AutoAL(seed=0, **FAST)
    with pytest.raises(RuntimeError, match="not fitted"):
        al.query(_outputs(50), 5)
    with pytest.raises(ValueError, match=r"labels in \[0, n_classes=5\)"):
        al.fit(lab, torch.full((40,), 5))
    with pytest.raises(ValueError, match=r"labels in \[0"):
        al.fit(lab, -torch.ones(40, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 6 samples"):  # A, B and the judge C
        al.fit(_outputs(5), _labels(5))
    with pytest.raises(ValueError, match="at least 4 samples"):  # the first build's halves
        AutoAL(seed=0, objective="max_loss", **FAST).fit(_outputs(3), _labels(3))
    with pytest.raises(ValueError, match=r"shape \(40,\)"):
        al.fit(lab, y[:30])
    with pytest.raises(TypeError, match="integer class labels"):
        al.fit(lab, y.float())
    with pytest.raises(ValueError, match="embeddings is required"):
        al.fit(PoolOutputs(lab.logits), y)
    al.fit(lab, y, k=5, n_pool=50)
    with pytest.raises(ValueError, match="k must be"):
        al.query(_outputs(50), 51)
    with pytest.raises(ValueError, match="n_classes=3"):
        al.query(_outputs(50, C=3), 5)
    with pytest.raises(ValueError, match="k is required"):
        al.query(_outputs(50), None)
    with pytest.raises(ValueError, match="strategies must be"):
        AutoAL(strategies=("entropy", "nope"))
    with pytest.raises(ValueError, match="temperature"):
        AutoAL(temperature=0)
    strict = AutoAL(strategies=("bald",), seed=0, mc_head=None, **FAST)
    strict.fit(lab, y, k=5, n_pool=50)
    with pytest.raises(ValueError, match="stochastic predictions"):
        strict.query(_outputs(50, mc=False), 5)


class _Net(nn.Module):
    """(logits, embeddings) with BatchNorm and a dropout head."""

    def __init__(self, d=8, C=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(16, C))

    def forward(self, x):
        e = self.body(x)
        return self.head(e), e


@pytest.mark.parametrize("mc_passes", [0, 4])
def test_query_model_streams_eval_mode_and_keeps_batchnorm(mc_passes):
    torch.manual_seed(0)
    net = _Net()
    net.train()
    data = torch.randn(200, 8)
    bn = net.body[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    labeled_ids = np.arange(0, 40)
    labels = np.random.default_rng(0).integers(0, 3, 40)
    unlabeled_ids = np.arange(40, 200)
    al = AutoAL(budget=10, seed=0, **FAST)
    ids = al.query_model(net, data, labeled_ids, labels, unlabeled_ids, mc_passes=mc_passes, batch_size=32)
    assert isinstance(ids, np.ndarray) and ids.shape == (10,) and len(set(ids.tolist())) == 10
    assert set(ids.tolist()) <= set(unlabeled_ids.tolist())
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    assert net.training and net.head[0].training  # flags restored
    assert al.last_query_.mc_source == ("mc_logits" if mc_passes else "head")
    # a map-style Dataset of (x, y) gives the same outputs as the tensor
    ds = torch.utils.data.TensorDataset(data, torch.zeros(200))
    al2 = AutoAL(budget=10, seed=0, **FAST)
    ids2 = al2.query_model(net, ds, torch.as_tensor(labeled_ids), labels, torch.as_tensor(unlabeled_ids),
                           mc_passes=mc_passes, batch_size=32)
    assert isinstance(ids2, torch.Tensor) and ids2.tolist() == ids.tolist()
    with pytest.raises(ValueError, match="disjoint"):
        al2.query_model(net, data, labeled_ids, labels, np.arange(30, 200))


@pytest.mark.parametrize("mc_passes", [0, 3])
def test_query_model_outputs_on_disk(tmp_path, mc_passes):
    # outputs streamed into .npy files and read back memory-mapped: same picks as
    # in memory (float32), and float16 files give a valid query
    torch.manual_seed(0)
    net = _Net()
    data = torch.randn(300, 8)
    labeled_ids, unlabeled_ids = np.arange(0, 40), np.arange(40, 300)
    labels = np.random.default_rng(0).integers(0, 3, 40)
    mem = AutoAL(budget=12, seed=0, **FAST).query_model(net, data, labeled_ids, labels, unlabeled_ids,
                                                        mc_passes=mc_passes, batch_size=64)
    al = AutoAL(budget=12, seed=0, **FAST)
    disk = al.query_model(net, data, labeled_ids, labels, unlabeled_ids, mc_passes=mc_passes, batch_size=64,
                          outputs_dir=tmp_path / "out", progress=True)
    assert disk.tolist() == mem.tolist()
    names = {"logits.npy", "embeddings.npy"} | ({"mc_logits.npy"} if mc_passes else set())
    assert {p.name for p in (tmp_path / "out").iterdir()} == names
    logits = np.load(tmp_path / "out" / "logits.npy", mmap_mode="r")
    assert logits.shape == (260, 3) and logits.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(logits, net.eval()(data[40:])[0].numpy(), rtol=1e-6, atol=1e-6)
    half = AutoAL(budget=12, seed=0, **FAST).query_model(
        net, data, labeled_ids, labels, unlabeled_ids, mc_passes=mc_passes, batch_size=64,
        outputs_dir=str(tmp_path / "half"), outputs_dtype="float16")
    assert len(set(half.tolist())) == 12 and set(half.tolist()) <= set(unlabeled_ids.tolist())
    assert np.load(tmp_path / "half" / "embeddings.npy", mmap_mode="r").dtype == np.float16
    with pytest.raises(ValueError, match="outputs_dtype"):
        al.query_model(net, data, labeled_ids, labels, unlabeled_ids, outputs_dir=tmp_path, outputs_dtype="int8")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="outputs_dir must be a folder"):
        al.query_model(net, data, labeled_ids, labels, unlabeled_ids, outputs_dir=tmp_path / "afile")


@pytest.mark.slow
def test_compiled_nets_run_and_save_like_eager():
    lab, y = _outputs(100), _labels(100)
    pool = _outputs(300, seed=3)
    al = AutoAL(seed=0, compile=True, **FAST)
    rep = al.fit(lab, y, k=15, n_pool=300)
    res = al.query(pool, 15)
    assert res.indices.shape == (15,) and len(rep.lift) == FAST["search_steps"]
    eager = AutoAL(seed=0, **FAST).load_state_dict(al.state_dict())  # same keys, no compile wrapper
    assert len(set(eager.query(pool, 15, labeled=lab).indices.tolist()) & set(res.indices.tolist())) >= 12


# ----------------------------------------------------------------------------- a real AL loop
def _digits_auc(strategy, seed, rounds, init, b, autoal_kw):
    from sklearn.datasets import load_digits

    X, Y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    Y = torch.tensor(Y)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(X), generator=g)
    test, pool = perm[:500], perm[500:]
    lab, unl = pool[:init], pool[init:]
    from autoal_fast.experiment.models import MLP

    model = MLP(10, 64, hidden=64, emb_dim=32, dropout=0.3)
    al = AutoAL(budget=b, seed=seed, **autoal_kw)

    def train(r):
        torch.manual_seed(seed * 100 + r)
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        opt = torch.optim.Adam(model.parameters(), 3e-3, weight_decay=1e-4)
        model.train()
        for _ in range(150):
            loss = F.cross_entropy(model(X[lab])[0], Y[lab])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return float((model(X[test])[0].argmax(1) == Y[test]).float().mean())

    accs = []
    for r in range(rounds):
        accs.append(train(r))
        if strategy == "random":
            pick = unl[torch.randperm(len(unl), generator=g)[:b]]
        else:
            pick = al.query_model(model, X, lab, Y[lab], unl)
        unl = unl[~torch.isin(unl, pick)]
        lab = torch.cat([lab, pick])
    accs.append(train(rounds))
    return float(np.mean(accs))


def _compare(seeds, rounds, autoal_kw):
    auto = [_digits_auc("autoal", s, rounds, 30, 15, autoal_kw) for s in seeds]
    rand = [_digits_auc("random", s, rounds, 30, 15, {}) for s in seeds]
    return float(np.mean(auto)), float(np.mean(rand))


def test_digits_al_loop_beats_random_fast():
    auto, rand = _compare(seeds=(0, 1), rounds=5, autoal_kw=dict(pretrain_steps=60, search_steps=100))
    assert auto > rand, (auto, rand)


@pytest.mark.slow
def test_digits_al_loop_beats_random():
    auto, rand = _compare(seeds=(0, 1, 2, 3, 4), rounds=8, autoal_kw={})
    assert auto > rand + 0.01, (auto, rand)


def test_docstring_examples():
    import doctest

    import autoal_fast.autoal
    import autoal_fast.search.relax

    for mod in (autoal_fast.autoal, autoal_fast.search.relax):
        assert doctest.testmod(mod).failed == 0


@pytest.mark.parametrize("kw", [{}, {"seed": 3, "budget": 7, "prior": {"margin": 2.0, "entropy": 1.0}},
                                {"strategies": ("margin", "entropy"), "prior": [1.0, 3.0], "explore": 0.0},
                                {"prior": None, "judge": "random_set", "sample_value": "influence"}])
def test_get_params_rebuilds_the_same_autoal(kw):
    import inspect

    al = AutoAL(**kw)
    p = al.get_params()
    assert list(p) == [n for n in inspect.signature(AutoAL.__init__).parameters if n != "self"]
    twin = AutoAL(**p)
    assert twin.get_params() == p and twin.prior == al.prior and twin.strategies == al.strategies
    for name, value in kw.items():
        assert p[name] == (tuple(value) if name == "strategies" else value)
