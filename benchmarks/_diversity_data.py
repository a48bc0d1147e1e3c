"""Shared inputs and helpers of the diversity benchmarks (not collected by pytest).

Embeddings are class-structured like a trained network's penultimate features:
``n_clusters`` class means plus a low-dimensional within-class spread plus
small isotropic noise. Isotropic Gaussian noise is the worst case for
triangle-inequality pruning (all distances concentrate); bench_coreset
reports it separately.
"""
import json
import subprocess
import sys
import time

import numpy as np
import torch


def clustered(n, d, n_clusters=100, latent=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    cent = torch.randn(n_clusters, d, generator=g) * 3
    lab = torch.randint(0, n_clusters, (n,), generator=g)
    proj = torch.randn(latent, d, generator=g) / latent ** 0.5
    x = cent[lab] + torch.randn(n, latent, generator=g) @ proj + 0.05 * torch.randn(n, d, generator=g)
    return x.to(dtype).contiguous()


def run_isolated(code: str, timeout: int = 900) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON line last.

    Used where peak RSS must belong to one computation only; the child adds
    its own ``peak_rss_mb`` and ``wall_s``. Peak RSS is VmHWM from
    /proc/self/status: ru_maxrss is not usable here because Linux carries it
    over fork+exec from the (possibly large) parent.
    """
    wrapped = (
        "import json, resource, time\n_t0 = time.perf_counter()\n" + code +
        "\n_res['wall_s'] = time.perf_counter() - _t0"
        "\n_res['peak_rss_mb'] = [int(l.split()[1]) for l in open('/proc/self/status')"
        " if l.startswith('VmHWM')][0] / 1024"
        "\nprint(json.dumps(_res))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, *a, **kw):
    t = time.perf_counter()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t
