"""autoal_fast.topk (C++ extension) against torch.topk, same inputs, same run."""
import pytest
import torch

import autoal_fast

pytestmark = pytest.mark.slow

CASES = [(10_000_000, 10_000), (1_000_000, 1_000)]


@pytest.fixture(scope="module")
def scores():
    g = torch.Generator().manual_seed(0)
    return torch.randn(CASES[0][0], generator=g)


@pytest.mark.parametrize("n,k", CASES, ids=["n10M-k10k", "n1M-k1k"])
@pytest.mark.parametrize("impl", ["torch.topk", "autoal_fast.topk"])
def test_topk(benchmark, scores, n, k, impl):
    x = scores[:n].contiguous()
    fn = torch.topk if impl == "torch.topk" else autoal_fast.topk
    benchmark.group = f"topk n={n} k={k}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    v, i = benchmark.pedantic(fn, args=(x, k), rounds=15, iterations=1, warmup_rounds=2)
    assert i.shape == (k,)
