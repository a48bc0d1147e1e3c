"""GPU scale check: full AutoAL.query on a 1M x 512 pool with b = 10k, the paper's seven
candidates plus coreset; time and peak GPU memory (target: under 10 s).

Usage: ``python benchmarks/gpu/scale.py [OUT_DIR]`` or through run_all.py (``run(out)``
fills ``out["scale"]``). Steps: fit on a 10k labeled set (few steps: the search is not
what is measured), a warm-up query on a 50k pool (Triton compilation), then the timed
1M query after ``torch.cuda.reset_peak_memory_stats`` (``max_memory_allocated`` is the
query's peak, pool tensors included). If time is left, each candidate alone on the same
pool (``strategies.select``) for a breakdown. MC candidates use FitNet MC dropout over
the embeddings (no mc_logits given). Every part records its own error.
"""
import os
import time
import traceback

import torch
from _common import main

N, D, C, B = 1_000_000, 512, 100, 10_000
N_LAB = 10_000
#: CPU smoke test of this script (not a measurement): AUTOAL_GPU_SCALE_SMOKE=1 runs it
#: on CPU with a 20k pool, b = 200.
if os.environ.get("AUTOAL_GPU_SCALE_SMOKE") == "1":
    N, B, N_LAB = 20_000, 200, 1000
#: Seconds after which the per-candidate breakdown is skipped.
TIME_BUDGET_S = float(os.environ.get("AUTOAL_GPU_SCALE_BUDGET_S", "240"))


def _pool(n, g, dev, centres, w):
    import autoal_fast as aaf

    cls = torch.randint(0, C, (n,), generator=g, device=dev)
    e = centres[cls] + torch.randn(n, D, generator=g, device=dev)
    z = e @ w + 0.5 * torch.randn(n, C, generator=g, device=dev)
    return aaf.PoolOutputs(z, embeddings=e), cls


def run(out: dict) -> None:
    res = out.setdefault("scale", {})
    t_start = time.perf_counter()
    try:
        import autoal_fast as aaf
        from autoal_fast import _backend, strategies

        smoke = os.environ.get("AUTOAL_GPU_SCALE_SMOKE") == "1"
        dev = torch.device("cpu" if smoke else "cuda")
        res["device"] = "cpu (smoke)" if smoke else torch.cuda.get_device_name(0)
        if smoke:  # no-op stand-ins for the CUDA calls
            torch.cuda.synchronize = lambda: None
            torch.cuda.reset_peak_memory_stats = lambda: None
            torch.cuda.memory_allocated = torch.cuda.max_memory_allocated = lambda: 0
        g = torch.Generator(device=dev).manual_seed(0)
        centres = 3 * torch.randn(C, D, generator=g, device=dev)
        w = torch.randn(D, C, generator=g, device=dev) / D ** 0.5
        lab, y = _pool(N_LAB, g, dev, centres, w)
        names = strategies.PAPER_CANDIDATES + ("coreset",)
        res["strategies"] = list(names)
        al = aaf.AutoAL(strategies=names, device=dev, seed=0, pretrain_steps=50, search_steps=50)
        t = time.perf_counter()
        al.fit(lab, y, k=B, n_pool=N)
        torch.cuda.synchronize()
        res["fit_s"] = time.perf_counter() - t
        warm, _ = _pool(min(50_000, N), g, dev, centres, w)
        t = time.perf_counter()
        al.query(warm, min(500, B), labeled=lab)
        torch.cuda.synchronize()
        res["warmup_query_50k_s"] = time.perf_counter() - t
        del warm
        pool, _ = _pool(N, g, dev, centres, w)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t = time.perf_counter()
        q = al.query(pool, B, labeled=lab)
        torch.cuda.synchronize()
        res["query_1m_s"] = time.perf_counter() - t
        res["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
        res["memory_before_query_gb"] = base / 2**30
        res["target_met"] = res["query_1m_s"] < 10.0
        res["n"], res["b"], res["d"], res["c"] = N, B, D, C
        res["unique"] = int(q.indices.unique().numel()) == B
        res["mc_source"] = q.mc_source
        res["weight_share"] = q.weight_share()
        res["backends"] = dict(_backend.last_used)
        print(f"[scale] {N} x {D} query b={B}: {res['query_1m_s']:.2f} s, peak "
              f"{res['max_memory_allocated_gb']:.2f} GB on {res['device']}", flush=True)
        # the same query with the selection strategies one after the other
        # (search/candidates.py CONCURRENT_CUDA=False): time, and the same picks?
        from autoal_fast.search import candidates as cand_mod

        saved = cand_mod.CONCURRENT_CUDA
        cand_mod.CONCURRENT_CUDA = False
        try:
            torch.cuda.synchronize()
            t = time.perf_counter()
            q_seq = al.query(pool, B, labeled=lab)
            torch.cuda.synchronize()
            res["query_1m_sequential_s"] = time.perf_counter() - t
        finally:
            cand_mod.CONCURRENT_CUDA = saved
        res["concurrent_default"] = saved
        res["same_picks_as_sequential"] = bool(torch.equal(q_seq.indices.cpu(), q.indices.cpu()))
        print(f"[scale] sequential candidates: {res['query_1m_sequential_s']:.2f} s, same picks: "
              f"{res['same_picks_as_sequential']}", flush=True)
        brk = res.setdefault("select_s", {})
        for nm in names:
            if time.perf_counter() - t_start > TIME_BUDGET_S:
                res["breakdown_skipped_after"] = nm
                break
            p = pool
            if nm in strategies.MC_BASED:  # the same MC source as the query: FitNet dropout
                from autoal_fast.autoal import _DeviceHead

                p = aaf.PoolOutputs(pool.logits, embeddings=pool.embeddings,
                                    head=_DeviceHead(al.fitnet_, dev), n_mc=al.n_mc)
            torch.cuda.synchronize()
            t = time.perf_counter()
            strategies.select(nm, p, B, labeled=lab if nm == "coreset" else None, seed=0)
            torch.cuda.synchronize()
            brk[nm] = time.perf_counter() - t
            print(f"[scale] select {nm}: {brk[nm]:.2f} s", flush=True)
    except Exception:  # noqa: BLE001 - record and let run_all go on
        res["error"] = traceback.format_exc()
    res["wall_s"] = time.perf_counter() - t_start


if __name__ == "__main__":
    main(run, "scale")
