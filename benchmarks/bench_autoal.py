"""AutoAL fit + query on a 50k pool (D=512, C=10, 2k labeled, k=1000) against entropy sampling.

The same inputs for both, in the same run. The pool carries a dropout classifier head
over its embeddings (MC candidates run it, the cheap way method.md describes). Two
candidate sets: the paper's seven (with kmeans, k=1000 on the pool) and the six
uncertainty scores alone, which separates the search's own cost from k-means'.
"default" is AutoAL's defaults (the paper's seven plus badge, the value objective).
Each AutoAL case records the entropy baseline's time and the ratio (the paper reports
AutoAL at 2.95x-6.54x entropy sampling), the fit/query breakdown and peak RSS.
"""
import time

import pytest
import torch
from torch import nn

import autoal_fast as aaf
from autoal_fast import _backend
from autoal_fast.strategies import AUTOAL_CANDIDATES, PAPER_CANDIDATES, UNCERTAINTY, select

from conftest import peak_rss_mb

pytestmark = pytest.mark.slow

N_POOL, D, C, N_LAB, K = 50_000, 512, 10, 2_000, 1_000


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(D, C)).eval()
    centers = torch.randn(C, D, generator=g)

    def make(n):
        y = torch.randint(0, C, (n,), generator=g)
        e = centers[y] + 2.0 * torch.randn(n, D, generator=g)
        with torch.no_grad():
            return e, head(e), y

    eu, lu, _ = make(N_POOL)
    el, ll, yl = make(N_LAB)
    return aaf.PoolOutputs(lu, embeddings=eu, head=head), aaf.PoolOutputs(ll, embeddings=el), yl


def _entropy(pool):
    return select("entropy", pool, K)


def test_entropy_select_50k(benchmark, data, record):
    pool, _, _ = data
    benchmark.group = "AutoAL vs entropy, 50k x 512, k=1000"
    idx = benchmark.pedantic(_entropy, args=(pool,), rounds=5, iterations=1, warmup_rounds=1)
    record(peak_rss_mb=peak_rss_mb())
    assert idx.shape == (K,)


@pytest.mark.parametrize("cands", ["default", "paper7", "uncertainty6"])
def test_autoal_fit_query_50k(benchmark, data, record, cands):
    pool, lab, yl = data
    strategies = {"default": AUTOAL_CANDIDATES, "paper7": PAPER_CANDIDATES, "uncertainty6": UNCERTAINTY}[cands]
    _entropy(pool)
    t0 = time.perf_counter()
    _entropy(pool)
    t_entropy = time.perf_counter() - t0
    parts = {}

    def run():
        al = aaf.AutoAL(strategies=strategies, budget=K, seed=0)
        t = time.perf_counter()
        rep = al.fit(lab, yl, k=K, n_pool=N_POOL)
        parts["fit_s"] = time.perf_counter() - t
        parts.update({f"fit_{k}_s": v for k, v in rep.times.items()})
        t = time.perf_counter()
        res = al.query(pool, K)
        parts["query_s"] = time.perf_counter() - t
        return res

    benchmark.group = "AutoAL vs entropy, 50k x 512, k=1000"
    res = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    total = parts["fit_s"] + parts["query_s"]
    record(entropy_s=t_entropy, ratio_to_entropy=total / t_entropy, peak_rss_mb=peak_rss_mb(),
           target_s=60, backends=dict(_backend.last_used), **parts)
    print(f"\n[{cands}] fit+query {total:.1f} s (fit {parts['fit_s']:.1f}, query {parts['query_s']:.1f}); "
          f"entropy {t_entropy:.2f} s; ratio {total / t_entropy:.1f}x; backends {_backend.last_used}")
    assert res.indices.shape == (K,)
