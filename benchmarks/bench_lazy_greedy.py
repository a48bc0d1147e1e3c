"""Issue 12: lazy k-center greedy (coreset) and rejection-sampled D^2 (badge)
against the plain one-pass-per-pick torch loops, same inputs, same run.

Run: ``pytest benchmarks/bench_lazy_greedy.py -m slow --benchmark-only -s``
(``AUTOAL_BENCH_REPEATS``, default 1: ours and the baseline alternate that many
times and the medians are compared). torch threads: as set by the caller
(``torch.get_num_threads()`` is printed with every figure).
"""
import os
import statistics
import time

import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.strategies import badge, coreset, select

from _diversity_data import clustered
from bench_coreset import torch_greedy

pytestmark = pytest.mark.slow
REPEATS = int(os.environ.get("AUTOAL_BENCH_REPEATS", "1"))


# The plain torch greedy (mind = min(mind, |x|^2 - 2 X x_i + |x_i|^2), then
# argmax; nearest-labeled init by chunked cdist) is bench_coreset's baseline.
plain_coreset = torch_greedy


def plain_badge(z, e, k, seed):
    """Plain D^2 loop over the factorised gradient embedding, one pass per pick:
    |g_i - g_j|^2 = |g_i|^2 + |g_j|^2 - 2 <a_i, a_j> <e_i, e_j>, a = p - onehot(argmax p)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.softmax(z, 1)
    a[torch.arange(len(a)), a.argmax(1)] -= 1.0
    g2 = a.pow(2).sum(1) * e.pow(2).sum(1)
    mind = torch.full((len(a),), float("inf"))
    i = int(g2.argmax())
    picks = [i]
    for _ in range(k - 1):
        d2 = g2 + g2[i] - 2.0 * (a @ a[i]) * (e @ e[i])
        torch.minimum(mind, d2.clamp_(min=0.0), out=mind)
        mind[picks[-1]] = 0.0
        i = int(torch.multinomial(mind, 1, generator=gen))
        picks.append(i)
    return picks


def interleaved(ours, base):
    to, tb, ro, rb = [], [], None, None
    for _ in range(REPEATS):
        t = time.perf_counter(); ro = ours(); to.append(time.perf_counter() - t)
        t = time.perf_counter(); rb = base(); tb.append(time.perf_counter() - t)
    return ro, rb, statistics.median(to), statistics.median(tb)


@pytest.mark.parametrize("k", [300, 1000])
@pytest.mark.parametrize("data", ["isotropic", "clustered"])
def test_coreset_lazy_vs_plain_loop(benchmark, record, data, k):
    n, d, nl = 100_000, 512, 1000
    x = clustered(n + nl, d) if data == "clustered" else \
        torch.randn(n + nl, d, generator=torch.Generator().manual_seed(0))
    pool = aaf.PoolOutputs(torch.zeros(n, 2), x[:n])
    lab = aaf.PoolOutputs(torch.zeros(nl, 2), x[n:])
    res = {}

    def run():
        res.update(zip("abcd", interleaved(lambda: select("coreset", pool, k, labeled=lab),
                                           lambda: plain_coreset(x[:n], x[n:], k))))
    benchmark.pedantic(run, rounds=1, iterations=1)
    st = dict(coreset.last_stats)
    agree = float(np.mean(res["a"].numpy() == np.array(res["b"])))
    ratio = res["d"] / res["c"]
    record(ours_s=res["c"], plain_s=res["d"], ratio=ratio, picks_agree=agree, threads=torch.get_num_threads(),
           refreshes_per_step=st["rows_visited"] / k, data=data, k=k)
    print(f"\n[coreset lazy {data} 100k x 512, 1000 labeled, k={k}, {torch.get_num_threads()} threads] "
          f"ours {res['c']:.2f}s  plain loop {res['d']:.2f}s  ratio {ratio:.1f}x  same picks as the "
          f"squared-form loop {agree:.3f}  refreshes/step {st['rows_visited'] / k:.0f}")


def badge_pool(n, c, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, c, (n,), generator=g)
    z = torch.randn(n, c, generator=g)
    z[torch.arange(n), cls] += 6 * torch.rand(n, generator=g)
    e = (torch.randn(c, d, generator=g)[cls] + 0.3 * torch.randn(n, d, generator=g)).contiguous()
    return z, e


def test_badge_rejection_vs_plain_loop(benchmark, record):
    n, c, d, k = 100_000, 20, 256, 300
    z, e = badge_pool(n, c, d)
    pool = aaf.PoolOutputs(z, e)
    res = {}

    def run():
        res.update(zip("abcd", interleaved(lambda: select("badge", pool, k, seed=0),
                                           lambda: plain_badge(z, e, k, 0))))
    benchmark.pedantic(run, rounds=1, iterations=1)
    st = dict(badge.last_stats)
    ratio = res["d"] / res["c"]
    record(ours_s=res["c"], plain_s=res["d"], ratio=ratio, threads=torch.get_num_threads(), **st)
    print(f"\n[badge rejection 100k x 256, C=20, k={k}, {torch.get_num_threads()} threads] ours "
          f"{res['c']:.2f}s  plain factorised loop {res['d']:.2f}s  ratio {ratio:.1f}x  attempts "
          f"{st['attempts']}  rebuilds {st['rebuilds']}  refreshes {st['refreshes']}")


def pool_1m_like(n, d=512, c=100, seed=0):
    """bench_pool_1m's embeddings (class means x 3 + unit noise) and its labeled set
    (the first 1000 rows + 0.01)."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, c, (n,), generator=g)
    emb = torch.randn(c, d, generator=g)[cls] * 3
    emb += torch.randn(n, d, generator=g)
    return emb, emb[:1000].clone() + 0.01


@pytest.mark.parametrize("case", ["clustered_100k", "isotropic_100k", "pool_1m"])
def test_coreset_labeled_init_pruned_vs_plain(benchmark, record, case):
    """The exact labeled init alone: nearest_labeled (pruned where the probe says it pays)
    against nearest_centres (every pair through BLAS), same inputs, same run, same result."""
    if case == "pool_1m":
        x, lab = pool_1m_like(1_000_000)
    else:
        n, d, nl = 100_000, 512, 1000
        x = clustered(n + nl, d) if case.startswith("clustered") else \
            torch.randn(n + nl, d, generator=torch.Generator().manual_seed(0))
        x, lab = x[:n], x[n:].contiguous()
    res = {}

    def run():
        res.update(zip("abcd", interleaved(lambda: coreset.nearest_labeled(x, lab),
                                           lambda: coreset.nearest_centres(x, lab))))
    benchmark.pedantic(run, rounds=1, iterations=1)
    st = dict(coreset.last_init_stats)
    same = torch.equal(res["a"][0], res["b"][0]) and torch.equal(res["a"][1], res["b"][1])
    ratio = res["d"] / res["c"]
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    record(ours_s=res["c"], plain_s=res["d"], ratio=ratio, same=same, load=load, **st)
    print(f"\n[coreset labeled init {case}, {len(lab)} labeled, {torch.get_num_threads()} threads, load "
          f"{' '.join(load)}] ours {res['c']:.2f}s ({st['path']})  plain {res['d']:.2f}s  ratio {ratio:.1f}x  "
          f"same mind/assign {same}  {st}")
    assert same
