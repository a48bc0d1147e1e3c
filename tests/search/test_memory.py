"""The value objective averaged over the rounds (AutoAL(memory="rounds")): the evidence kept
per round, its share of the objective, its effect on the weights, the state that carries it."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf

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


@pytest.mark.parametrize("kw", [dict(memory="round"), dict(memory=True), dict(memory="rounds", objective="max_loss"),
                                dict(memory="rounds", first_order=False),
                                dict(memory="rounds", inner_steps=2)])
def test_bad_memory(kw):
    with pytest.raises(ValueError, match="memory"):
        aaf.AutoAL(**kw)
