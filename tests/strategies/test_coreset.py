"""select('coreset'): exact k-center greedy, checked in float64."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import _backend
from autoal_fast.strategies import _greedy, coreset, select
from strategy_data import clustered, pool_of


def check_greedy(x, picks, lab=None, rtol=1e-4):
    """Each pick maximises (up to rtol) the float64 min distance to labeled + earlier picks."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if lab is None or len(lab) == 0:
        md = np.full(n, np.inf)
    else:
        lab = np.asarray(lab, dtype=np.float64)
        md = np.full(n, np.inf)
        for a in range(0, len(lab), 256):
            dd = ((x[:, None, :] - lab[None, a:a + 256]) ** 2).sum(-1) ** 0.5
            md = np.minimum(md, dd.min(1))
    chosen = np.zeros(n, bool)
    for t, i in enumerate(picks):
        assert not chosen[i], f"pick {t} repeats {i}"
        if np.isfinite(md).any():
            best = md[~chosen].max()
            assert md[i] >= best - rtol * max(best, 1e-12) - 1e-6, (t, i, md[i], best)
        chosen[i] = True
        md = np.minimum(md, ((x - x[i]) ** 2).sum(1) ** 0.5)


def reference_picks(x, k, lab=None):
    """float64 plain greedy with argmax ties to the lower index."""
    x = np.asarray(x, np.float64)
    n = len(x)
    md = np.full(n, np.inf)
    if lab is not None:
        for l in np.asarray(lab, np.float64):
            md = np.minimum(md, ((x - l) ** 2).sum(1) ** 0.5)
    chosen = np.zeros(n, bool)
    out = []
    for _ in range(k):
        v = np.where(chosen, -1, md)
        i = int(np.argmax(v))
        out.append(i)
        chosen[i] = True
        md = np.minimum(md, ((x - x[i]) ** 2).sum(1) ** 0.5)
    return out


@pytest.mark.parametrize("n,d,nl,k", [(50, 3, 0, 50), (400, 8, 10, 40), (3000, 32, 100, 120),
                                      (2000, 64, 0, 200)])
@pytest.mark.parametrize("kind", ["clustered", "gaussian"])
def test_greedy_property(n, d, nl, k, kind):
    x = clustered(n + nl, d) if kind == "clustered" else \
        np.random.default_rng(1).standard_normal((n + nl, d)).astype(np.float32)
    lab = x[n:] if nl else None
    x = x[:n]
    picks = select("coreset", pool_of(torch.from_numpy(x)), k,
                   labeled=pool_of(torch.from_numpy(lab)) if nl else None)
    assert picks.dtype == torch.long and picks.shape == (k,)
    assert len(set(picks.tolist())) == k
    check_greedy(x, picks.tolist(), lab)
    assert _backend.last_used["coreset"] == "cpp"


def test_first_pick_without_labeled_is_nearest_to_mean():
    x = clustered(500, 6)
    picks = select("coreset", pool_of(torch.from_numpy(x)), 3)
    mean = x.astype(np.float64).mean(0)
    assert int(picks[0]) == int(np.argmin(((x - mean) ** 2).sum(1)))


def test_ties_go_to_lower_index():
    # integer grid: many exactly equal distances
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6), np.arange(3)), -1).reshape(-1, 3)
    x = g.astype(np.float32)
    lab = x[:1].copy()
    picks = select("coreset", pool_of(torch.from_numpy(x)), 40, labeled=pool_of(torch.from_numpy(lab)))
    assert picks.tolist() == reference_picks(x, 40, lab)


def test_duplicates_and_labeled_duplicates():
    base = clustered(30, 5)
    x = np.concatenate([base, base, base])  # every point three times
    lab = base[:10]  # labeled copies of pool points: distance 0
    picks = select("coreset", pool_of(torch.from_numpy(x)), 60, labeled=pool_of(torch.from_numpy(lab)))
    assert len(set(picks.tolist())) == 60
    distinct = [tuple(r) for r in x[picks[:20].numpy()]]
    assert len(set(distinct)) == 20  # the 20 unlabeled distinct points come first
    check_greedy(x, picks.tolist(), lab)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_use_torch_path(dtype):
    x = torch.from_numpy(clustered(600, 16)).to(dtype)
    lab = x[:5].clone()
    picks = select("coreset", pool_of(x[5:]), 50, labeled=pool_of(lab))
    assert _backend.last_used["coreset"] == "torch"
    check_greedy(x[5:].double().numpy(), picks.tolist(), lab.double().numpy())


def test_pruned_equals_full_pass(monkeypatch):
    x = torch.from_numpy(clustered(3000, 16))
    a = select("coreset", pool_of(x), 150)
    assert coreset.last_stats["rows_visited"] < 150 * 3000 / 2  # pruning did something
    monkeypatch.setattr(_greedy, "FULL_PASS_FRACTION", 0.0)
    b = select("coreset", pool_of(x), 150)
    assert coreset.last_stats["full_passes"] == 150
    assert torch.equal(a, b)


