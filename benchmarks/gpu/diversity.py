"""GPU check of the diversity strategies (kmeans, coreset, badge): one script, < ~60 s.

    python benchmarks/gpu/diversity.py [results.json]

On CUDA it (1) checks the Triton fused distance step against its torch
reference, (2) times one full k-center step on 1M x 512 (fp32, and bf16 when
supported) against its bandwidth floor, bytes / peak bandwidth, with
bytes = n*d*itemsize (x) + 8n (mind read+write) + 4n (assign write) and the
peak taken from the device name (H200 3.94e12 B/s, H100 3.35e12 B/s),
(3) times coreset / kmeans (torch backend) / badge end to end on a 1M-row pool.
Every figure is written next to the device name; memory is
torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import time

import torch
from _common import main, peak_bandwidth

def _sync():
    torch.cuda.synchronize()


def _time_cuda(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    return times[len(times) // 2]


def _wall(fn):
    _sync()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    r = fn()
    _sync()
    return r, time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**20


def run(out: dict) -> dict:
    if not torch.cuda.is_available():
        out["skipped"] = "no CUDA device"
        return out
    import autoal_fast as aaf
    from autoal_fast import _backend
    from autoal_fast.kernels import distance as kd
    from autoal_fast.strategies import badge, coreset, kmeans, select

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    bw = peak_bandwidth(name)
    out["device"] = name
    out["bandwidth_Bps"] = bw
    g = torch.Generator(device=dev).manual_seed(0)

    # (1) correctness of the Triton step against the reference, odd shapes
    checks = []
    for n, d, dt in [(100_003, 512, torch.float32), (4099, 77, torch.float16), (70_001, 512, torch.bfloat16)]:
        x = torch.randn(n, d, device=dev, generator=g).to(dt)
        c = torch.randn(d, device=dev, generator=g)
        for use_idx in (False, True):
            mind = torch.rand(n, device=dev, generator=g) * 2 * d ** 0.5
            mind[::11] = -1
            assign = torch.zeros(n, dtype=torch.int32, device=dev)
            m2, a2 = mind.clone(), assign.clone()
            idx = torch.arange(0, n, 3, device=dev) if use_idx else None
            v, i = kd.min_dist_update(x, idx, c, mind, assign, 7)
            v2, i2 = kd.min_dist_update_reference(x, idx, c, m2, a2, 7)
            checks.append(dict(n=n, d=d, dtype=str(dt), idx=use_idx,
                               max_abs_err=float((mind - m2).abs().max()),
                               assign_equal=bool(torch.equal(assign, a2)),
                               argmax_equal=int(i) == int(i2)))
    out["triton_vs_reference"] = checks
    out["triton_ok"] = all(c["assign_equal"] and c["argmax_equal"] and c["max_abs_err"] < 1e-3 for c in checks)

    # (2) one full k-center step, 1M x 512, against the bandwidth floor
    n, d = 1_000_000, 512
    steps = {}
    dtypes = [torch.float32] + ([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
    for dt in dtypes:
        x = torch.randn(n, d, device=dev, generator=g).to(dt)
        c = x[123].float()
        mind = torch.full((n,), float("inf"), device=dev)
        assign = torch.zeros(n, dtype=torch.int32, device=dev)
        t = _time_cuda(lambda: kd.min_dist_update(x, None, c, mind, assign, 1))
        nbytes = n * d * x.element_size() + 12 * n
        floor = nbytes / bw if bw else None
        steps[str(dt)] = dict(step_ms=t * 1e3, floor_ms=floor * 1e3 if floor else None,
                              ratio_to_floor=t / floor if floor else None, gbps=nbytes / t / 1e9)
        del x
    out["coreset_step_1M_x_512"] = steps

    # (3) end to end on a class-structured 1M pool
    torch.cuda.empty_cache()
    c_, k = 100, 1000
    cls = torch.randint(0, c_, (n,), device=dev, generator=g)
    e = torch.randn(c_, d, device=dev, generator=g)[cls] * 3 + \
        torch.randn(n, 16, device=dev, generator=g) @ torch.randn(16, d, device=dev, generator=g) / 4
    z = torch.randn(n, c_, device=dev, generator=g)
    z[torch.arange(n, device=dev), cls] += 6 * torch.rand(n, device=dev, generator=g)
    pool = aaf.PoolOutputs(z, e)
    lab_x = e[:1000].clone() + 0.01
    lab = aaf.PoolOutputs(z[:1000].clone(), lab_x)
    select("coreset", aaf.PoolOutputs(z[:5000], e[:5000]), 10, labeled=lab)  # compile / warm up
    p, t, mem = _wall(lambda: select("coreset", pool, k, labeled=lab))
    out["coreset_1M_1000lab_1000picks"] = {**coreset.last_stats, "s": t, "max_mem_mib": mem,
                                           "backend": _backend.last_used["coreset"],
                                           "unique": len(set(p.tolist())) == k}
    p, t, mem = _wall(lambda: select("kmeans", pool, k, seed=0))
    out["kmeans_1M_k1000"] = {**kmeans.last_stats, "s": t, "max_mem_mib": mem,
                              "backend": _backend.last_used["kmeans"],
                              "unique": len(set(p.tolist())) == k}
    p, t, mem = _wall(lambda: select("badge", pool, k, seed=0))
    out["badge_1M_C100_k1000"] = dict(s=t, max_mem_mib=mem, unique=len(set(p.tolist())) == k,
                                      **badge.last_stats)
    return out


if __name__ == "__main__":
    main(run, "diversity")
