"""strategies.select on 2 and 3 gloo processes against the single-process answer.

Every strategy is checked inside ONE run_world call per world size (spawning costs
about 8 s a world here). Data: continuous random outputs (uncertainty scores, badge,
coreset: no two candidates within float rounding of each other) and well-separated
blobs for kmeans (no point near a Voronoi boundary), so float summation order cannot
flip an answer; the comparison is exact equality of the index lists. Shards are
uneven (``shard_bounds``), and one world has an empty shard.
"""
import numpy as np
import pytest
import torch

from dist_harness import run_world, shard_bounds

import autoal_fast as aaf
from autoal_fast import strategies
from autoal_fast.strategies.kmeans import select_kmeans

K = 15
N_BLOBS = 12


def _data(n=600, c=5, d=8, t=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 2).astype(np.float32)
    mc = (logits[None] + rng.standard_normal((t, n, c))).astype(np.float32)
    centres = rng.standard_normal((N_BLOBS, d)) * 20
    emb = (centres[rng.integers(0, N_BLOBS, n)] + rng.standard_normal((n, d))).astype(np.float32)
    lab = (rng.standard_normal((20, d)) * 10).astype(np.float32)
    return logits, mc, emb, lab


def _pool(logits, mc, emb, lo=0, hi=None):
    hi = len(logits) if hi is None else hi
    return aaf.PoolOutputs(logits[lo:hi], embeddings=emb[lo:hi], mc_logits=mc[:, lo:hi])


def _all_picks(pool, lab, kmeans_fn):
    out = {}
    for nm in strategies.UNCERTAINTY:
        out[nm] = strategies.select(nm, pool, K).tolist()
    out["random"] = strategies.select("random", pool, K, seed=3).tolist()
    out["coreset"] = strategies.select("coreset", pool, K).tolist()
    out["coreset_labeled"] = strategies.select("coreset", pool, K, labeled=lab).tolist()
    out["badge"] = strategies.select("badge", pool, K, seed=5).tolist()
    out["kmeans"] = kmeans_fn(pool)
    return out


def _worker(rank, world, logits, mc, emb, lab_e, uneven):
    lo, hi = shard_bounds(len(logits), world, rank, uneven=uneven)
    pool = _pool(logits, mc, emb, lo, hi)
    lab = aaf.PoolOutputs(np.zeros((len(lab_e), logits.shape[1]), np.float32), embeddings=lab_e)
    out = _all_picks(pool, lab, lambda p: strategies.select("kmeans", p, N_BLOBS, seed=7).tolist())
    out["random_none"] = strategies.select("random", pool, K).tolist()  # seed shared from rank 0
    out["badge_none"] = strategies.select("badge", pool, K).tolist()
    out["n_total_k"] = strategies.select("entropy", pool, len(logits)).tolist()  # k = whole pool
    try:
        strategies.select("entropy", pool, len(logits) + 1)
    except ValueError as e:
        out["too_big"] = str(e)
    return out


def _reference(logits, mc, emb, lab_e):
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers
    try:
        pool = _pool(logits, mc, emb)
        lab = aaf.PoolOutputs(np.zeros((len(lab_e), logits.shape[1]), np.float32), embeddings=lab_e)
        return _all_picks(pool, lab,
                          lambda p: select_kmeans(p, N_BLOBS, seed=7, backend="torch").tolist())
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("world,uneven", [(2, True), (3, False)])
def test_every_strategy_matches_single_process(world, uneven):
    logits, mc, emb, lab_e = _data()
    ref = _reference(logits, mc, emb, lab_e)
    res = run_world(_worker, world, logits, mc, emb, lab_e, uneven)
    for rank, out in enumerate(res):
        for name, picks in ref.items():
            assert out[name] == picks, f"{name} differs on rank {rank} of {world}"
        assert out["random_none"] == res[0]["random_none"]
        assert out["badge_none"] == res[0]["badge_none"]
        assert len(set(out["badge_none"])) == K
        assert sorted(out["n_total_k"]) == list(range(len(logits)))
        assert "n_pool=600" in out["too_big"]


def _empty_shard_worker(rank, world, logits, mc, emb, lab_e):
    # rank 1 holds nothing: it must still take part in every exchange
    cut = [0, 300, 300, 600][rank:rank + 2]
    pool = _pool(logits, mc, emb, *cut)
    lab = aaf.PoolOutputs(np.zeros((len(lab_e), logits.shape[1]), np.float32), embeddings=lab_e)
    return _all_picks(pool, lab, lambda p: strategies.select("kmeans", p, N_BLOBS, seed=7).tolist())


@pytest.mark.slow
def test_empty_shard():
    logits, mc, emb, lab_e = _data()
    ref = _reference(logits, mc, emb, lab_e)
    res = run_world(_empty_shard_worker, 3, logits, mc, emb, lab_e)
    for out in res:
        assert out == ref


def test_group_of_one_is_single_process():
    logits, mc, emb, _ = _data(n=50)
    pool = _pool(logits, mc, emb)
    assert strategies.select("entropy", pool, 5, group=None).tolist() == \
        strategies.select("entropy", pool, 5).tolist()


def _bad_shard_worker(rank, world, logits, mc, emb):
    """Rank 1 holds a bad shard in several ways; every rank must raise (no hang)."""
    lo, hi = shard_bounds(len(logits), world, rank)
    z, m, e = logits[lo:hi].copy(), mc[:, lo:hi].copy(), emb[lo:hi].copy()
    cases = {
        "nan_logits_entropy": ("entropy", lambda: z.__setitem__((0, 0), np.nan)),  # found while scoring
        "nan_logits_badge": ("badge", None),  # same NaN, found by badge's gradient pass
        "inf_embeddings_coreset": ("coreset", lambda: e.__setitem__((1, 1), np.inf)),  # at the door
        "k_too_big": ("margin", None),
    }
    out = {}
    for label, (name, spoil) in cases.items():
        if rank == 1 and spoil is not None:
            spoil()
        pool = aaf.PoolOutputs(z if rank == 1 else logits[lo:hi], embeddings=e if rank == 1 else emb[lo:hi],
                               mc_logits=m)
        k = len(logits) + 1 if label == "k_too_big" else 5
        try:
            strategies.select(name, pool, k, seed=0)
            out[label] = "no error"
        except ValueError as exc:
            out[label] = str(exc)
    return out


def test_a_bad_shard_raises_on_every_rank():
    logits, mc, emb, _ = _data(n=120)
    res = run_world(_bad_shard_worker, 2, logits, mc, emb)
    for label in ("nan_logits_entropy", "nan_logits_badge", "inf_embeddings_coreset"):
        assert "NaN" in res[1][label] or "non-finite" in res[1][label] or "inf" in res[1][label], res[1][label]
        assert res[0][label].startswith("rank(s) [1] rejected"), res[0][label]
    assert "k" in res[0]["k_too_big"] and res[0]["k_too_big"] == res[1]["k_too_big"]
