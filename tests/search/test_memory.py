"""The value objective averaged over the rounds (AutoAL(memory="rounds")): the evidence kept
per round, its share of the objective, its effect on the weights, the state that carries it."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.search.bilevel import spread_value

STRATS = ("entropy", "margin", "badge")


def _toy(n, seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, 6, generator=g)
    y = (emb[:, 0] > 0).long() + (emb[:, 1] > 0.8).long()  # learnable, so B's values are not all noise
    return aaf.PoolOutputs(torch.randn(n, 3, generator=g) + emb[:, :3], emb), y


def _evidence(rep) -> np.ndarray:
    """float64 from the report alone: each candidate's (mean value of its picks - mean v) / std v,
    its picks' mean value being candidate_value * |mean v| (candidate_value's definition)."""
    v = rep.sample_values.double().numpy()
    cv = np.array([rep.candidate_value[s] for s in STRATS], dtype=np.float64)
    return (cv * abs(v.mean()) - v.mean()) / v.std()


def _rounds(al, n_rounds, lab, y, pool, y_pool, k=10):
    reps = []
    for r in range(n_rounds):
        reps.append(al.fit(lab, y, k=k, n_pool=pool.n_samples))
        q = al.query(pool, k).indices
        keep = torch.ones(pool.n_samples, dtype=torch.bool)
        keep[q] = False
        lab = aaf.PoolOutputs(torch.cat([lab.logits, pool.logits[q]]), torch.cat([lab.embeddings, pool.embeddings[q]]))
        y = torch.cat([y, y_pool[q]])
        pool, y_pool = aaf.PoolOutputs(pool.logits[keep], pool.embeddings[keep]), y_pool[keep]
    return reps


def test_memory_is_the_mean_of_every_earlier_rounds_evidence():
    torch.set_num_threads(1)
    lab, y = _toy(60, 0)
    pool, y_pool = _toy(300, 1)
    al = aaf.AutoAL(strategies=STRATS, seed=3, memory="rounds", pretrain_steps=20, search_steps=20)
    reps = _rounds(al, 4, lab, y, pool, y_pool)
    assert reps[0].memory == {}  # nothing remembered in the first round
    for r in range(1, 4):
        want = np.mean([_evidence(reps[j]) for j in range(r)], axis=0)
        got = np.array([reps[r].memory[s] for s in STRATS])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(al.memory_now(), np.mean([_evidence(rp) for rp in reps], axis=0), rtol=1e-4, atol=1e-5)
    assert al._memory_share() == pytest.approx(4 / 5)


def test_first_round_is_the_plain_search():
    torch.set_num_threads(1)
    lab, y = _toy(60, 0)
    pool, _ = _toy(300, 1)
    out = []
    for memory in (None, "rounds"):
        al = aaf.AutoAL(strategies=STRATS, seed=3, memory=memory, pretrain_steps=20, search_steps=20)
        rep = al.fit(lab, y, k=10, n_pool=300)
        out.append((rep.weight_share, al.query(pool, 10).indices))
    assert out[0][0] == out[1][0] and torch.equal(out[0][1], out[1][1])


def test_remembered_evidence_moves_the_weights_to_its_candidate():
    """Nine earlier rounds that all found margin's picks 3 spreads above B's mean and the others'
    below it: the search must put margin first, whatever this round's B says; with no memory the
    same round's search does not."""
    torch.set_num_threads(1)
    lab, y = _toy(60, 0)
    shares = {}
    for memory in (None, "rounds"):
        al = aaf.AutoAL(strategies=STRATS, seed=3, memory="rounds", pretrain_steps=20, search_steps=100)
        if memory:
            al._memory_sum, al._memory_rounds = [-9.0, 27.0, -9.0], [9, 9, 9]
        rep = al.fit(lab, y, k=10, n_pool=300)
        assert (rep.memory != {}) == bool(memory)
        shares[memory] = rep.weight_share
    assert shares[None]["badge"] > 0.5 > shares[None]["margin"]  # this B alone: badge (measured 0.995)
    assert shares["rounds"]["margin"] > 0.5 > shares["rounds"]["badge"]


