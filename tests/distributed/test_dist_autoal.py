"""AutoAL.query on 2 and 3 gloo processes against the single-process answer.

One fit in the test process; its state_dict is loaded on every rank (the documented
way to give all ranks the same nets). Candidates: the paper's seven plus coreset, with
the stochastic predictions given as mc_logits. The single-process reference runs with
FAISS off (the sharded kmeans is the torch backend) and one thread, as the workers.
Indices must be equal; each rank's scores and weights must equal the reference rows
(float32 tolerance 1e-6: SearchNet runs on other chunk sizes). World 3 is marked slow
(about 22 s here; the strategies test covers 3 ranks in the default run).
"""
import numpy as np
import pytest
import torch

from dist_harness import run_world, shard_bounds

import autoal_fast as aaf
from autoal_fast import _backend
from autoal_fast.strategies import PAPER_CANDIDATES

STRATS = PAPER_CANDIDATES + ("coreset",)
K = 20


def _data(n=500, c=4, d=6, t=4, seed=1):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((K, d)) * 20  # blobs: kmeans without boundary points
    emb = (centres[rng.integers(0, K, n)] + rng.standard_normal((n, d))).astype(np.float32)
    w = rng.standard_normal((d, c)).astype(np.float32) * 0.3
    logits = (emb @ w + rng.standard_normal((n, c))).astype(np.float32)
    mc = (logits[None] + rng.standard_normal((t, n, c))).astype(np.float32)
    ne = 60
    lab_e = (centres[rng.integers(0, K, ne)] + rng.standard_normal((ne, d))).astype(np.float32)
    lab_z = (lab_e @ w).astype(np.float32)
    y = rng.integers(0, c, ne)
    return logits, mc, emb, lab_z, lab_e, y


def _make():
    return aaf.AutoAL(strategies=STRATS, seed=0, pretrain_steps=10, search_steps=10)


def _worker(rank, world, state, logits, mc, emb, lab_z, lab_e):
    lo, hi = shard_bounds(len(logits), world, rank)
    al = _make().load_state_dict(state)
    pool = aaf.PoolOutputs(logits[lo:hi], embeddings=emb[lo:hi], mc_logits=mc[:, lo:hi])
    res = al.query(pool, K, labeled=aaf.PoolOutputs(lab_z, embeddings=lab_e))
    return res.indices.tolist(), res.scores.numpy(), res.weights.numpy(), res.mc_source


@pytest.fixture(scope="module")
def fitted():
    logits, mc, emb, lab_z, lab_e, y = _data()
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        al = _make()
        al.fit(aaf.PoolOutputs(lab_z, embeddings=lab_e), y, k=K, n_pool=len(logits))
        mp = pytest.MonkeyPatch()
        mp.setattr(_backend, "faiss_module", lambda: None)
        try:
            ref = al.query(aaf.PoolOutputs(logits, embeddings=emb, mc_logits=mc), K,
                           labeled=aaf.PoolOutputs(lab_z, embeddings=lab_e))
        finally:
            mp.undo()
    finally:
        torch.set_num_threads(saved)
    return al.state_dict(), ref, (logits, mc, emb, lab_z, lab_e)


@pytest.mark.parametrize("world", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_query_matches_single_process(fitted, world):
    state, ref, data = fitted
    res = run_world(_worker, world, state, *data)
    n = len(data[0])
    for rank, (idx, scores, weights, src) in enumerate(res):
        assert idx == ref.indices.tolist(), f"rank {rank} of {world}"
        lo, hi = shard_bounds(n, world, rank)
        np.testing.assert_allclose(scores, ref.scores[lo:hi].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(weights, ref.weights[lo:hi].numpy(), rtol=0, atol=1e-6)
        assert src == "mc_logits"


def test_rank_normalize_global_matches_rank_normalize():
    from autoal_fast.distributed import Shard
    from autoal_fast.search.candidates import rank_normalize, rank_normalize_global

    # world of one through the same arithmetic (no collective needed for a single rank)
    x = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0, 0.0, 3.0])
    sh = Shard(None, 0, 1, 0, 7, 7, (7,))
    import autoal_fast.distributed as D

    mp = pytest.MonkeyPatch()
    mp.setattr(D, "_all_gather_rows", lambda t, g: t)
    try:
        assert torch.equal(rank_normalize_global(x, sh), rank_normalize(x))
    finally:
        mp.undo()


