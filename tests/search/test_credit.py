"""Credit from the real pool by effect (AutoAL(credit="effect")): the credit of a candidate
from last round's batch, the exploration share of the query, the state that carries them
over, and the signal on a task where one candidate's labels are worth more."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.autoal import _explore, _split_with_new
from autoal_fast.distributed import LocalReducer
from autoal_fast.search.bilevel import effect_credit

from test_value_objective import _rare_region_task


def _plain_credit(v, picks):
    """numpy float64: (mean of v over each column's picks - mean v) / std v."""
    v = np.asarray(v, dtype=np.float64)
    p = np.asarray(picks, dtype=bool)
    sd = v.std()
    out = []
    for k in range(p.shape[1]):
        if not p[:, k].any():
            out.append(np.nan)
        elif sd == 0:
            out.append(0.0)
        else:
            out.append((v[p[:, k]].mean() - v.mean()) / sd)
    return np.array(out), p.sum(0)


@pytest.mark.parametrize("m,K,seed", [(1, 1, 0), (2, 3, 1), (17, 4, 2), (200, 8, 3)])
def test_effect_credit_matches_plain(m, K, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(m, generator=g) * 3 + 0.5
    picks = torch.rand(m, K, generator=g) < 0.4
    picks[:, 0] = False  # a candidate that picked none of the batch: NaN
    got, cnt = effect_credit(v, picks)
    ref, rcnt = _plain_credit(v.numpy(), picks.numpy())
    np.testing.assert_array_equal(cnt.numpy(), rcnt)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(got[0])


def test_effect_credit_ties_and_empty():
    v = torch.full((6,), 2.5)  # every sample worth the same: no candidate is credited
    picks = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 0], [0, 0], [0, 1]], dtype=torch.bool)
    got, cnt = effect_credit(v, picks)
    assert got.tolist() == [0.0, 0.0] and cnt.tolist() == [3.0, 3.0]
    got, cnt = effect_credit(torch.zeros(0), torch.zeros(0, 3, dtype=torch.bool))
    assert got.shape == (3,) and bool(torch.isnan(got).all()) and cnt.tolist() == [0.0] * 3
    # all picks of the batch: exactly the batch mean
    got, _ = effect_credit(torch.tensor([1.0, -2.0, 4.0]), torch.ones(3, 1, dtype=torch.bool))
    assert abs(float(got[0])) < 1e-7


def plain_round_robin(top, ranks, quotas) -> list:
    """The samples after ``top``: the candidates in turn, each while its quota lasts, add their
    best-ranked sample not chosen yet (stable order: rank ties to the lower index)."""
    n, K = ranks.shape
    orders = [sorted(range(n), key=lambda i, c=c: (-float(ranks[i, c]), i)) for c in range(K)]
    chosen, extra, left, j = set(top.tolist()), [], list(quotas), 0
    while len(extra) < sum(quotas):
        if left[j]:
            nxt = next((i for i in orders[j] if i not in chosen), None)
            if nxt is not None:
                chosen.add(nxt)
                extra.append(nxt)
            left[j] -= 1
        j = (j + 1) % K
    return extra


