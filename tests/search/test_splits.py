"""AutoAL(n_splits=S): B's sample values averaged over the judges of S (A, C) splits."""
import pytest
import torch

import autoal_fast as aaf
import autoal_fast.autoal as autoal_mod
from autoal_fast.search.bilevel import SearchConfig, alternate, sample_values
from autoal_fast.search.nets import FitNet, SearchNet


def _toy(n, seed, d=6, C=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    e = torch.randn(n, d, generator=g) + 1.5 * torch.nn.functional.one_hot(y, d)[:, :d].float()
    return aaf.PoolOutputs(torch.randn(n, C, generator=g), e), y


def _rows(x):
    return {tuple(r.tolist()) for r in x}


def test_every_judge_sees_the_same_b_and_none_of_it(monkeypatch):
    """Each extra split trains a fresh FitNet on an A and judges with a C drawn outside
    B; B is the same for every judge; the values are the mean of each judge's values
    over their mean absolute value."""
    lab, y = _toy(90, 0)
    seen = {"pretrain": [], "values": []}
    real_pretrain, real_values = autoal_mod.pretrain_fitnet, autoal_mod.judged_values

    def spy_pretrain(net, opt, x_a, y_a, *a, **kw):
        seen["pretrain"].append((net, x_a.clone()))
        return real_pretrain(net, opt, x_a, y_a, *a, **kw)

    def spy_values(kind, net, x_a, y_a, x_b, y_b, x_c, y_c):
        v = real_values(kind, net, x_a, y_a, x_b, y_b, x_c, y_c)
        seen["values"].append((net, x_b.clone(), x_c.clone(), v.clone()))
        # each judge's A is the one its FitNet trained on
        assert any(n is net and torch.equal(xa, x_a) for n, xa in seen["pretrain"])
        return v

    captured = {}
    real_alternate = autoal_mod.alternate

    def spy_alternate(*args, values=None, **kw):
        captured["values"] = values
        captured["x_b"] = args[6].clone()
        return real_alternate(*args, values=values, **kw)

    monkeypatch.setattr(autoal_mod, "pretrain_fitnet", spy_pretrain)
    monkeypatch.setattr(autoal_mod, "judged_values", spy_values)
    monkeypatch.setattr(autoal_mod, "alternate", spy_alternate)
    al = aaf.AutoAL(strategies=("entropy", "margin", "badge"), seed=3, n_splits=3, pretrain_steps=10,
                    search_steps=5)
    al.fit(lab, y, k=10, n_pool=200)
    judges = seen["values"][:3]  # the fit's own judge, then the two extra ones
    assert len(seen["pretrain"]) == 3 and len(judges) == 3
    b = captured["x_b"]
    assert all(torch.equal(xb, b) for _, xb, _, _ in judges)
    nets = [net for net, *_ in judges]
    assert nets[0] is al.fitnet_ and len({id(n) for n in nets}) == 3  # fresh nets for the extra splits
    b_rows = _rows(b)
    for (_, x_a), (_, _, x_c, _) in zip(seen["pretrain"], judges):
        assert not (_rows(x_a) & b_rows) and not (_rows(x_c) & b_rows)
        assert not (_rows(x_a) & _rows(x_c))
    # the extra splits' A and C differ from the first's
    assert _rows(seen["pretrain"][1][1]) != _rows(seen["pretrain"][0][1])
    want = sum(v / v.abs().mean() for *_, v in judges) / 3
    torch.testing.assert_close(captured["values"], want)
    assert al.report_.sample_values is captured["values"]


def test_one_split_is_the_plain_search():
    lab, y = _toy(60, 1)
    pool, _ = _toy(300, 2)
    kw = dict(strategies=("entropy", "margin"), seed=5, pretrain_steps=10, search_steps=10)
    a1, a2 = aaf.AutoAL(**kw), aaf.AutoAL(n_splits=1, **kw)
    r1, r2 = a1.fit(lab, y, k=10, n_pool=300), a2.fit(lab, y, k=10, n_pool=300)
    assert r1.value == r2.value and "splits" not in r2.times
    assert torch.equal(a1.query(pool, 10).indices, a2.query(pool, 10).indices)


def test_same_seed_same_picks_and_state_round_trip():
    lab, y = _toy(80, 3)
    pool, _ = _toy(300, 4)
    kw = dict(strategies=("entropy", "margin", "badge"), seed=7, n_splits=3, pretrain_steps=10, search_steps=10)
    a1, a2 = aaf.AutoAL(**kw), aaf.AutoAL(**kw)
    r1, r2 = a1.fit(lab, y, k=10, n_pool=300), a2.fit(lab, y, k=10, n_pool=300)
    assert r1.value == r2.value and r1.times["splits"] > 0
    q1 = a1.query(pool, 10).indices
    assert torch.equal(q1, a2.query(pool, 10).indices)
    a3 = aaf.AutoAL(**kw).load_state_dict(a1.state_dict())
    assert torch.equal(a3.query(pool, 10).indices, q1)


def test_given_values_steer_the_weights():
    """alternate(values=...) searches on the values it is given: values that favour one
    candidate's picks move the weights to it, whichever it is."""
    g = torch.Generator().manual_seed(0)
    n, K = 200, 2
    x_b, y_b = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
    picks = torch.zeros(n, K)
    picks[:40, 0] = 1
    picks[40:80, 1] = 1
    ranks = torch.rand(n, K, generator=g)
    cand = torch.cat([ranks, picks], 1)
    for favoured in (0, 1):
        v = 0.1 * torch.ones(n)
        v[picks[:, favoured] > 0] = 1.0
        torch.manual_seed(0)
        fit, search = FitNet(5, 3, 16, 0.0), SearchNet(5, K, 16, per_sample=False)
        opt_f = torch.optim.Adam(fit.parameters(), 1e-3)
        opt_s = torch.optim.SGD(search.parameters(), lr=0.05, momentum=0.9)
        cfg = SearchConfig(search_steps=150, batch_size=256, objective="value")
        rep = aaf.search.bilevel.FitReport()
        alternate(fit, search, opt_f, opt_s, x_b[:2], y_b[:2], x_b, y_b, cand, ranks, picks, 0.2, cfg,
                  torch.Generator().manual_seed(1), rep, x_c=x_b[:4], y_c=y_b[:4], values=v)
        with torch.no_grad():
            w, _ = search(x_b, cand, predict_loss=False)
        assert float(w[:, favoured].mean()) > 0.8
        assert rep.sample_values is v


def test_bad_n_splits():
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises((ValueError, TypeError), match="n_splits"):
            aaf.AutoAL(n_splits=bad)
    for kw in (dict(objective="max_loss"), dict(first_order=False), dict(inner_steps=2)):
        with pytest.raises(ValueError, match="n_splits > 1 needs the first-order value objective"):
            aaf.AutoAL(n_splits=2, **kw)
    with pytest.raises(ValueError, match="first-order"):
        alternate(*([None] * 12), SearchConfig(objective="max_loss"), None, None, values=torch.zeros(3))