def _bad_shard_worker(rank, world, state, logits, mc, emb, lab_z, lab_e):
    lo, hi = shard_bounds(len(logits), world, rank)
    al = _make().load_state_dict(state)
    lab = aaf.PoolOutputs(lab_z, embeddings=lab_e)
    out = {}
    z = logits[lo:hi].copy()
    if rank == 1:
        z[2, 1] = np.nan  # found while scoring the uncertainty candidates
    for label, pool in (
            ("nan_logits", aaf.PoolOutputs(z, embeddings=emb[lo:hi], mc_logits=mc[:, lo:hi])),
            ("wrong_classes", aaf.PoolOutputs(logits[lo:hi, :3] if rank == 1 else logits[lo:hi],
                                              embeddings=emb[lo:hi],
                                              mc_logits=mc[:, lo:hi, :3] if rank == 1 else mc[:, lo:hi]))):
        try:
            al.query(pool, K, labeled=lab)
            out[label] = "no error"
        except ValueError as exc:
            out[label] = str(exc)
    return out


def test_query_with_a_bad_shard_raises_on_every_rank(fitted):
    state, _, data = fitted
    res = run_world(_bad_shard_worker, 2, state, *data)
    assert "NaN" in res[1]["nan_logits"] and "n_classes" in res[1]["wrong_classes"], res[1]
    for label in ("nan_logits", "wrong_classes"):
        assert res[0][label].startswith("rank(s) [1] rejected"), res[0][label]


def _fit_worker(rank, world, lab_z, lab_e, y, n_pool):
    torch.set_num_threads(1)
    al = _make()  # every rank holds the whole labeled set: the search is single-process work
    rep = al.fit(aaf.PoolOutputs(lab_z, embeddings=lab_e), y, k=K, n_pool=n_pool)
    return rep.candidate_value, rep.weight_share, rep.value


def test_fit_inside_a_process_group_is_the_single_process_fit(fitted):
    """AutoAL.fit's candidates on B run with group=LOCAL: an initialised process group
    does not shard the labeled set that every rank holds whole."""
    _, _, (logits, mc, emb, lab_z, lab_e) = fitted
    y = _data()[5]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = _make().fit(aaf.PoolOutputs(lab_z, embeddings=lab_e), y, k=K, n_pool=len(logits))
    finally:
        torch.set_num_threads(saved)
    res = run_world(_fit_worker, 2, lab_z, lab_e, y, len(logits))
    for rank, (cv, ws, val) in enumerate(res):
        assert cv == ref.candidate_value and val == ref.value, f"rank {rank}"
        assert ws == pytest.approx(ref.weight_share, abs=1e-7)


def _one_process_options_worker(rank, world, state, logits, mc, emb, lab_z, lab_e):
    lo, hi = shard_bounds(len(logits), world, rank)
    pool = aaf.PoolOutputs(logits[lo:hi], embeddings=emb[lo:hi], mc_logits=mc[:, lo:hi])
    out = {}
    for label, kw in (("diverse", {"batch": "diverse"}), ("cluster_top", {"batch": "cluster_top"}),
                      ("explore_random", {"explore_from": "random", "explore": 0.2}),
                      ("credit_view", {"credit": "effect", "credit_view": "query"}),
                      ("b_view", {"b_view": "query"})):
        al = aaf.AutoAL(strategies=STRATS, seed=0, pretrain_steps=10, search_steps=10, **kw).load_state_dict(state)
        try:
            al.query(pool, K, labeled=aaf.PoolOutputs(lab_z, embeddings=lab_e))
            out[label] = "no error"
        except ValueError as exc:
            out[label] = str(exc)
    return out


def test_one_process_options_refuse_a_sharded_pool_on_every_rank(fitted):
    """batch='diverse'/'cluster_top', explore_from='random', credit_view='query' and b_view='query' are not
    sharded: a process group gets the error on every rank, in query's validation (before any
    collective of the candidates could leave a rank waiting)."""
    state, _, data = fitted
    res = run_world(_one_process_options_worker, 2, state, *data)
    for rank in (0, 1):
        assert "run on one process" in res[rank]["diverse"] and "batch='score'" in res[rank]["diverse"]
        assert "run on one process" in res[rank]["cluster_top"]
        assert "explore_from='random' runs on one process" in res[rank]["explore_random"]
        assert "credit_view='query' runs on one process" in res[rank]["credit_view"]
        assert "b_view='query' runs on one process" in res[rank]["b_view"]
