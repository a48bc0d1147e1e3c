"""Query time against pool size for every strategy, and 1 vs 2 processes.

Pools: float16 numpy memmaps written once outside git (see ``bench_memory.write_pool``;
logits C=10, embeddings D=32, plus mc_logits T=5 for var_ratio/bald/mean_std), read
with ``np.load(mmap_mode="r")``. k = 1000 for every strategy and size. Each
(strategy, size) runs in a fresh subprocess (peak RSS is its own: VmHWM, which starts
afresh at exec, unlike ru_maxrss; pools are written by yet another process); sizes go up in
order and a strategy stops growing once a run takes more than ``--cap`` seconds
(the next size would be ~10x that), so 10M is reached where that is feasible on
the machine. Then, at ``--dist-n`` rows, every strategy on 2 gloo processes
(1 thread each) against 1 process with 1 thread and with 2 threads.

Usage:
    python benchmarks/bench_scale.py [--sizes 10000,100000,1000000,10000000] [--cap 60]
        [--dist-n 1000000] [--out runs/scale-<time>]
    python benchmarks/plot_scale.py runs/scale-<time>/scale.json
Figures go to OUT/scale.json (and the plot to OUT/scale.png); runs/ is not committed.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_memory import ensure_pool, pool_dir, write_pool  # noqa: E402

STRATEGIES = ("entropy", "margin", "least_confidence", "var_ratio", "bald", "mean_std",
              "kmeans", "coreset", "badge", "random")
K = 1000
T_MC = 5


def ensure_mc(n: int) -> Path:
    """write_mc in a separate process (keeps this parent small: ru_maxrss survives fork + exec)."""
    if not (pool_dir(n) / "mc_done").exists():
        subprocess.run([sys.executable, str(Path(__file__)), "--write-mc", str(n)], cwd=ROOT, check=True)
    return pool_dir(n)


def write_mc(n: int, t: int = T_MC, chunk: int = 1_000_000) -> Path:
    """mc_logits.npy (t, n, C) float16 beside the pool: logits + noise."""
    out = write_pool(n)
    if (out / "mc_done").exists():
        return out
    z = np.load(out / "logits.npy", mmap_mode="r")
    rng = np.random.default_rng(2)
    mc = np.lib.format.open_memmap(out / "mc_logits.npy", "w+", np.float16, (t, n, z.shape[1]))
    for lo in range(0, n, chunk):
        zz = np.asarray(z[lo:lo + chunk], np.float32)
        for j in range(t):
            mc[j, lo:lo + len(zz)] = zz + rng.standard_normal(zz.shape, dtype=np.float32)
    mc.flush()
    del mc
    (out / "mc_done").write_text("ok")
    return out


CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
import autoal_fast as aaf
from autoal_fast import strategies, _backend
name, path, k, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
z = np.load(path + '/logits.npy', mmap_mode='r')
e = np.load(path + '/emb.npy', mmap_mode='r')
mc = np.load(path + '/mc_logits.npy', mmap_mode='r') if name in strategies.MC_BASED else None
pool = aaf.PoolOutputs(z, embeddings=e, mc_logits=mc)
# warm-up on 2k rows: lazy imports (kernels, triton) and thread start are not query time
w = 2000
strategies.select(name, aaf.PoolOutputs(z[:w], embeddings=e[:w], mc_logits=None if mc is None else mc[:, :w]),
                  min(k, 100), seed=0)
t = time.perf_counter()
idx = strategies.select(name, pool, k, seed=0)
dt = time.perf_counter() - t
hwm = [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(json.dumps({'time_s': dt, 'peak_rss_mb': hwm,
                  'backend': _backend.last_used.get(name if name in ('kmeans', 'coreset', 'badge', 'random')
                                                    else 'uncertainty'), 'first': idx[:5].tolist()}))
"""

