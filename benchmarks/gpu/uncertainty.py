"""GPU check of the fused uncertainty pass (Triton): one script, about a minute.

    python benchmarks/gpu/uncertainty.py [results.json]
    (or through benchmarks/gpu/run_all.py, which calls ``run(out)``)

On CUDA it
1. checks the Triton kernel against the torch reference (float64) on odd
   shapes and all input dtypes: one class block, a masked tail (C=1001), the
   looped-class paths (C=3000, logits and two-phase MC);
2. times the fused pass on 1M x 1000 logits (float32 and bfloat16, no MC)
   against its bandwidth floor, bytes / peak bandwidth, with bytes = N*C*itemsize
   read + 16 B/row written (3 float32 scores + int32 flags); peak from the
   device name (H200 3.94e12 B/s, H100 3.35e12 B/s); plus a small launch
   sweep (BLOCK_N x num_warps) so the defaults can be checked;
3. times all six scores with T=10 mc_logits at N=100k, C=1000 (4.4 GB read)
   against its floor (the MC tile fits one 1024-wide block: one read);
4. times the public path ``uncertainty_scores(pool)`` (validation, one launch,
   the NaN/inf flag check = one sync) and eager torch one score at a time.
Times are medians of triton.testing.do_bench (CUDA events); memory is
torch.cuda.max_memory_allocated. Results go into ``out["uncertainty"]``.
"""
from __future__ import annotations

import os
import time

import torch
from _common import main, peak_bandwidth

#: AUTOAL_GPU_SWEEP=0 skips the launch sweeps (defaults and baselines only).
SWEEP = os.environ.get("AUTOAL_GPU_SWEEP", "1") == "1"


def _bench_ms(fn) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=10, rep=50))


def _sweep(launch, block_ns, warps=(1, 2, 4, 8)) -> dict:
    """ms of ``launch(BLOCK_N=, num_warps=)`` over the grid; a failed launch records its error."""
    out = {}
    for bn in block_ns:
        for nw in warps:
            try:
                out[f"BLOCK_N={bn},warps={nw}"] = _bench_ms(lambda: launch(BLOCK_N=bn, num_warps=nw))
            except Exception as exc:  # noqa: BLE001 - e.g. out of registers/shared memory
                out[f"BLOCK_N={bn},warps={nw}"] = repr(exc)[:200]
    return out


def _check(res: dict) -> bool:
    from autoal_fast.kernels import uncertainty as K

    ok_all = True
    cases = [(37, 1001, 3, torch.float32), (1000, 1000, 10, torch.float32), (1000, 1000, 10, torch.bfloat16),
             (999, 100, 10, torch.float16), (5, 3000, 2, torch.float32), (4097, 2, 2, torch.float32)]
    g = torch.Generator(device="cuda").manual_seed(0)
    for n, c, t, dt in cases:
        z = (torch.randn(n, c, device="cuda", generator=g) * 3).to(dt)
        x = (torch.randn(t, n, c, device="cuda", generator=g) * 3).to(dt)
        ref = K.reference_scores(z, x, dtype=torch.float64)
        for path, over in (("", {}), ("_looped", {"ONE_BLOCK": False})):
            if over and c > K.MAX_BLOCK_C:
                continue
            got, flags = K.fused_scores_triton(z, x, True, True, **over)
            errs, worst = {}, {}
            ok = int(flags.abs().sum()) == 0
            for nm in K.SCORE_NAMES:
                d = (got[nm].double() - ref[nm]).abs()
                tol = 1e-4 * ref[nm].abs() + (2e-6 if nm == "bald" else 1e-6)
                errs[nm] = float((d / (ref[nm].abs() + 1e-6)).max())
                ok_nm = bool((d <= tol).all())
                ok = ok and ok_nm
                if not ok_nm:  # the worst offender, to see what went wrong
                    i = int((d - tol).argmax())
                    worst[nm] = {"row": i, "abs_err": float(d[i]), "ref": float(ref[nm][i]),
                                 "got": float(got[nm][i]), "n_bad": int((d > tol).sum()),
                                 "logits": z[i].float().tolist()[:8],
                                 "mc_logits": x[:, i].float().tolist()[:4]}
            res[f"check_{n}x{c}_T{t}_{str(dt).split('.')[-1]}{path}"] = {
                "ok": ok, "max_rel_err": errs, "flags_set": int((flags != 0).sum()), "worst": worst}
            ok_all = ok_all and ok
    # NaN/inf flags
    ok = True
    for c in (1000, 1024):
        z = torch.randn(64, c, device="cuda")
        z[7, c - 1] = float("nan")
        z[8, :] = float("nan")
        z[9, 0] = float("inf")
        z[10, 3] = -float("inf")
        z[11, 5], z[11, 6] = float("inf"), -float("inf")
        z[12, 0], z[12, 1] = 3e38, -3e38  # finite: not flagged
        want = [7, 8, 9, 10, 11]
        for over in ({}, {"ONE_BLOCK": False}):
            _, flags = K.fused_scores_triton(z, None, True, False, **over)
            got = flags.nonzero().flatten().tolist()
            _, flags_mc = K.fused_scores_triton(None, z.unsqueeze(0).expand(2, -1, -1), False, True, **over)
            got_mc = flags_mc.nonzero().flatten().tolist()
            res[f"check_nan_flag_C{c}{'_looped' if over else ''}"] = {"logits": got, "mc": got_mc}
            ok = ok and got == want and got_mc == want
    res["check_nan_flag"] = ok
    return ok_all and ok


