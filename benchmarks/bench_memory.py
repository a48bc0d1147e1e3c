"""A 10M-sample float16 pool from memory-mapped .npy files: peak RSS and time.

Uncertainty selection (entropy, k = 10k) and AutoAL.query with uncertainty
candidates, each in a fresh subprocess whose peak RSS (``ru_maxrss``, which counts
the memmap pages it touched) must stay under 3 GB. The pool (logits 10M x 10 and
embeddings 10M x 32, float16: 200 MB + 640 MB) is written once to a temp folder
outside git (``AUTOAL_FAST_SCALE_DIR``, default /tmp/autoal_fast_scale) in chunks.

Run: ``python -m pytest benchmarks/bench_memory.py -m slow -s`` or
``python benchmarks/bench_memory.py [n]`` (prints the JSON figures).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
N, C, D, K = 10_000_000, 10, 32, 10_000
RSS_LIMIT_MB = 3 * 1024


def pool_dir(n: int = N) -> Path:
    return Path(os.environ.get("AUTOAL_FAST_SCALE_DIR", "/tmp/autoal_fast_scale")) / f"n{n}"


def write_pool(n: int = N, c: int = C, d: int = D, seed: int = 0, chunk: int = 1_000_000) -> Path:
    """logits.npy (n, c) and emb.npy (n, d), float16, written chunk by chunk (low RSS)."""
    out = pool_dir(n)
    if (out / "done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d)).astype(np.float32) * 2
    w = rng.standard_normal((d, c)).astype(np.float32) * 0.5
    z = np.lib.format.open_memmap(out / "logits.npy", "w+", np.float16, (n, c))
    e = np.lib.format.open_memmap(out / "emb.npy", "w+", np.float16, (n, d))
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        cls = rng.integers(0, c, m)
        ee = centres[cls] + rng.standard_normal((m, d), dtype=np.float32)
        e[lo:lo + m] = ee
        z[lo:lo + m] = ee @ w + rng.standard_normal((m, c), dtype=np.float32)
    z.flush()
    e.flush()
    del z, e
    (out / "done").write_text("ok")
    return out


CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
import autoal_fast as aaf
from autoal_fast import strategies
what, path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
z = np.load(path + '/logits.npy', mmap_mode='r')
e = np.load(path + '/emb.npy', mmap_mode='r')
pool = aaf.PoolOutputs(z, embeddings=e)
res = {'what': what, 'n': int(z.shape[0]), 'threads': torch.get_num_threads()}
if what == 'entropy':
    t = time.perf_counter()
    idx = strategies.select('entropy', pool, k)
    res['time_s'] = time.perf_counter() - t
else:
    names = tuple(what.split(','))
    rng = np.random.default_rng(1)
    lab_ids = np.sort(rng.choice(z.shape[0], 2000, replace=False))
    lab = aaf.PoolOutputs(np.asarray(z[lab_ids], np.float32), embeddings=np.asarray(e[lab_ids], np.float32))
    y = np.asarray(z[lab_ids], np.float32).argmax(1)
    al = aaf.AutoAL(strategies=names, seed=0, pretrain_steps=50, search_steps=50)
    t = time.perf_counter()
    al.fit(lab, y, k=k, n_pool=int(z.shape[0]))
    res['fit_s'] = time.perf_counter() - t
    t = time.perf_counter()
    q = al.query(pool, k)
    res['time_s'] = time.perf_counter() - t
    res['mc_source'] = q.mc_source
    idx = q.indices
assert idx.numel() == k and idx.unique().numel() == k
res['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
for line in open('/proc/self/status'):
    if line.startswith('VmHWM:'):
        res['vm_hwm_mb'] = int(line.split()[1]) / 1024.0
print(json.dumps(res))
"""


def ensure_pool(n: int = N) -> Path:
    """write_pool in a separate process: Linux keeps ru_maxrss across fork + exec, so a parent
    that touched the pool's pages would pass its peak on to the measured child."""
    if not (pool_dir(n) / "done").exists():
        subprocess.run([sys.executable, str(Path(__file__)), "--write", str(n)], cwd=ROOT, check=True)
    return pool_dir(n)


def measure(what: str, n: int = N, k: int = K, timeout: int = 900) -> dict:
    """Run one case in a fresh interpreter; returns its JSON figures (ru_maxrss, and VmHWM,
    the same peak read from /proc, which starts afresh at exec)."""
    path = ensure_pool(n)
    p = subprocess.run([sys.executable, "-c", CHILD, what, str(path), str(k)], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-4000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("what", ["entropy", "entropy,margin,least_confidence"])
def test_10m_float16_memmap_peak_rss(what):
    res = measure(what)
    print(json.dumps(res))
    assert res["peak_rss_mb"] < RSS_LIMIT_MB, res


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_pool(int(sys.argv[2]))
        sys.exit(0)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    whats = sys.argv[2:] or ["entropy", "entropy,margin,least_confidence",
                             "entropy,margin,least_confidence,var_ratio,bald,mean_std"]
    for w in whats:
        print(json.dumps(measure(w, n)), flush=True)
