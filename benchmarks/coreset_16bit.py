"""coreset on a float16 CPU pool: the C++ distance step (reads the float16 rows
in place) against the torch reference step it replaced, same inputs, same run.

Run: ``python benchmarks/coreset_16bit.py [--n 100000] [--d 512] [--labeled 1000] [--k 1000]
[--data clustered|gaussian]``
Prints, per path, the whole select() time and the part spent in the distance
step (pool rows and centre-to-centre distances), best of alternating rounds
after a warm-up, and the ratios; the two paths must pick the same indices.
Data: the class-structured embeddings of the other diversity benchmarks
(``_diversity_data.clustered``; pruning skips most rows, so the shared
nearest-labeled start dominates), or isotropic Gaussian (the worst case for
pruning: most steps are full passes), cast to float16.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import autoal_fast as aaf  # noqa: E402
from autoal_fast import _backend  # noqa: E402
from autoal_fast.strategies import _greedy, coreset, select  # noqa: E402
from _diversity_data import clustered  # noqa: E402


class StepTimer:
    """Seconds spent in the distance step (pool rows and centre-to-centre)."""

    def __init__(self):
        self.s = 0.0
        self._update = _greedy.EuclideanRows.update
        self._centres = coreset.center_dists_euclid

    def _timed(self, f):
        def g(*a, **kw):
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                self.s += time.perf_counter() - t0
        return g

    def __enter__(self):
        _greedy.EuclideanRows.update = self._timed(self._update)
        coreset.center_dists_euclid = self._timed(self._centres)
        return self

    def __exit__(self, *exc):
        _greedy.EuclideanRows.update = self._update
        coreset.center_dists_euclid = self._centres


def run(pool, k, lab, cpp: bool):
    """(picks, whole select seconds, distance-step seconds, backend)."""
    saved = _greedy.load_ext
    if not cpp:
        _greedy.load_ext = lambda: None  # the torch reference step
    try:
        with StepTimer() as st:
            t0 = time.perf_counter()
            picks = select("coreset", pool, k, labeled=lab)
            dt = time.perf_counter() - t0
    finally:
        _greedy.load_ext = saved
    return picks, dt, st.s, _backend.last_used["coreset"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--labeled", type=int, default=1000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each is kept")
    ap.add_argument("--data", choices=["clustered", "gaussian"], default="clustered",
                    help="gaussian: isotropic, the worst case for pruning (mostly full passes)")
    a = ap.parse_args()
    if a.data == "clustered":
        x = clustered(a.n + a.labeled, a.d, dtype=torch.float16)
    else:
        x = torch.randn(a.n + a.labeled, a.d, generator=torch.Generator().manual_seed(0)).half()
    pool = aaf.PoolOutputs(torch.zeros(a.n, 2), x[:a.n])
    lab = aaf.PoolOutputs(torch.zeros(a.labeled, 2), x[a.n:].clone())
    print(f"coreset, {a.data} float16 pool {a.n} x {a.d}, {a.labeled} labeled, k={a.k}, "
          f"{torch.get_num_threads()} threads, best of {a.rounds} alternating rounds")
    run(pool, 10, lab, cpp=True)  # warm-up: first-touch of the pool, thread pools
    best, picks = {}, {}
    for _ in range(a.rounds):
        for cpp in (True, False):
            p, dt, step, backend = run(pool, a.k, lab, cpp)
            picks[backend] = p
            old = best.get(backend, (float("inf"), float("inf")))
            best[backend] = (min(old[0], dt), min(old[1], step))
    for backend, (dt, step) in best.items():
        print(f"  {backend:5s} step: select {dt:.2f} s, of which distance step {step:.2f} s")
    (tc, sc), (tt, st) = best["cpp"], best["torch"]
    print(f"  ratio torch / cpp: select {tt / tc:.2f}x, distance step {st / sc:.2f}x; "
          f"same picks: {torch.equal(picks['cpp'], picks['torch'])}")


if __name__ == "__main__":
    main()
