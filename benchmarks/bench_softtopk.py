"""Soft top-k forward + backward: ours (torch path on CPU) against a plain torch bisection.

The baseline is what one writes first: 50 bisection steps on tau with a host sync each,
then ``sigmoid((a - tau) / T)`` differentiated by autograd with tau treated as a constant
(so its gradient even misses the tau term). Ours: safeguarded Newton with early exit and
the closed-form implicit backward. Same inputs, same run; compare the ratio.
"""
import pytest
import torch

from autoal_fast.search.relax import soft_topk

pytestmark = pytest.mark.slow

CASES = [(1024, 0.02), (1024, 0.1), (100_000, 0.02)]


def plain_bisection(a, k, t, iters=50):
    with torch.no_grad():
        lo, hi = float(a.min()) - 20 * t, float(a.max()) + 20 * t
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if float(torch.sigmoid((a - mid) / t).sum()) > k:
                lo = mid
            else:
                hi = mid
    return torch.sigmoid((a - 0.5 * (lo + hi)) / t)


def ours(a, k, t):
    return soft_topk(a, k, t, backend="torch")


@pytest.mark.parametrize("n,ratio", CASES, ids=[f"n{n}-t{r}" for n, r in CASES])
@pytest.mark.parametrize("impl", ["plain_bisection", "autoal_fast"])
def test_softtopk_fwd_bwd(benchmark, n, ratio, impl):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, generator=g).mul_(0.3).requires_grad_(True)
    w = torch.rand(n, generator=g)
    k, t = ratio * n, 0.05
    fn = plain_bisection if impl == "plain_bisection" else ours

    def step():
        s = fn(a, k, t)
        (gr,) = torch.autograd.grad((s * w).sum(), a)
        return s, gr

    benchmark.group = f"soft top-k fwd+bwd n={n} k={k:g}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    s, gr = benchmark.pedantic(step, rounds=30, iterations=1, warmup_rounds=3)
    assert abs(float(s.detach().sum()) - k) < 1e-2 * k
