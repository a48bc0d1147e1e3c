"""Where k-means time goes on CUDA at large k: init vs Lloyd, fp32 vs TF32 matmuls."""
import time

import torch


def _t(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return r, time.perf_counter() - t0


def run(out: dict) -> None:
    from autoal_fast.strategies import kmeans as K
    from autoal_fast.strategies._greedy import make_generator

    res = out.setdefault("kmeans_breakdown", {})
    g = torch.Generator(device="cuda").manual_seed(0)
    n, d, c = 1_000_000, 512, 100
    cls = torch.randint(0, c, (n,), device="cuda", generator=g)
    x = torch.randn(c, d, device="cuda", generator=g)[cls] * 3 + torch.randn(n, d, device="cuda", generator=g)
    for k in (1000, 10_000):
        K.kmeanspp_init(x[:20000], 50, make_generator(0))  # warm-up
        cen, t_init = _t(lambda: K.kmeanspp_init(x, k, make_generator(0)))
        (_, it32), t_l32 = _t(lambda: K.lloyd_torch(x, cen.clone(), 20))
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            (_, it_tf), t_ltf = _t(lambda: K.lloyd_torch(x, cen.clone(), 20))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        res[f"k{k}"] = {"init_s": t_init, "lloyd20_fp32_s": t_l32, "iters_fp32": it32,
                        "lloyd20_tf32_s": t_ltf, "iters_tf32": it_tf}
        print(k, res[f"k{k}"], flush=True)
