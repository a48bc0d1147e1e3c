"""GPU check of autoal_fast.topk: exactness (tie order) on CUDA and time vs torch.topk."""
import torch
from _common import main, time_ms

import autoal_fast


def run(out: dict) -> None:
    res = out.setdefault("topk", {})
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randint(0, 100, (1_000_000,), device="cuda", generator=g).float()
    v, i = autoal_fast.topk(x, 10_000)
    vc, ic = autoal_fast.topk(x.cpu(), 10_000)
    res["cuda_equals_cpu_with_ties"] = bool(torch.equal(i.cpu(), ic) and torch.equal(v.cpu(), vc))
    for n, k in [(1_000_000, 10_000), (100_000_000, 10_000)]:
        y = torch.randn(n, device="cuda", generator=g)
        t_torch = time_ms(lambda: torch.topk(y, k))
        t_ours = time_ms(lambda: autoal_fast.topk(y, k))
        res[f"n{n}_k{k}"] = {"torch_topk_ms": t_torch, "autoal_fast_topk_ms": t_ours,
                             "ratio_ours_over_torch": t_ours / t_torch}


if __name__ == "__main__":
    main(run, "topk")