def test_memmap_pool_and_small_chunks(tmp_path, monkeypatch):
    x = clustered(2500, 24)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "z.npy", np.zeros((2500, 2), np.float32))
    e = np.load(tmp_path / "e.npy", mmap_mode="r")
    z = np.load(tmp_path / "z.npy", mmap_mode="r")
    monkeypatch.setattr(_greedy, "CHUNK_BYTES", 32768)  # many chunks
    lab = aaf.PoolOutputs(np.zeros((7, 2), np.float32), x[:7].copy())
    picks = select("coreset", aaf.PoolOutputs(z, e), 80, labeled=lab)
    check_greedy(x, picks.tolist(), x[:7])


def test_cpp_step_matches_reference():
    from autoal_fast import _C
    from autoal_fast.kernels.distance import min_dist_update_reference

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1823, 77, generator=g)
    c = torch.randn(77, generator=g)
    mind = torch.rand(1823, generator=g) * 12
    mind[::7] = -1.0
    assign = torch.zeros(1823, dtype=torch.int32)
    m2, a2 = mind.clone(), assign.clone()
    idx = torch.arange(0, 1823, 3)
    dist = torch.empty(idx.numel())
    _C.min_dist_update(x.numpy(), idx.numpy(), c.numpy(), mind.numpy(), assign.numpy(), 5, dist.numpy())
    min_dist_update_reference(x, idx, c, m2, a2, 5)
    torch.testing.assert_close(mind, m2, rtol=1e-6, atol=1e-6)
    assert torch.equal(assign, a2)
    torch.testing.assert_close(dist, (x[idx] - c).norm(dim=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="idx"):
        _C.min_dist_update(x.numpy(), np.array([5000]), c.numpy(), mind.numpy(), assign.numpy(), 1)


TRITON_SCRIPT = textwrap.dedent("""
    import os, torch
    assert os.environ["TRITON_INTERPRET"] == "1"
    from autoal_fast.kernels import distance as kd
    import autoal_fast as aaf
    from autoal_fast import _backend
    from autoal_fast.strategies import select
    g = torch.Generator().manual_seed(0)
    for n, d, dtype in [(131, 77, torch.float32), (64, 128, torch.float32), (97, 200, torch.float16),
                        (5, 3, torch.bfloat16)]:
        x = torch.randn(n, d, generator=g).to(dtype)
        c = torch.randn(d, generator=g)
        for use_idx in (False, True):
            mind = torch.rand(n, generator=g) * 2 * d ** 0.5
            mind[::5] = -1.0
            assign = torch.zeros(n, dtype=torch.int32)
            m2, a2 = mind.clone(), assign.clone()
            idx = torch.arange(0, n, 2) if use_idx else None
            dist = torch.empty(n if idx is None else idx.numel())
            v, i = kd.min_dist_update(x, idx, c, mind, assign, 3, dist)
            v2, i2 = kd.min_dist_update_reference(x, idx, c, m2, a2, 3)
            torch.testing.assert_close(mind, m2, rtol=1e-5, atol=1e-5)
            assert torch.equal(assign, a2), (n, d, dtype, use_idx)
            assert int(i) == int(i2) and abs(float(v) - float(v2)) < 1e-4, (v, i, v2, i2)
    # end to end: coreset through the Triton kernel equals the C++ path's picks
    x = torch.randn(300, 20, generator=g)
    lab = aaf.PoolOutputs(torch.zeros(4, 2), x[:4].clone())
    picks = select("coreset", aaf.PoolOutputs(torch.zeros(296, 2), x[4:]), 12, labeled=lab)
    assert _backend.last_used["coreset"] == "triton"
    print("PICKS", picks.tolist())
""")


def test_triton_kernel_under_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    picks = eval(out.stdout.split("PICKS", 1)[1].strip())
    g = torch.Generator().manual_seed(0)
    # regenerate the same x as the script (same generator draws)
    for n, d, dtype in [(131, 77, torch.float32), (64, 128, torch.float32), (97, 200, torch.float16),
                        (5, 3, torch.bfloat16)]:
        torch.randn(n, d, generator=g)
        torch.randn(d, generator=g)
        for use_idx in (False, True):
            torch.rand(n, generator=g)
    x = torch.randn(300, 20, generator=g)
    lab = aaf.PoolOutputs(torch.zeros(4, 2), x[:4].clone())
    ref = select("coreset", aaf.PoolOutputs(torch.zeros(296, 2), x[4:]), 12, labeled=lab)
    assert picks == ref.tolist()


def test_labeled_validation():
    x = torch.randn(20, 4)
    with pytest.raises(ValueError, match="n_features"):
        select("coreset", pool_of(x), 3, labeled=pool_of(torch.randn(5, 3)))
    with pytest.raises(ValueError, match="embeddings"):
        select("coreset", pool_of(x), 3, labeled=aaf.PoolOutputs(torch.zeros(5, 2)))
