"""kmeans strategy against scikit-learn KMeans(n_init=1), same data, same run.

Ours: greedy k-means++ init on a 16k-row subsample, then 20 FAISS Lloyd
iterations (faiss-cpu here), then the unique snap to pool points. sklearn:
KMeans(n_clusters=1000, n_init=1, random_state=0) with its defaults
(k-means++ init, max_iter=300, tol=1e-4); its iteration count is reported.
"""
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import _backend
from autoal_fast.strategies import kmeans, select

from _diversity_data import clustered, timed

pytestmark = pytest.mark.slow


def test_kmeans_vs_sklearn(benchmark, record):
    sk = pytest.importorskip("sklearn.cluster")
    n, d, k = 100_000, 128, 1000
    x = clustered(n, d, n_clusters=200, latent=16)
    pool = aaf.PoolOutputs(torch.zeros(n, 2), x)
    picks = benchmark.pedantic(select, args=("kmeans", pool, k), kwargs=dict(seed=0),
                               rounds=1, iterations=1)
    t_ours = benchmark.stats.stats.mean
    ours_iter = kmeans.last_stats["n_iter"]
    backend = _backend.last_used["kmeans"]
    km, t_sk = timed(sk.KMeans(k, n_init=1, random_state=0).fit, x.numpy())
    ref = kmeans.nearest_unique(x, torch.from_numpy(km.cluster_centers_).float())

    def cost(p):
        c = x[p]
        cn = c.pow(2).sum(1)
        tot = 0.0
        for lo in range(0, n, 8192):
            xp = x[lo:lo + 8192]
            tot += float((torch.addmm(cn[None], xp, c.T, alpha=-2).min(1).values + xp.pow(2).sum(1))
                         .clamp(min=0).double().sum())
        return tot

    rel = cost(picks) / cost(ref)
    record(t_sklearn_s=t_sk, ratio_vs_sklearn=t_sk / t_ours, ours_backend=backend,
           ours_lloyd_iters=ours_iter, sklearn_iters=int(km.n_iter_), cost_ratio_vs_sklearn=rel)
    print(f"\n[kmeans 100k x 128, k=1000] ours ({backend}, {ours_iter} Lloyd iters) {t_ours:.1f}s  "
          f"sklearn ({km.n_iter_} iters) {t_sk:.1f}s  ratio {t_sk / t_ours:.1f}x  cost ours/sklearn {rel:.3f}")
    assert t_sk / t_ours >= 3.0
    assert rel <= 1.10