def _dist_worker(rank, world, init, path, k, names, out_file):
    """One rank of the 2-process run: every strategy on its half of the memmapped pool."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init, rank=rank, world_size=world)
    import autoal_fast as aaf
    from autoal_fast import strategies

    z = np.load(path + "/logits.npy", mmap_mode="r")
    e = np.load(path + "/emb.npy", mmap_mode="r")
    mcall = np.load(path + "/mc_logits.npy", mmap_mode="r")
    n = z.shape[0]
    lo, hi = n * rank // world, n * (rank + 1) // world
    out = {}
    for name in names:
        mc = mcall[:, lo:hi] if name in strategies.MC_BASED else None
        pool = aaf.PoolOutputs(z[lo:hi], embeddings=e[lo:hi], mc_logits=mc)
        w = 1000  # warm-up (lazy imports, first collectives), not timed
        strategies.select(name, aaf.PoolOutputs(z[lo:lo + w], embeddings=e[lo:lo + w],
                                                mc_logits=None if mc is None else mc[:, :w]), 100, seed=0)
        dist.barrier()
        t = time.perf_counter()
        idx = strategies.select(name, pool, k, seed=0)
        dist.barrier()
        out[name] = {"time_s": time.perf_counter() - t, "first": idx[:5].tolist()}
    if rank == 0:
        Path(out_file).write_text(json.dumps(out))
    dist.destroy_process_group()


def run_two_processes(n, names):
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        res = os.path.join(tmp, "res.json")
        mp.spawn(_dist_worker, args=(2, os.path.join(tmp, "init"), str(pool_dir(n)), min(K, n), names, res),
                 nprocs=2, join=True)
        return json.loads(Path(res).read_text())


def run_child(name, n, threads, timeout):
    path = ensure_mc(n) if name in ("var_ratio", "bald", "mean_std") else ensure_pool(n)
    p = subprocess.run([sys.executable, "-c", CHILD, name, str(path), str(min(K, n)), str(threads)],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000,10000000")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--cap", type=float, default=60.0, help="stop growing a strategy past this many seconds")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--dist-n", type=int, default=1_000_000)
    ap.add_argument("--dist-strategies", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = Path(a.out or ROOT / "runs" / time.strftime("scale-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    names = a.strategies.split(",")
    import torch

    res = {"k": K, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "pool": f"float16 memmap, C=10, D=32, mc T={T_MC}", "sizes": sizes, "time": {}, "rss": {},
           "backend": {}}
    for name in names:
        res["time"][name], res["rss"][name] = {}, {}
        for n in sizes:
            r = run_child(name, n, torch.get_num_threads(), a.timeout)
            if "error" in r:
                res.setdefault("errors", {})[f"{name}@{n}"] = r["error"]
                break
            res["time"][name][str(n)] = r["time_s"]
            res["rss"][name][str(n)] = r["peak_rss_mb"]
            res["backend"][name] = r["backend"]
            print(f"{name:17s} n={n:>9d} {r['time_s']:8.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"[{r['backend']}]", flush=True)
            (out / "scale.json").write_text(json.dumps(res, indent=1))
            if r["time_s"] > a.cap:
                break
    if a.dist_n:
        n = a.dist_n
        dnames = (a.dist_strategies or a.strategies).split(",")
        ensure_mc(n)
        one = {nm: run_child(nm, n, 1, a.timeout) for nm in dnames}
        two_thr = {nm: run_child(nm, n, 2, a.timeout) for nm in dnames}
        try:
            two = run_two_processes(n, dnames)
        except Exception as exc:  # noqa: BLE001 - keep the single-process figures
            two = {}
            res.setdefault("errors", {})["dist"] = repr(exc)
        res["dist"] = {"n": n, "k": min(K, n), "strategies": {}}
        for nm in dnames:
            row = {"1proc_1thread_s": one[nm].get("time_s"), "1proc_2threads_s": two_thr[nm].get("time_s"),
                   "2procs_1thread_s": two.get(nm, {}).get("time_s"),
                   "same_first_picks": two.get(nm, {}).get("first") == one[nm].get("first")}
            res["dist"]["strategies"][nm] = row
            print(f"dist n={n} {nm:17s} 1p1t {row['1proc_1thread_s']:.2f} s  1p2t {row['1proc_2threads_s']:.2f} s"
                  f"  2p {row['2procs_1thread_s'] or float('nan'):.2f} s  same={row['same_first_picks']}",
                  flush=True)
        (out / "scale.json").write_text(json.dumps(res, indent=1))
    try:
        from plot_scale import plot

        plot(out / "scale.json", out / "scale.png")
        print(f"plot: {out / 'scale.png'}")
    except ImportError as exc:
        print(f"no plot ({exc})")
    print(f"figures: {out / 'scale.json'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-mc"]:
        write_mc(int(sys.argv[2]))
    else:
        main()