def test_memory_state_round_trip_and_same_seed_same_picks():
    torch.set_num_threads(1)
    kw = dict(strategies=STRATS, seed=5, memory="rounds", pretrain_steps=10, search_steps=10)
    lab, y = _toy(60, 0)
    pool, _ = _toy(300, 1)

    def two_rounds(reload):
        al = aaf.AutoAL(**kw)
        al.fit(lab, y, k=10, n_pool=300)
        if reload:
            al = aaf.AutoAL(**kw).load_state_dict(al.state_dict())
        return al.fit(lab, y, k=10, n_pool=300), al.query(pool, 10).indices, al

    r1, q1, a1 = two_rounds(False)
    r2, q2, a2 = two_rounds(True)
    assert r1.memory == r2.memory != {} and torch.equal(q1, q2) and a1.memory_now() == a2.memory_now()
    # a state saved before memory= existed loads with nothing remembered
    st = a1.state_dict()
    del st["memory"]
    assert aaf.AutoAL(**kw).load_state_dict(st).memory_now() == (0.0,) * 3


@pytest.mark.parametrize("kw", [dict(memory="round"), dict(memory=True), dict(value_scale="sd"), dict(memory="rounds", objective="max_loss"),
                                dict(memory="rounds", first_order=False),
                                dict(memory="rounds", inner_steps=2)])
def test_bad_memory(kw):
    with pytest.raises(ValueError, match="memory|value_scale"):
        aaf.AutoAL(**kw)


@pytest.mark.parametrize("n,K,seed", [(1, 1, 0), (5, 2, 1), (64, 3, 2), (500, 8, 3)])
def test_spread_value_matches_plain(n, K, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    s = torch.rand(n, K, generator=g, dtype=torch.float64)
    got = spread_value(s, v)
    vn, sn = v.numpy(), s.numpy()
    want = (vn @ sn / sn.sum(0) - vn.mean()) / vn.std() if n > 1 else np.zeros(K)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    # a single column, a given count
    np.testing.assert_allclose(float(spread_value(s[:, 0], v, 2.0)), (vn @ sn[:, 0] / 2.0 - vn.mean()) / vn.std()
                               if n > 1 else 0.0, rtol=1e-10, atol=1e-12)


def test_spread_value_ties_and_uniform():
    v = torch.full((6,), 0.3)
    assert torch.equal(spread_value(torch.eye(6)[:, :2], v), torch.zeros(2))  # no spread: 0, not NaN
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(spread_value(torch.full((4,), 0.5), v)) == pytest.approx(0.0, abs=1e-7)  # uniform: 0
    # the same evidence in any unit of v: invariant to scale and shift, as relative_mean_value is not
    s = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert float(spread_value(s, 1e-6 * v - 2.5e-6)) == pytest.approx(float(spread_value(s, v)), rel=1e-5)


def test_spread_units_keep_the_prior_where_this_b_cannot_tell():
    """Every candidate picks the same samples of B: the evidence cannot tell them apart, so the
    weights must stay on the prior's candidates (margin + badge), in spread units."""
    torch.set_num_threads(1)
    lab, y = _toy(60, 0)
    al = aaf.AutoAL(strategies=("entropy", "margin", "least_confidence", "badge"), seed=3, value_scale="spread",
                    pretrain_steps=20, search_steps=100)
    rep = al.fit(lab, y, k=10, n_pool=300)
    assert rep.weight_share["margin"] + rep.weight_share["badge"] > 0.9
    assert max(rep.value) < 10  # spread units: bounded by the top values' z-scores


def test_effect_credit_of_equal_values_is_zero_not_rounding_noise():
    from autoal_fast.search.bilevel import effect_credit
    for dtype in (torch.float32, torch.float64):
        v = torch.full((7,), 0.3, dtype=dtype)
        cred, counts = effect_credit(v, torch.eye(7, 3, dtype=torch.bool))
        assert torch.equal(cred, torch.zeros(3, dtype=dtype)) and counts.tolist() == [1, 1, 1]
