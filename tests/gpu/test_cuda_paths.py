"""CUDA-only paths, run on a GPU with ``python -m pytest -m gpu tests/gpu``
(benchmarks/gpu/session.sh does): the k-means++ init replayed as CUDA graphs
against the same steps run eagerly, and AutoAL.query's concurrent selection
candidates against running them one after the other."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.search import candidates as cand_mod
from autoal_fast.strategies import _greedy, kmeans, select

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _blobs(n, d, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    centres = torch.randn(40, d, device="cuda", generator=g) * 4
    lab = torch.randint(0, 40, (n,), device="cuda", generator=g)
    return centres[lab] + torch.randn(n, d, device="cuda", generator=g)


@pytest.mark.parametrize("k", [kmeans.GRAPH_STEPS * 2 + 5, 700])
def test_graph_replay_equals_eager_device_steps(k):
    x = _blobs(6000, 32)
    eager = kmeans.kmeanspp_rows_device(x, k, _greedy.make_generator(1), use_graphs=False)
    graphs = kmeans.kmeanspp_rows_device(x, k, _greedy.make_generator(1), use_graphs=True)
    torch.testing.assert_close(graphs, eager, rtol=0, atol=0)
    assert torch.unique(graphs, dim=0).shape[0] == k


def test_kmeans_on_cuda_matches_cpu_quality():
    x = _blobs(8000, 16)
    pool = aaf.PoolOutputs(torch.zeros(8000, 2, device="cuda"), embeddings=x)
    picks = select("kmeans", pool, 40, seed=0)
    assert picks.device.type == "cuda" and picks.unique().numel() == 40
    xc = x.double().cpu()
    cost_gpu = torch.cdist(xc, xc[picks.cpu()]).min(1).values.pow(2).sum()
    cpu_pool = aaf.PoolOutputs(torch.zeros(8000, 2), embeddings=x.cpu())
    cost_cpu = torch.cdist(xc, xc[select("kmeans", cpu_pool, 40, seed=0)]).min(1).values.pow(2).sum()
    assert float(cost_gpu) <= 1.1 * float(cost_cpu)


def test_concurrent_candidates_give_the_sequential_picks(monkeypatch):
    rng = np.random.default_rng(0)
    n, d, c = 5000, 16, 5
    emb = torch.as_tensor(rng.standard_normal((n, d)), dtype=torch.float32, device="cuda")
    logits = emb[:, :c] * 2
    pool = aaf.PoolOutputs(logits, embeddings=emb)
    lab = aaf.PoolOutputs(logits[:50].clone(), embeddings=emb[:50].clone())
    names = ("entropy", "kmeans", "coreset", "badge", "random")
    out = {}
    for flag in (True, False):
        monkeypatch.setattr(cand_mod, "CONCURRENT_CUDA", flag)
        cand = cand_mod.compute_candidates(pool, names, 30, labeled=lab, seed=3)
        out[flag] = cand.picks.cpu()
    assert torch.equal(out[True], out[False])
