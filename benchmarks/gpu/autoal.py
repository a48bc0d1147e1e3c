"""GPU check of AutoAL: Triton soft top-k against torch (forward + backward, time), fit + query
on the 50k setting (eager and compiled), and, if time allows, query on a 1M x 512 pool.

Usage: ``python benchmarks/gpu/autoal.py [OUT_DIR]`` or through run_all.py. Every part
records its own error and the others go on; results go to ``out["autoal"]`` (and
``OUT_DIR/gpu_autoal.json`` when run directly). Card name next to every figure.
No FAISS needed: the torch/Triton paths are what get measured.
"""
import os
import time
import traceback

import torch
from torch import nn

from _common import main, time_ms

#: Seconds after which the optional parts (1M pool) are skipped.
TIME_BUDGET_S = float(os.environ.get("AUTOAL_GPU_BUDGET_S", "420"))


def _sync():
    torch.cuda.synchronize()


def _softtopk(res):
    from autoal_fast.search.relax import soft_topk

    g = torch.Generator(device="cuda").manual_seed(0)
    checks = {}
    for dtype, tol in ((torch.float32, 5e-5), (torch.float64, 1e-10)):
        for shape, k, t in (((1, 37), 5.0, 0.1), ((3, 1000), 20.5, 0.05), ((1, 5000), 100.0, 1.0),
                            ((4, 100_000), 2000.0, 0.05), ((1, 17), 16.5, 0.01)):
            a = torch.randn(shape, generator=g, device="cuda", dtype=dtype).requires_grad_(True)
            go = torch.randn(shape, generator=g, device="cuda", dtype=dtype)
            st = soft_topk(a, k, t, backend="triton")
            (gt,) = torch.autograd.grad(st, a, go)
            sr = soft_topk(a, k, t, backend="torch")
            (gr,) = torch.autograd.grad(sr, a, go)
            e_s = float((st - sr).detach().abs().max())
            e_g = float((gt - gr).abs().max() / (gr.abs().max() + 1e-12))
            checks[f"{str(dtype)[6:]}_{shape[0]}x{shape[1]}"] = {
                "max_abs_err_s": e_s, "max_rel_err_grad": e_g, "ok": e_s <= tol and e_g <= 10 * tol,
                "count_err": float((st.detach().sum(-1) - k).abs().max())}
    res["softtopk_check"] = checks
    res["softtopk_all_ok"] = all(v["ok"] for v in checks.values())
    a64 = torch.randn(2, 11, device="cuda", dtype=torch.float64, requires_grad=True)
    res["softtopk_gradcheck_triton_fp64"] = bool(torch.autograd.gradcheck(
        lambda x: soft_topk(x, 3.5, 0.3, backend="triton"), (a64,)))
    times = {}
    for n, ratio in ((1024, 0.1), (100_000, 0.02), (1_000_000, 0.01)):
        a = torch.randn(1, n, generator=g, device="cuda").requires_grad_(True)
        w = torch.rand(1, n, generator=g, device="cuda")
        row = {}
        for backend in ("triton", "torch"):
            def step(backend=backend):
                s = soft_topk(a, ratio * n, 0.05, backend=backend)
                torch.autograd.grad((s * w).sum(), a)
            row[f"{backend}_fwd_bwd_ms"] = time_ms(step)
        row["ratio_triton_over_torch"] = row["triton_fwd_bwd_ms"] / row["torch_fwd_bwd_ms"]
        times[f"n{n}"] = row
    res["softtopk_time"] = times


def _data(n_pool, n_lab, d, c, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(d, c)).cuda().eval()
    centers = torch.randn(c, d, generator=g, device="cuda")

    def make(n):
        y = torch.randint(0, c, (n,), generator=g, device="cuda")
        e = centers[y] + 2.0 * torch.randn(n, d, generator=g, device="cuda")
        with torch.no_grad():
            return e, head(e), y

    import autoal_fast as aaf

    eu, lu, _ = make(n_pool)
    el, ll, yl = make(n_lab)
    return aaf.PoolOutputs(lu, embeddings=eu, head=head), aaf.PoolOutputs(ll, embeddings=el), yl


