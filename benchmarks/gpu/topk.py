"""GPU check of autoal_fast.topk: exactness (tie order) on CUDA and time vs torch.topk."""
import torch

import autoal_fast


def _time_ms(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def run(out: dict) -> None:
    res = out.setdefault("topk", {})
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randint(0, 100, (1_000_000,), device="cuda", generator=g).float()
    v, i = autoal_fast.topk(x, 10_000)
    vc, ic = autoal_fast.topk(x.cpu(), 10_000)
    res["cuda_equals_cpu_with_ties"] = bool(torch.equal(i.cpu(), ic) and torch.equal(v.cpu(), vc))
    for n, k in [(1_000_000, 10_000), (100_000_000, 10_000)]:
        y = torch.randn(n, device="cuda", generator=g)
        t_torch = _time_ms(lambda: torch.topk(y, k))
        t_ours = _time_ms(lambda: autoal_fast.topk(y, k))
        res[f"n{n}_k{k}"] = {"torch_topk_ms": t_torch, "autoal_fast_topk_ms": t_ours,
                             "ratio_ours_over_torch": t_ours / t_torch}


if __name__ == "__main__":
    import json

    o = {}
    run(o)
    print(json.dumps(o, indent=1))
