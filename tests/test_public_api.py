"""The public surface of architecture.md exists and reports its backends."""
import torch

import autoal_fast as aaf


def test_public_names():
    for name in ("__version__", "topk", "TopK", "PoolOutputs", "AutoAL", "QueryResult", "strategies",
                 "backend_report"):
        assert hasattr(aaf, name), name
    assert set(aaf.__all__) >= {"topk", "PoolOutputs", "AutoAL", "strategies"}


def test_backend_report_names_what_ran():
    pool = aaf.PoolOutputs(torch.randn(200, 5), torch.randn(200, 8))
    aaf.strategies.select("kmeans", pool, 5, seed=0)
    aaf.strategies.select("entropy", pool, 5)
    rep = aaf.backend_report()
    assert rep["last_used"]["kmeans"] in ("faiss-cpu", "faiss-gpu", "torch")
    assert "uncertainty" in rep["last_used"]
