"""Every strategy on a 1M-sample pool (D=512, C=100, T=5 MC samples), k=1000, on this machine.

Each strategy runs in a fresh subprocess that makes the pool itself (float32, class-structured
embeddings, seeded), so its peak RSS (VmHWM) is its own and includes the pool: logits 0.4 GB,
embeddings 2.0 GB, mc_logits 2.0 GB. A strategy that passes ``--timeout`` seconds is reported as
such. coreset's row splits its time into the labeled init and the greedy loop (``init_s``,
``greedy_s``, ``init_path``: pruned or plain), kmeans' row adds the k-means++ init timed alone
(``init_s``, before select), every row the load average at its end. Usage: ``python benchmarks/bench_pool_1m.py [--n 1000000] [--timeout 300] [--out FILE]``.
"""
import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
import autoal_fast as aaf
from autoal_fast import strategies
name, n = sys.argv[1], int(sys.argv[2])
d, c, t, k = 512, 100, 5, 1000
g = torch.Generator().manual_seed(0)
cls = torch.randint(0, c, (n,), generator=g)
emb = torch.randn(c, d, generator=g)[cls] * 3
emb += torch.randn(n, d, generator=g)
z = torch.randn(n, c, generator=g)
z[torch.arange(n), cls] += 6 * torch.rand(n, generator=g)
mc = None
if name in strategies.MC_BASED:
    mc = z + torch.randn(t, n, c, generator=g)
pool = aaf.PoolOutputs(z, emb, mc_logits=mc)
lab = aaf.PoolOutputs(z[:1000].clone(), emb[:1000].clone() + 0.01)
extra = {"threads": torch.get_num_threads()}
if name == "kmeans":  # the k-means++ init alone (the same call select makes first)
    from autoal_fast.strategies import kmeans
    from autoal_fast.strategies._greedy import make_generator
    t0 = time.perf_counter()
    kmeans.kmeanspp_init(emb, k, make_generator(0))
    extra["init_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
idx = strategies.select(name, pool, k, labeled=lab if name == "coreset" else None, seed=0)
dt = time.perf_counter() - t0
if name == "coreset":
    from autoal_fast.strategies import coreset
    extra.update({key: coreset.last_stats.get(key) for key in ("init_s", "greedy_s", "init_path")})
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"strategy": name, "s": dt, "peak_rss_gb": int(hwm) / 2**20,
                  "unique": int(idx.unique().numel()) == k, **extra,
                  "backend": aaf.backend_report()["last_used"].get(name if name in ("kmeans", "coreset", "random") else "uncertainty")}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default=None)
    ap.add_argument("--strategies", default="entropy,margin,least_confidence,var_ratio,bald,mean_std,"
                                             "random,coreset,kmeans,badge")
    args = ap.parse_args()
    rows = []
    for name in args.strategies.split(","):
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-c", CHILD, name, str(args.n)], capture_output=True,
                               text=True, timeout=args.timeout)
            row = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
                {"strategy": name, "error": r.stderr[-500:]}
        except subprocess.TimeoutExpired:
            row = {"strategy": name, "timed_out_s": args.timeout}
        row["wall_s"] = time.perf_counter() - t0
        with open("/proc/loadavg") as f:
            row["load_avg"] = f.read().split()[:3]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
