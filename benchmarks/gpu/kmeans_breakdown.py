"""Where k-means time goes on CUDA at large k: the k-means++ init (host-driven loop
against the device-resident loop, eager and as CUDA graphs) and TF32 Lloyd.

For every init the seeding potential (sum of squared distances of the pool to
the nearest centre, float64) is reported, so the faster init is shown to seed
as well. ``graph_vs_eager_max_abs`` compares the graph replay with the same
device steps run eagerly (same uniforms).
"""
import time

import torch


def _t(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return r, time.perf_counter() - t0


def _potential(x, cen):
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64, device=x.device)
    for lo in range(0, cen.shape[0], 1000):
        best = torch.minimum(best, torch.cdist(x.double(), cen[lo:lo + 1000].double()).min(1).values)
    return float(best.pow(2).sum())


def run(out: dict) -> None:
    from autoal_fast.strategies import kmeans as K
    from autoal_fast.strategies._greedy import make_generator

    res = out.setdefault("kmeans_breakdown", {})
    g = torch.Generator(device="cuda").manual_seed(0)
    n, d, c = 1_000_000, 512, 100
    cls = torch.randint(0, c, (n,), device="cuda", generator=g)
    x = torch.randn(c, d, device="cuda", generator=g)[cls] * 3 + torch.randn(n, d, device="cuda", generator=g)
    xs_small = x[:20000].contiguous()
    K.kmeanspp_rows_host(xs_small, 50, make_generator(0))  # warm-up (kernels compiled)
    K.kmeanspp_rows_device(xs_small, 300, make_generator(0))
    for k in (1000, 10_000):
        entry = res.setdefault(f"k{k}", {})
        idx = K.init_sample(n, k, make_generator(0))
        xs = x.index_select(0, idx.cuda()).contiguous()
        check = x[:200_000]
        cens = {}
        for label, fn in (("host_loop", lambda: K.kmeanspp_rows_host(xs, k, make_generator(0))),
                          ("device_eager", lambda: K.kmeanspp_rows_device(xs, k, make_generator(0),
                                                                          use_graphs=False)),
                          ("device_graphs", lambda: K.kmeanspp_rows_device(xs, k, make_generator(0)))):
            try:
                cen, secs = _t(fn)
                entry[f"init_{label}_s"] = secs
                entry[f"potential_{label}"] = _potential(check, cen)
                cens[label] = cen
            except Exception as exc:  # noqa: BLE001 - record, go on
                entry[f"init_{label}_error"] = repr(exc)[:300]
        if "device_eager" in cens and "device_graphs" in cens:
            entry["graph_vs_eager_max_abs"] = float((cens["device_eager"] - cens["device_graphs"]).abs().max())
        if "init_device_graphs_s" in entry and "init_host_loop_s" in entry:
            entry["init_speedup_graphs_vs_host"] = entry["init_host_loop_s"] / entry["init_device_graphs_s"]
        cen = K.kmeanspp_init(x, k, make_generator(0))
        (_, it_tf), t_ltf = _t(lambda: K.lloyd_torch(x, cen.clone(), 20))
        entry.update(lloyd20_tf32_s=t_ltf, iters_tf32=it_tf)
        print(k, entry, flush=True)
