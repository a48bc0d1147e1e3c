"""Sharded badge at and above REJECTION_MIN_ROWS: the rejection sampler spread over the
ranks (``_dist._badge_rejection``) against one process's rejection sampler.

The threshold is lowered to ``MIN_ROWS`` in the reference and in every worker (spawned
processes do not see a monkeypatch of the parent, so the workers set it themselves),
keeping the pools small. The sampler is chosen on the GLOBAL row count: a pool of
exactly ``MIN_ROWS`` rows uses rejection although every shard is smaller; one row less
uses the one-draw-per-pick loop on both sides. Data are continuous random outputs (no
draw within float rounding of a boundary), so the comparison is exact equality of the
index lists, and of the attempt and rebuild counts (the same path, step by step).
Three rebuild rules (the default, rebuilds after several rejections, never) and a pool of
few distinct rows (the uniform draw once every unchosen row duplicates a pick).
"""
import numpy as np
import pytest
import torch

from dist_harness import run_world, shard_bounds

import autoal_fast as aaf
from autoal_fast import _backend, strategies
from autoal_fast.strategies import badge

MIN_ROWS = 300
K = 60
FLOPS = (None, 1e4, 0.0)  # default rule (here: a rebuild at nearly every rejection) / later rebuilds / never


def _data(n=MIN_ROWS, c=6, d=10, seed=0):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * 2).astype(np.float32)
    e = rng.standard_normal((n, d)).astype(np.float32)
    return z, e


def _dups(n=MIN_ROWS, distinct=7, seed=1):
    z, e = _data(distinct, seed=seed)
    rep = np.arange(n) % distinct
    return z[rep], e[rep]


def _cases():
    z, e = _data()
    zd, ed = _dups()
    zs, es = _data(MIN_ROWS - 1, seed=2)
    return {"rejection": (z, e, K), "dups": (zd, ed, 12), "below": (zs, es, K)}


def _run(pools, seed_of=lambda flops: 5):
    """{case/flops: (picks, backend, attempts, rebuilds)} with badge's globals as set."""
    out = {}
    default = badge.ATTEMPT_FLOPS
    try:
        for name, (pool, k) in pools.items():
            for flops in FLOPS:
                badge.ATTEMPT_FLOPS = default if flops is None else flops
                picks = strategies.select("badge", pool, k, seed=seed_of(flops)).tolist()
                st = badge.last_stats
                out[f"{name}/{flops}"] = (picks, _backend.last_used["badge"],
                                          st.get("attempts"), st.get("rebuilds"))
    finally:
        badge.ATTEMPT_FLOPS = default
    return out


def _worker(rank, world, cases, uneven, empty):
    badge.REJECTION_MIN_ROWS = MIN_ROWS
    pools = {}
    for name, (z, e, k) in cases.items():
        n = len(z)
        lo, hi = ([0, n // 2, n // 2, n][rank:rank + 2] if empty else shard_bounds(n, world, rank, uneven))
        pools[name] = (aaf.PoolOutputs(z[lo:hi], embeddings=e[lo:hi]), k)
    out = _run(pools)
    z, e, _ = cases["rejection"]
    lo, hi = shard_bounds(len(z), world, rank, uneven)
    out["seed_none"] = strategies.select("badge", aaf.PoolOutputs(z[lo:hi], embeddings=e[lo:hi]), K).tolist()
    return out


@pytest.fixture
def reference(monkeypatch):
    monkeypatch.setattr(badge, "REJECTION_MIN_ROWS", MIN_ROWS)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers
    try:
        cases = _cases()
        pools = {name: (aaf.PoolOutputs(z, embeddings=e), k) for name, (z, e, k) in cases.items()}
        return cases, _run(pools)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("world,uneven,empty", [(2, True, False), (3, False, False),
                                               pytest.param(3, False, True, marks=pytest.mark.slow)])
def test_sharded_rejection_matches_single_process(reference, world, uneven, empty):
    cases, ref = reference
    for key, (picks, backend, attempts, rebuilds) in ref.items():  # the reference took the paths meant
        assert backend == ("torch" if key.startswith("below") else "torch+rejection"), key
        assert len(set(picks)) == len(picks)
    assert ref["rejection/None"][3] > ref["rejection/10000.0"][3] > ref["rejection/0.0"][3] == 0
    assert ref["rejection/0.0"][2] > ref["rejection/10000.0"][2] > ref["rejection/None"][2] > K - 1
    res = run_world(_worker, world, cases, uneven, empty)
    for rank, out in enumerate(res):
        for key, (picks, backend, attempts, rebuilds) in ref.items():
            got = out[key]
            assert got[0] == picks, f"{key} differs on rank {rank} of {world}"
            assert got[1] == backend + "+dist", (key, got[1])
            if backend != "torch":
                assert got[2:] == (attempts, rebuilds), (key, got[2:], (attempts, rebuilds))
        assert out["seed_none"] == res[0]["seed_none"] and len(set(out["seed_none"])) == K