def run(out: dict) -> dict:
    res = out.setdefault("uncertainty", {})
    if not torch.cuda.is_available():
        res["skipped"] = "no CUDA device"
        return out
    import autoal_fast as aaf
    from autoal_fast import _backend
    from autoal_fast.kernels import uncertainty as K
    from autoal_fast.strategies.uncertainty import uncertainty_scores

    name = torch.cuda.get_device_properties(0).name
    bw = peak_bandwidth(name)
    res["device"] = name
    res["peak_bandwidth_Bps"] = bw
    res["triton"] = __import__("triton").__version__
    res["correct"] = _check(res)

    # -- 2. 1M x 1000 logits, no MC
    n, c = 1_000_000, 1000
    g = torch.Generator(device="cuda").manual_seed(1)
    z32 = torch.randn(n, c, device="cuda", generator=g) * 3
    for label, z in (("fp32", z32), ("bf16", z32.to(torch.bfloat16))):
        torch.cuda.reset_peak_memory_stats()
        ms = _bench_ms(lambda: K.fused_scores_triton(z, None, True, False))
        nbytes = n * c * z.element_size() + 16 * n
        entry = {"ms": ms, "bytes": nbytes, "GBps": nbytes / ms / 1e6,
                 "max_mem_alloc_GB": torch.cuda.max_memory_allocated() / 1e9}
        if bw:
            entry["floor_ms"] = nbytes / bw * 1e3
            entry["ratio_to_floor"] = ms / entry["floor_ms"]
        res[f"logits_1Mx1000_{label}"] = entry
    del z
    # the previous kernel (looped path, its tuned launch) in the same run
    z16 = z32.to(torch.bfloat16)
    for label, z in (("fp32", z32), ("bf16", z16)):
        res[f"logits_1Mx1000_{label}_looped_baseline_ms"] = _bench_ms(
            lambda: K.fused_scores_triton(z, None, True, False, ONE_BLOCK=False, BLOCK_N=2, num_warps=4))
    for label, z in (("fp32", z32), ("bf16", z16)) if SWEEP else ():
        sweep = _sweep(lambda **cfg: K.fused_scores_triton(z, None, True, False, **cfg), (1, 2, 4, 8))
        for over in ({"VEC": 1, "BLOCK_N": 1, "num_warps": 1}, {"VEC": 1, "BLOCK_N": 2, "num_warps": 4}):
            sweep[",".join(f"{k}={v}" for k, v in over.items())] = _bench_ms(
                lambda: K.fused_scores_triton(z, None, True, False, **over))
        res[f"logits_1Mx1000_{label}_sweep_ms"] = sweep
        best = min((v, k) for k, v in sweep.items() if isinstance(v, float))
        nbytes = n * c * z.element_size() + 16 * n
        res[f"logits_1Mx1000_{label}_best"] = {"config": best[1], "ms": best[0],
                                               "ratio_to_floor": best[0] / (nbytes / bw * 1e3) if bw else None}
    del z16
    res["default_config"] = K.launch_config(c, 1, False)

    # eager torch, one score at a time (the three logit scores)
    try:
        res["logits_1Mx1000_fp32_eager_one_by_one_ms"] = _bench_ms(
            lambda: K.reference_scores(z32, None, K.LOGIT_NAMES))
    except torch.cuda.OutOfMemoryError as exc:
        res["logits_1Mx1000_fp32_eager_one_by_one_ms"] = repr(exc)[:200]
    torch.cuda.empty_cache()

    # public path: validation + one launch + the flag check (one sync)
    pool = aaf.PoolOutputs(z32)
    uncertainty_scores(pool, K.LOGIT_NAMES)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):
        uncertainty_scores(pool, K.LOGIT_NAMES)
    torch.cuda.synchronize()
    res["public_logits_1Mx1000_fp32_ms"] = (time.perf_counter() - t0) / reps * 1e3
    res["public_backend"] = _backend.last_used.get("uncertainty")
    del pool, z32
    torch.cuda.empty_cache()

    # -- 3. all six with T=10 mc_logits
    n, c, t = 100_000, 1000, 10
    z = torch.randn(n, c, device="cuda", generator=g) * 3
    x = torch.randn(t, n, c, device="cuda", generator=g) * 3
    torch.cuda.reset_peak_memory_stats()
    ms = _bench_ms(lambda: K.fused_scores_triton(z, x, True, True))
    nbytes = n * c * 4 * (1 + t) + 28 * n
    entry = {"ms": ms, "bytes": nbytes, "GBps": nbytes / ms / 1e6,
             "max_mem_alloc_GB": torch.cuda.max_memory_allocated() / 1e9,
             "config": K.launch_config(c, t, True)}
    if bw:
        entry["floor_ms"] = nbytes / bw * 1e3
        entry["ratio_to_floor"] = ms / entry["floor_ms"]
    res[f"six_{n // 1000}kx{c}_T{t}_fp32"] = entry
    res[f"six_{n // 1000}kx{c}_T{t}_fp32_looped_baseline_ms"] = _bench_ms(
        lambda: K.fused_scores_triton(z, x, True, True, ONE_BLOCK=False, BLOCK_N=2, num_warps=8))
    sweep = _sweep(lambda **cfg: K.fused_scores_triton(z, x, True, True, **cfg), (1, 2, 4)) if SWEEP else {}
    res[f"six_{n // 1000}kx{c}_T{t}_fp32_sweep_ms"] = sweep
    best = min([(v, k) for k, v in sweep.items() if isinstance(v, float)] or [(ms, "default")])
    res[f"six_{n // 1000}kx{c}_T{t}_fp32_best"] = {"config": best[1], "ms": best[0],
                                                    "ratio_to_floor": best[0] / (nbytes / bw * 1e3) if bw else None}
    try:
        res[f"six_{n // 1000}kx{c}_T{t}_fp32_eager_one_by_one_ms"] = _bench_ms(lambda: K.reference_scores(z, x))
    except torch.cuda.OutOfMemoryError as exc:
        res[f"six_{n // 1000}kx{c}_T{t}_fp32_eager_one_by_one_ms"] = repr(exc)[:200]
    # wide rows: two-phase MC path (reads mc twice)
    n2, c2 = 20_000, 3000
    z2 = torch.randn(n2, c2, device="cuda", generator=g)
    x2 = torch.randn(t, n2, c2, device="cuda", generator=g)
    ms = _bench_ms(lambda: K.fused_scores_triton(z2, x2, True, True))
    nbytes = n2 * c2 * 4 * (1 + t) + 28 * n2
    entry = {"ms": ms, "bytes_one_read": nbytes}
    if bw:
        entry["ratio_to_one_read_floor"] = ms / (nbytes / bw * 1e3)
    res[f"six_{n2 // 1000}kx{c2}_T{t}_fp32_looped"] = entry
    return out


if __name__ == "__main__":
    main(run, "uncertainty")
