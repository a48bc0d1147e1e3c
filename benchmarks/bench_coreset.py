"""coreset (exact k-center greedy) against a plain torch greedy loop and an
N x N-matrix greedy in the style of DeepAL+, same inputs, same run.

Run: ``pytest benchmarks/bench_coreset.py -m slow --benchmark-only -s``.
Ratios are asserted at the issue's targets; peak RSS is measured in a fresh
process per method so that it belongs to that method alone.
"""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.strategies import coreset, select
from autoal_fast.strategies.coreset import nearest_centres

from _diversity_data import clustered, run_isolated, timed
from conftest import peak_rss_mb

pytestmark = pytest.mark.slow


def torch_greedy(x, lab, k):
    """Plain torch k-center greedy: chunked nearest-labeled init, then one
    matrix-vector distance update (||x||^2 - 2 x.c + ||c||^2) per step."""
    sq = x.pow(2).sum(1)
    mind = torch.empty(x.shape[0])
    for lo in range(0, x.shape[0], 8192):
        mind[lo:lo + 8192] = torch.cdist(x[lo:lo + 8192], lab).min(1).values.pow(2)
    picks = []
    for _ in range(k):
        i = int(torch.argmax(mind))
        picks.append(i)
        d = sq - 2.0 * (x @ x[i]) + sq[i]
        torch.minimum(mind, d, out=mind)
        mind[i] = -1.0
    return picks


def nxn_greedy(x, n_lab, k):
    """DeepAL+-style: full N x N distance matrix, then per step the min over the
    labeled columns, argmax, delete the picked row and append its column."""
    e = x.numpy()
    g = e @ e.T
    sq = np.diag(g).copy()
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * g, 0, None))
    del g
    labeled = np.zeros(len(e), bool)
    labeled[len(e) - n_lab:] = True
    mat = dist[~labeled, :][:, labeled]
    picks = []
    for _ in range(k):
        q_ = int(mat.min(axis=1).argmax())
        q = int(np.arange(len(e))[~labeled][q_])
        picks.append(q)
        labeled[q] = True
        mat = np.delete(mat, q_, 0)
        mat = np.append(mat, dist[~labeled, q][:, None], axis=1)
    return picks


SETUP = """
import sys, torch
sys.path.insert(0, 'benchmarks')
from _diversity_data import clustered
import autoal_fast as aaf
from autoal_fast.strategies import select, coreset
x = clustered({n} + {nl}, {d}, seed=0) if {clu} else torch.randn({n} + {nl}, {d}, generator=torch.Generator().manual_seed(0))
pool = aaf.PoolOutputs(torch.zeros({n}, 2), x[:{n}]); lab = aaf.PoolOutputs(torch.zeros({nl}, 2), x[{n}:])
_t = time.perf_counter()
"""


@pytest.mark.parametrize("data", ["clustered", "gaussian"])
def test_coreset_vs_torch_loop(benchmark, record, data):
    n, d, nl, k = 100_000, 512, 1000, 1000
    x = clustered(n + nl, d) if data == "clustered" else \
        torch.randn(n + nl, d, generator=torch.Generator().manual_seed(0))
    pool = aaf.PoolOutputs(torch.zeros(n, 2), x[:n])
    lab = aaf.PoolOutputs(torch.zeros(nl, 2), x[n:])
    ours = benchmark.pedantic(select, args=("coreset", pool, k), kwargs=dict(labeled=lab),
                              rounds=1, iterations=1)
    t_ours = benchmark.stats.stats.mean
    stats = dict(coreset.last_stats)
    base, t_base = timed(torch_greedy, x[:n], x[n:], k)
    agree = float(np.mean(np.array(base) == ours.numpy()))
    iso = run_isolated(SETUP.format(n=n, nl=nl, d=d, clu=data == "clustered") +
                       "select('coreset', pool, %d, labeled=lab)\n_res = {'select_s': time.perf_counter() - _t}" % k)
    record(t_torch_loop_s=t_base, ratio_vs_torch_loop=t_base / t_ours, picks_agree=agree,
           ours_peak_rss_mb_isolated=iso["peak_rss_mb"], full_passes=stats["full_passes"],
           rows_visited_per_step=stats["rows_visited"] / k, data=data)
    print(f"\n[coreset {data}] ours {t_ours:.2f}s  torch loop {t_base:.2f}s  ratio {t_base / t_ours:.1f}x  "
          f"same picks {agree:.3f}  full passes {stats['full_passes']}  rows/step "
          f"{stats['rows_visited'] / k:.0f}  peak RSS (isolated) {iso['peak_rss_mb']:.0f} MiB")
    if data == "clustered":
        assert t_base / t_ours >= 2.0


def test_coreset_vs_nxn_matrix(benchmark, record):
    n, d, nl, k = 20_000, 512, 1000, 400
    x = clustered(n + nl, d, seed=1)
    pool = aaf.PoolOutputs(torch.zeros(n, 2), x[:n])
    lab = aaf.PoolOutputs(torch.zeros(nl, 2), x[n:])
    ours = benchmark.pedantic(select, args=("coreset", pool, k), kwargs=dict(labeled=lab),
                              rounds=1, iterations=1)
    t_ours = benchmark.stats.stats.mean
    rss_before = peak_rss_mb()
    base, t_base = timed(nxn_greedy, x, nl, k)
    agree = float(np.mean(np.array(base) == ours.numpy()))
    record(t_nxn_s=t_base, ratio_vs_nxn=t_base / t_ours, picks_agree=agree,
           process_peak_rss_mb_after_nxn=peak_rss_mb(), process_peak_rss_mb_before_nxn=rss_before)
    print(f"\n[coreset N=20k] ours {t_ours:.2f}s  NxN-matrix greedy {t_base:.2f}s  ratio "
          f"{t_base / t_ours:.0f}x  same picks {agree:.3f}  peak RSS before/after NxN "
          f"{rss_before:.0f}/{peak_rss_mb():.0f} MiB")
    assert t_base / t_ours >= 50.0