@pytest.mark.parametrize("n,k,m,K,seed", [(50, 10, 3, 2, 0), (200, 20, 8, 4, 1), (30, 29, 10, 3, 2), (9, 5, 5, 3, 3)])
def test_explore_takes_each_candidates_best_round_robin(n, k, m, K, seed):
    g = torch.Generator().manual_seed(seed)
    ranks = torch.rand(n, K, generator=g)
    ranks[:, -1] = (ranks[:, -1] > 0.5).float()  # a picks-only candidate: ties, to the lower index
    scores = torch.rand(n, generator=g)
    red = LocalReducer(n)
    top = red.topk(scores, k - m)
    idx = _explore(top, ranks, m, red)
    assert idx.numel() == k and torch.unique(idx).numel() == k
    assert torch.equal(idx[:k - m], top)
    assert idx[k - m:].tolist() == plain_round_robin(top, ranks, [m // K + (j < m % K) for j in range(K)])


def test_split_with_new_keeps_new_out_of_a_and_c():
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    for new in (torch.arange(30, 40), torch.tensor([3, 17, 5]), torch.arange(6, 40)):
        ia, ib, ic = _split_with_new(perm, new, 40, 1 / 3)
        parts = torch.cat([ia, ib, ic])
        assert sorted(parts.tolist()) == list(range(40))  # a partition
        assert not set(new.tolist()) & set(ia.tolist()) | set(ic.tolist()) & set(new.tolist())
        assert ia.numel() >= 2 and ic.numel() >= 2 and set(new.tolist()) <= set(ib.tolist())


def _credit_al(**kw):
    args = dict(strategies=("margin", "coreset"), seed=0, credit="effect", explore=0.5, prior=None)
    args.update(kw)
    return aaf.AutoAL(**args)


def test_credit_prefers_the_candidate_whose_labels_help():
    """Two candidates recommended halves of last round's batch; one half came back with
    wrong labels (labels that contradict the task), the other with the task's. The half
    with the true labels must be credited above the other, and the credit must carry."""
    torch.set_num_threads(1)
    lab, y, pool, _ = _rare_region_task()
    y_pool = _pool_labels()
    k = 40
    al = aaf.AutoAL(strategies=("margin", "coreset"), seed=0, credit="effect", prior=None)
    al.fit(lab, y, k=k, n_pool=pool.n_samples)
    al.query(pool, k)
    assert al.n_pending == k
    idx = torch.randperm(pool.n_samples, generator=torch.Generator().manual_seed(5))[:k]
    picks = torch.zeros(k, 2, dtype=torch.bool)
    picks[: k // 2, 0] = True  # "margin" recommended the first half, "coreset" the second
    picks[k // 2:, 1] = True
    al._pending = {"ids": idx, "picks": picks}
    y_new = y_pool[idx].clone()
    y_new[k // 2:] = (y_new[k // 2:] + 1) % 3  # the second half's labels are wrong
    lab2 = aaf.PoolOutputs(torch.cat([lab.logits, pool.logits[idx]]), torch.cat([lab.embeddings, pool.embeddings[idx]]))
    rep = al.fit(lab2, torch.cat([y, y_new]), k=k, n_pool=pool.n_samples - k,
                 new=torch.arange(lab.n_samples, lab2.n_samples))
    assert rep.n_new == k and set(rep.real_credit) == {"margin", "coreset"}
    # measured: +0.17 and -0.17 batch standard deviations (the halves are complements)
    assert rep.real_credit["margin"] > 0.1 and rep.real_credit["coreset"] < -0.1
    assert rep.credit == rep.real_credit  # one round: the accumulated credit is this round's
    assert al.n_pending == 0  # consumed


def test_query_records_the_exploration_share():
    torch.set_num_threads(1)
    lab, y, pool, _ = _rare_region_task()
    k = 30
    al = aaf.AutoAL(strategies=("margin", "coreset"), seed=0, credit="effect", explore=0.5,
                    pretrain_steps=20, search_steps=20)
    al.fit(lab, y, k=k, n_pool=pool.n_samples)
    res = al.query(pool, k)
    picks = al._pending["picks"]
    assert al.n_pending == k and torch.equal(al._pending["ids"], res.indices.cpu())
    assert bool(picks[:, 0].any()) and bool(picks[:, 1].any())  # both candidates in the batch
    # margin's column is margin's own top k of the pool
    own = set(aaf.strategies.select("margin", pool, k).tolist())
    assert picks[:, 0].tolist() == [int(i) in own for i in res.indices]


def _pool_labels():
    g = torch.Generator().manual_seed(1)  # _rare_region_task's pool: make(3000, 1, 0.08)
    y = (torch.rand(3000, generator=g) < 0.5).long()
    y[torch.rand(3000, generator=g) < 0.08] = 2
    return y


def _toy(n, seed):
    g = torch.Generator().manual_seed(seed)
    return aaf.PoolOutputs(torch.randn(n, 3, generator=g), torch.randn(n, 6, generator=g)), \
        torch.randint(0, 3, (n,), generator=g)


def test_credit_state_round_trip_and_same_seed_same_picks():
    kw = dict(strategies=("entropy", "margin", "badge"), seed=4, credit="effect", pretrain_steps=10,
              search_steps=10)
    lab, y = _toy(40, 0)
    pool, y_pool = _toy(200, 1)

    def two_rounds(reload):
        al = aaf.AutoAL(**kw)
        al.fit(lab, y, k=10, n_pool=200)
        q = al.query(pool, 10)
        if reload:
            al = aaf.AutoAL(**kw).load_state_dict(al.state_dict())
        lab2 = aaf.PoolOutputs(torch.cat([lab.logits, pool.logits[q.indices]]),
                               torch.cat([lab.embeddings, pool.embeddings[q.indices]]))
        rep = al.fit(lab2, torch.cat([y, y_pool[q.indices]]), k=10, n_pool=190, new=torch.arange(40, 50))
        return q.indices, rep, al

    q1, r1, a1 = two_rounds(False)
    q2, r2, a2 = two_rounds(True)
    assert torch.equal(q1, q2)
    assert r1.n_new == r2.n_new == 10 and r1.real_credit == r2.real_credit and r1.credit == r2.credit
    assert a1.credit_now() == a2.credit_now()
    assert a1.state_dict()["credit"]["count"] == a2.state_dict()["credit"]["count"]
    assert sum(a1.state_dict()["credit"]["count"]) > 0


def test_credit_off_ignores_new_and_keeps_the_plain_split():
    lab, y = _toy(40, 0)
    a1 = aaf.AutoAL(strategies=("entropy", "margin"), seed=1, pretrain_steps=5, search_steps=5)
    a2 = aaf.AutoAL(strategies=("entropy", "margin"), seed=1, pretrain_steps=5, search_steps=5)
    r1 = a1.fit(lab, y, k=5, n_pool=100)
    r2 = a2.fit(lab, y, k=5, n_pool=100, new=[1, 2, 3])
    assert r1.value == r2.value and r2.n_new == 0 and r2.credit == {}
    assert a1.n_pending == 0


def test_query_model_passes_the_last_batch_itself():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.out = model, torch.nn.Linear(6, 3)

        def forward(self, x):
            e = self.body(x)
            return self.out(e), e

    data = torch.randn(120, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(1))
    al = aaf.AutoAL(strategies=("entropy", "margin"), seed=0, credit="effect", pretrain_steps=5, search_steps=5)
    lab_ids = np.arange(30)
    got = al.query_model(M(), data, lab_ids, labels[:30].numpy(), np.arange(30, 120), k=8)
    assert al.n_pending == 8
    lab2 = np.concatenate([got[::-1], lab_ids])  # any order: found by id
    unl2 = np.setdiff1d(np.arange(120), lab2)
    al.query_model(M(), data, lab2, labels[lab2].numpy(), unl2, k=8)
    assert al.report_.n_new == 8 and al.n_pending == 8


@pytest.mark.parametrize("recent", [True, False])
def test_recent_in_b_puts_last_batch_in_b_without_credit(recent):
    lab, y = _toy(40, 0)
    pool, y_pool = _toy(200, 1)
    al = aaf.AutoAL(strategies=("entropy", "margin"), seed=2, pretrain_steps=5, search_steps=5, recent_in_b=recent)
    r1 = al.fit(lab, y, k=10, n_pool=200)
    q = al.query(pool, 10)
    assert al.n_pending == 10  # recorded with or without credit
    lab2 = aaf.PoolOutputs(torch.cat([lab.logits, pool.logits[q.indices]]), torch.cat([lab.embeddings, pool.embeddings[q.indices]]))
    r2 = al.fit(lab2, torch.cat([y, y_pool[q.indices]]), k=10, n_pool=190, new=torch.arange(40, 50))
    assert r2.credit == {} and r2.real_credit == {}
    if recent:  # C 17 and A 16 of the 40 older samples (the plain sizes fit), B the other 7 + the 10
        assert r2.n_new == 10 and r2.n_a == 16 and r2.n_b == 17 and al.n_pending == 0
    else:  # the plain random split of all 50
        assert r2.n_new == 0 and r2.n_a == (50 - round(50 / 3)) // 2 and r2.n_b == 50 - round(50 / 3) - r2.n_a


def test_credit_evidence_z_is_the_mean_times_the_root_of_its_count():
    g = torch.Generator().manual_seed(7)
    sums = (torch.randn(4, generator=g) * 5).tolist()
    counts = [9.0, 0.0, 250.0, 1.0]
    got = {}
    for ev in ("mean", "z"):
        al = aaf.AutoAL(strategies=("entropy", "margin", "badge", "kmeans"), credit="effect", credit_evidence=ev)
        al._credit_sum, al._credit_count = list(sums), list(counts)
        got[ev] = al.credit_now()
    ref_mean = [s / c if c else 0.0 for s, c in zip(sums, counts)]
    assert got["mean"] == pytest.approx(ref_mean, rel=1e-12)
    assert got["z"] == pytest.approx([m * np.sqrt(c) for m, c in zip(ref_mean, counts)], rel=1e-12)
    assert got["z"][1] == 0.0  # nothing measured: no evidence either way
    with pytest.raises(ValueError, match="credit_evidence must be"):
        aaf.AutoAL(credit="effect", credit_evidence="t")


def test_credit_view_query_values_the_batch_as_it_was_chosen():
    """credit_view="query": the next fit values last round's batch with last round's FitNet,
    judge C and the features the query saw (not this round's), also through a reload."""
    import copy

    from autoal_fast.search.bilevel import sample_values

    lab, y = _toy(60, 0)
    pool, y_pool = _toy(300, 1)
    kw = dict(strategies=("entropy", "margin", "badge"), seed=2, credit="effect", credit_view="query",
              pretrain_steps=10, search_steps=10)
    al = aaf.AutoAL(**kw)
    al.fit(lab, y, k=12, n_pool=300)
    q = al.query(pool, 12)
    then_net, then_judge = copy.deepcopy(al.fitnet_), copy.deepcopy(al._judge_then)
    picks = al._pending["picks"].clone()
    torch.testing.assert_close(al._pending["x"], pool.embeddings[q.indices])
    al = aaf.AutoAL(**kw).load_state_dict(al.state_dict())  # the harness reloads every round
    # this round's task model sees the batch differently: other embeddings for the same samples
    g = torch.Generator().manual_seed(9)
    lab2 = aaf.PoolOutputs(torch.cat([lab.logits, pool.logits[q.indices]]),
                           torch.cat([lab.embeddings, pool.embeddings[q.indices]]) + torch.randn(72, 6, generator=g))
    y_new = y_pool[q.indices]
    rep = al.fit(lab2, torch.cat([y, y_new]), k=12, n_pool=288, new=torch.arange(60, 72))
    v = sample_values(then_net, pool.embeddings[q.indices], y_new, then_judge["x"], then_judge["y"])
    want, _ = effect_credit(v, picks)
    got = torch.tensor([rep.real_credit[s] for s in kw["strategies"]])
    torch.testing.assert_close(got, want.float(), equal_nan=True)
    now = aaf.AutoAL(**dict(kw, credit_view="now"))
    now.fit(lab, y, k=12, n_pool=300)
    now.query(pool, 12)
    assert "x" not in now._pending and now._judge_then is None
    with pytest.raises(ValueError, match="credit_view='query' needs credit='effect'"):
        aaf.AutoAL(credit_view="query")
    with pytest.raises(ValueError, match="credit_view must be"):
        aaf.AutoAL(credit="effect", credit_view="then")


def _plain_margin(z):
    p = np.sort(torch.softmax(torch.as_tensor(z, dtype=torch.float64), 1).numpy(), axis=1)
    return float((p[:, -1] - p[:, -2]).mean())


def test_report_margins_say_how_the_batch_looks_now_and_then():
    lab, y = _toy(60, 0)
    pool, y_pool = _toy(300, 1)
    al = aaf.AutoAL(strategies=("entropy", "margin"), seed=4, pretrain_steps=10, search_steps=10)
    al.fit(lab, y, k=10, n_pool=300)
    q = al.query(pool, 10)
    first = dict(al.report_.margins)
    assert set(first) == {"fitnet_pool", "task_pool"}  # no batch named yet
    assert first["task_pool"] == pytest.approx(_plain_margin(pool.logits), abs=1e-6)  # 300 < 4096: every row
    with torch.no_grad():
        al.fitnet_.eval()
        assert first["fitnet_pool"] == pytest.approx(_plain_margin(al.fitnet_(pool.embeddings)), abs=1e-6)
    g = torch.Generator().manual_seed(3)
    z_now = torch.randn(10, 3, generator=g) * 4  # the next task model is surer of them
    lab2 = aaf.PoolOutputs(torch.cat([lab.logits, z_now]), torch.cat([lab.embeddings, pool.embeddings[q.indices]]))
    rep = al.fit(lab2, torch.cat([y, y_pool[q.indices]]), k=10, n_pool=290, new=torch.arange(60, 70))
    assert rep.margins["task_batch_at_query"] == pytest.approx(_plain_margin(pool.logits[q.indices]), abs=1e-6)
    assert rep.margins["task_batch_now"] == pytest.approx(_plain_margin(z_now), abs=1e-6)
    with torch.no_grad():
        al.fitnet_.eval()
        want = _plain_margin(al.fitnet_(pool.embeddings[q.indices]))
    assert rep.margins["fitnet_batch"] == pytest.approx(want, abs=1e-6)
    assert "task_pool" not in rep.margins  # until this round's query
    al.query(pool, 10)
    assert set(rep.margins) == {"fitnet_batch", "task_batch_now", "task_batch_at_query", "fitnet_pool", "task_pool"}


def test_b_view_query_scores_the_candidates_on_b_as_the_query_saw_the_batch(monkeypatch):
    import autoal_fast.autoal as autoal_mod

    lab, y = _toy(60, 0)
    pool, y_pool = _toy(300, 1)
    kw = dict(strategies=("entropy", "margin", "var_ratio", "badge"), seed=6, b_view="query",
              pretrain_steps=10, search_steps=10)
    al = aaf.AutoAL(**kw)
    al.fit(lab, y, k=12, n_pool=300)
    q = al.query(pool, 12)
    al = aaf.AutoAL(**kw).load_state_dict(al.state_dict())
    seen = []
    real = autoal_mod.compute_candidates

    def spy(p, strategies, k, **k2):
        seen.append((p, k))
        return real(p, strategies, k, **k2)

    monkeypatch.setattr(autoal_mod, "compute_candidates", spy)
    g = torch.Generator().manual_seed(9)
    lab2 = aaf.PoolOutputs(torch.cat([lab.logits, torch.randn(12, 3, generator=g)]),
                           torch.cat([lab.embeddings, pool.embeddings[q.indices]]) + torch.randn(72, 6, generator=g))
    rep = al.fit(lab2, torch.cat([y, y_pool[q.indices]]), k=12, n_pool=288, new=torch.arange(60, 72))
    p_b, k_b = seen[0]  # the fit's candidates on B
    assert rep.n_b == 12 and rep.n_a == 72 - 12 - round(72 / 3) and k_b == rep.k_b == 2
    torch.testing.assert_close(p_b.logits, pool.logits[q.indices])  # the query's view, not this round's
    torch.testing.assert_close(p_b.embeddings, pool.embeddings[q.indices])
    assert p_b.mc_logits.shape == (al.n_mc, 12, 3)
    with pytest.raises(ValueError, match="b_view='query' needs recent_in_b=True"):
        aaf.AutoAL(b_view="query", recent_in_b=False)
