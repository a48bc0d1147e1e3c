"""A tour of autoal_fast on a synthetic pool (runs in seconds on a CPU).

Run: python examples/demo.py   (the full AL experiment: autoal-fast run)
"""
import time

import torch

import autoal_fast as aaf


def synthetic(n, n_classes=10, dim=64, seed=0):
    """Model outputs of a pretend task model: class-structured embeddings and noisy logits."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    centres = torch.randn(n_classes, dim, generator=g) * 3
    emb = centres[y] + torch.randn(n, dim, generator=g)
    logits = emb @ centres.T / dim + 0.5 * torch.randn(n, n_classes, generator=g)
    mc = logits + 0.3 * torch.randn(5, n, n_classes, generator=g)  # 5 stochastic passes
    return aaf.PoolOutputs(logits, embeddings=emb, mc_logits=mc), y


def main():
    pool, _ = synthetic(200_000, seed=0)
    labeled, y_lab = synthetic(2_000, seed=1)
    print(f"autoal_fast {aaf.__version__}: pool {pool}")

    t0 = time.perf_counter()
    _, ids = aaf.topk(aaf.strategies.score("entropy", pool), 1000)
    print(f"  entropy top-1000 of 200k: {1e3 * (time.perf_counter() - t0):.0f} ms, first ids {ids[:5].tolist()}")

    t0 = time.perf_counter()
    ids = aaf.strategies.select("coreset", pool, 100, labeled=labeled)
    print(f"  coreset, 100 picks from the labeled set: {time.perf_counter() - t0:.2f} s "
          f"({aaf.backend_report()['last_used']['coreset']} backend)")

    al = aaf.AutoAL(strategies=("entropy", "margin", "bald", "kmeans"), seed=0,
                    pretrain_steps=100, search_steps=100)
    t0 = time.perf_counter()
    report = al.fit(labeled, y_lab, n_pool=pool.n_samples, k=1000)
    res = al.query(pool, k=1000)
    shares = {k: round(v / sum(report.weight_totals.values()), 2) for k, v in report.weight_totals.items()}
    print(f"  AutoAL fit + query (k=1000): {time.perf_counter() - t0:.1f} s; {res.indices.unique().numel()} "
          f"unique picks; strategy weight shares {shares}")


if __name__ == "__main__":
    main()
