"""badge on 200k x 512 embeddings, C = 100, k = 1000: time and peak RSS.

The gradient embeddings would take 200k x 100 x 512 x 4 B = 40 GB; the
factorised distances need O(n) state. Peak RSS is measured in a fresh process
(inputs included: 400 MB embeddings + 80 MB logits) and must stay under 3 GB.
Baseline in the same run: the same D^2 seeding with the gradient embeddings
materialised, on a 20k-row slice (2 x 4 GB would not fit at 200k).
"""
import pytest
import torch

from _diversity_data import run_isolated

pytestmark = pytest.mark.slow

CODE = """
import sys, torch
sys.path.insert(0, 'benchmarks')
import autoal_fast as aaf
from autoal_fast.strategies import select, badge
n, c, d, k = {n}, 100, 512, 1000
g = torch.Generator().manual_seed(0)
cls = torch.randint(0, c, (n,), generator=g)
z = torch.randn(n, c, generator=g)
z[torch.arange(n), cls] += 6 * torch.rand(n, generator=g)
e = (torch.randn(c, d, generator=g)[cls] + 0.3 * torch.randn(n, d, generator=g)).contiguous()
_t = time.perf_counter()
if {materialise}:
    p = torch.softmax(z, 1); p[torch.arange(n), p.argmax(1)] -= 1
    G = (p[:, :, None] * e[:, None, :]).reshape(n, -1)
    gn = G.pow(2).sum(1)
    mind = torch.full((n,), float('inf'))
    i = int(gn.argmax())
    for t in range(k):
        mind = torch.minimum(mind, (gn - 2 * (G @ G[i]) + gn[i]).clamp(min=0)); mind[i] = 0
        if t + 1 < k:
            i = int(torch.multinomial(mind, 1, generator=g))
    _res = {{'select_s': time.perf_counter() - _t}}
else:
    select('badge', aaf.PoolOutputs(z, e), k, seed=0)
    _res = {{'select_s': time.perf_counter() - _t, **badge.last_stats}}
"""


def test_badge_memory_200k(benchmark, record):
    res = benchmark.pedantic(run_isolated, args=(CODE.format(n=200_000, materialise=False),),
                             rounds=1, iterations=1)
    small = run_isolated(CODE.format(n=20_000, materialise=False))
    mat = run_isolated(CODE.format(n=20_000, materialise=True))
    record(select_s=res["select_s"], peak_rss_mb=res["peak_rss_mb"], full_passes=res["full_passes"],
           rows_visited_per_step=res["rows_visited"] / 1000, select_s_20k=small["select_s"],
           materialised_20k_s=mat["select_s"], materialised_20k_peak_rss_mb=mat["peak_rss_mb"],
           ours_20k_peak_rss_mb=small["peak_rss_mb"])
    print(f"\n[badge 200k x 512, C=100, k=1000] {res['select_s']:.1f}s  peak RSS {res['peak_rss_mb']:.0f} MiB"
          f"  full passes {res['full_passes']}  rows/step {res['rows_visited'] / 1000:.0f}\n"
          f"[badge 20k] ours {small['select_s']:.2f}s / {small['peak_rss_mb']:.0f} MiB; materialised "
          f"{mat['select_s']:.2f}s / {mat['peak_rss_mb']:.0f} MiB")
    assert res["peak_rss_mb"] < 3 * 1024