def _fit_query(pool, lab, yl, k, strategies, **kw):
    import autoal_fast as aaf

    torch.cuda.reset_peak_memory_stats()
    al = aaf.AutoAL(strategies=strategies, budget=k, device="cuda", seed=0, **kw)
    _sync()
    t0 = time.perf_counter()
    rep = al.fit(lab, yl, k=k, n_pool=pool.n_samples)
    _sync()
    t1 = time.perf_counter()
    res = al.query(pool, k)
    _sync()
    t2 = time.perf_counter()
    assert res.indices.shape == (k,) and len(set(res.indices.tolist())) == k
    return {"fit_s": t1 - t0, "query_s": t2 - t1, "total_s": t2 - t0,
            "fit_parts_s": rep.times, "max_memory_allocated_gb": torch.cuda.max_memory_allocated() / 2**30,
            "lift_first_last": [rep.lift[0], rep.lift[-1]] if rep.lift else None,
            "weight_share": rep.weight_share, "backends": dict(__import__("autoal_fast")._backend.last_used)}


def _entropy_s(pool, k):
    from autoal_fast.strategies import select

    select("entropy", pool, k)
    _sync()
    t0 = time.perf_counter()
    select("entropy", pool, k)
    _sync()
    return time.perf_counter() - t0


def run(out: dict) -> None:
    from autoal_fast.strategies import PAPER_CANDIDATES, UNCERTAINTY

    res = out.setdefault("autoal", {})
    res["device"] = torch.cuda.get_device_name(0)
    t_start = time.perf_counter()
    for name, fn in (("softtopk", lambda: _softtopk(res)),):
        try:
            fn()
        except Exception:  # noqa: BLE001
            res[f"{name}_error"] = traceback.format_exc()
    # 50k x 512, C=10, 2k labeled, k=1000: the setting (target < 5 s)
    try:
        pool, lab, yl = _data(50_000, 2_000, 512, 10)
        res["50k_entropy_s"] = _entropy_s(pool, 1000)
        _fit_query(pool, lab, yl, 1000, UNCERTAINTY, pretrain_steps=5, search_steps=5)  # warm-up
        for label, strategies in (("paper7", PAPER_CANDIDATES), ("uncertainty6", UNCERTAINTY)):
            r = _fit_query(pool, lab, yl, 1000, strategies)
            r["ratio_to_entropy"] = r["total_s"] / res["50k_entropy_s"]
            res[f"50k_{label}_eager"] = r
        try:  # torch.compile of the nets (first call includes compilation; the second is steady)
            r1 = _fit_query(pool, lab, yl, 1000, UNCERTAINTY, compile=True)
            r2 = _fit_query(pool, lab, yl, 1000, UNCERTAINTY, compile=True)
            res["50k_uncertainty6_compile_first"] = r1
            res["50k_uncertainty6_compile_second"] = r2
        except Exception:  # noqa: BLE001
            res["50k_compile_error"] = traceback.format_exc()
        del pool, lab, yl
        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        res["50k_error"] = traceback.format_exc()
    # 1M x 512 pool, k=10k (optional, time permitting)
    for label, strategies in (("uncertainty6", UNCERTAINTY), ("paper7", PAPER_CANDIDATES)):
        if time.perf_counter() - t_start > TIME_BUDGET_S:
            res[f"1M_{label}"] = {"skipped": f"time budget {TIME_BUDGET_S:.0f} s used"}
            continue
        try:
            pool, lab, yl = _data(1_000_000, 2_000, 512, 10, seed=1)
            r = _fit_query(pool, lab, yl, 10_000, strategies)
            r["entropy_s"] = _entropy_s(pool, 10_000)
            r["ratio_to_entropy"] = r["total_s"] / r["entropy_s"]
            res[f"1M_{label}"] = r
            del pool, lab, yl
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            res[f"1M_{label}_error"] = traceback.format_exc()
            torch.cuda.empty_cache()
    res["wall_s"] = time.perf_counter() - t_start


if __name__ == "__main__":
    main(run, "autoal")
