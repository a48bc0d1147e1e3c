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


def reference_picks(x, k, lab=None, first=None):
    """float64 plain greedy with argmax ties to the lower index (pick 0 = first if given)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    md = np.full(n, np.inf)
    if lab is not None:
        for l in np.asarray(lab, np.float64):
            md = np.minimum(md, ((x - l) ** 2).sum(1) ** 0.5)
    chosen = np.zeros(n, bool)
    out = []
    for t in range(k):
        v = np.where(chosen, -1, md)
        i = int(np.argmax(v)) if t or first is None else first
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


@pytest.mark.parametrize("dtype,backend", [(torch.float16, "cpp"), (torch.bfloat16, "cpp"),
                                           (torch.float64, "torch")])
def test_other_dtypes(dtype, backend):
    x = torch.from_numpy(clustered(600, 16)).to(dtype)
    lab = x[:5].clone()
    picks = select("coreset", pool_of(x[5:]), 50, labeled=pool_of(lab))
    assert _backend.last_used["coreset"] == backend
    check_greedy(x[5:].double().numpy(), picks.tolist(), lab.double().numpy())


def test_pruned_equals_full_pass(monkeypatch):
    monkeypatch.setattr(coreset, "LAZY", False)
    x = torch.from_numpy(clustered(3000, 16))
    a = select("coreset", pool_of(x), 150)
    assert coreset.last_stats["rows_visited"] < 150 * 3000 / 2  # pruning did something
    monkeypatch.setattr(_greedy, "FULL_PASS_FRACTION", 0.0)
    b = select("coreset", pool_of(x), 150)
    assert coreset.last_stats["full_passes"] == 150
    assert torch.equal(a, b)


def plain_greedy_picks(monkeypatch, pool, k, labeled=None):
    """The one-full-pass-per-step greedy (C++ fused step on every row, every step)."""
    with monkeypatch.context() as mp:
        mp.setattr(coreset, "LAZY", False)
        mp.setattr(_greedy, "FULL_PASS_FRACTION", 0.0)
        picks = select("coreset", pool, k, labeled=labeled)
        assert coreset.last_stats["full_passes"] == k
    return picks


def _lazy_case(kind, n, d, seed):
    g = np.random.default_rng(seed)
    if kind == "isotropic":
        return g.standard_normal((n, d)).astype(np.float32)
    if kind == "clustered":
        return clustered(n, d, seed=seed)
    if kind == "duplicates":  # every row several times, in shuffled order
        base = clustered(max(1, n // 4), d, seed=seed)
        return base[g.integers(0, len(base), n)]
    # "ties": small integer grid values, so many distances are exactly equal
    return g.integers(-2, 3, (n, d)).astype(np.float32)


@pytest.mark.parametrize("kind", ["isotropic", "clustered", "duplicates", "ties"])
@pytest.mark.parametrize("n,d,nl,k", [(1, 3, 0, 1), (7, 2, 0, 7), (300, 5, 0, 300), (2000, 33, 0, 150),
                                      (1500, 64, 1, 200), (3000, 16, 400, 250)])
def test_lazy_equals_plain_greedy(monkeypatch, kind, n, d, nl, k):
    x = _lazy_case(kind, n + nl, d, seed=n + d + nl)
    pool = pool_of(torch.from_numpy(x[:n]))
    lab = pool_of(torch.from_numpy(x[n:])) if nl else None
    a = select("coreset", pool, k, labeled=lab)
    assert coreset.last_stats.get("lazy") and _backend.last_used["coreset"] == "cpp"
    b = plain_greedy_picks(monkeypatch, pool, k, lab)
    assert a.tolist() == b.tolist()
    if kind == "ties":  # integer data: float32 distances of small integers are exact enough
        assert a.tolist() == reference_picks(x[:n], k, x[n:] if nl else None, None if nl else int(a[0]))


def test_lazy_many_labeled_and_all_labeled_duplicates(monkeypatch):
    x = clustered(12_000, 24, seed=5)
    pool, lab = pool_of(torch.from_numpy(x[:2000])), pool_of(torch.from_numpy(x[2000:]))  # 10k labeled
    a = select("coreset", pool, 100, labeled=lab)
    assert a.tolist() == plain_greedy_picks(monkeypatch, pool, 100, lab).tolist()
    # the whole pool duplicated in the labeled set: every distance 0, ties to the lower index
    base = x[:50]
    a = select("coreset", pool_of(torch.from_numpy(base)), 50, labeled=pool_of(torch.from_numpy(base.copy())))
    assert a.tolist() == list(range(50))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["isotropic", "clustered", "duplicates"])
def test_lazy_16bit_equals_plain_greedy(monkeypatch, dtype, kind):
    x = torch.from_numpy(_lazy_case(kind, 2600, 40, seed=11)).to(dtype)
    for nl in (0, 100):
        pool, lab = pool_of(x[:2500]), (pool_of(x[2500:2500 + nl]) if nl else None)
        a = select("coreset", pool, 200, labeled=lab)
        assert coreset.last_stats.get("lazy")
        assert a.tolist() == plain_greedy_picks(monkeypatch, pool, 200, lab).tolist()
        check_greedy(x[:2500].double().numpy(), a.tolist(), x[2500:2500 + nl].double().numpy() if nl else None)


def test_lazy_refreshes_fewer_rows_than_passes():
    x = torch.from_numpy(clustered(20_000, 32))
    select("coreset", pool_of(x), 300)
    assert coreset.last_stats["rows_visited"] < 0.6 * 300 * 20_000  # measured: 0.52


def test_kcenter_lazy_argument_errors():
    from autoal_fast import _C

    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="k must be"):
        _C.kcenter_lazy(x, np.zeros(5, np.float32), np.zeros(5, np.int32), 0, 6)
    with pytest.raises(ValueError, match="mind"):
        _C.kcenter_lazy(x, np.zeros(4, np.float32), np.zeros(5, np.int32), 0, 2)
    with pytest.raises(ValueError, match="first"):
        _C.kcenter_lazy(x, np.zeros(5, np.float32), np.zeros(5, np.int32), 0, 2, 5)
    picks, _ = _C.kcenter_lazy(x, np.full(5, -1.0, np.float32), np.zeros(5, np.int32), 0, 2)
    assert picks.tolist() == [-1, -1]  # nothing pickable


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


# ------------------------------------------------------------- 16-bit rows in the C++ step
def step16(x16, idx, c, mind, assign, cid, dist_out=None):
    """The C++ step on a float16 numpy array or a bfloat16 tensor (as its int16 bits)."""
    from autoal_fast import _C

    bf = isinstance(x16, torch.Tensor)
    xn = x16.view(torch.int16).numpy() if bf else x16
    _C.min_dist_update(xn, idx, c, mind, assign, cid, dist_out, bfloat16=bf)


def reference_step64(x64, idx, c, mind, assign, cid):
    """float64 numpy reference of the step (x already upcast); returns the distances."""
    rows = np.arange(len(x64)) if idx is None else idx
    dist = np.sqrt(((x64[rows] - c.astype(np.float64)) ** 2).sum(1))
    old = mind[rows].astype(np.float64)
    upd = (old >= 0) & (dist < old)
    mind[rows[upd]] = dist[upd]
    assign[rows[upd]] = cid
    return dist


@pytest.mark.parametrize("n,d", [(1, 1), (40, 5), (300, 16), (513, 77), (257, 512), (130, 515),
                                 (64, 1000)])
@pytest.mark.parametrize("rows", ["all", "subset", "empty"])
@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_cpp_step_16bit_matches_float64_reference(n, d, rows, fmt):
    from autoal_fast import _C

    g = np.random.default_rng(n * 1000 + d)

    def to16(a):  # float16 numpy array, or bfloat16 tensor
        return a.astype(np.float16) if fmt == "float16" else torch.from_numpy(a).bfloat16()

    def up64(a16):
        return a16.astype(np.float64) if fmt == "float16" else a16.double().numpy()

    c = up64(to16(g.standard_normal(d).astype(np.float32))).astype(np.float32)  # representable
    x = g.standard_normal((n, d)).astype(np.float32) * 2
    ids = np.arange(n)
    chosen = ids % 7 == 0  # mind < 0: left alone
    tie = (ids % 9 == 4) & ~chosen
    if d >= 2:  # exact ties: rows at distance exactly 5 (3-4-5), mind exactly 5: no update
        c[:2] = np.round(c[:2])
        x[tie] = c
        x[tie, :2] += np.array([3.0, 4.0], np.float32)
    else:
        tie[:] = False
    x16 = to16(x)
    x64 = up64(x16)
    mind = (g.random(n) * 3 * d ** 0.5).astype(np.float32)
    mind[chosen] = -1.0
    mind[tie] = 5.0
    assign = g.integers(0, 4, n).astype(np.int32)
    idx = {"all": None, "subset": np.sort(g.choice(n, (n + 1) // 2, replace=False)).astype(np.int64),
           "empty": np.empty(0, np.int64)}[rows]
    visited = ids if idx is None else idx
    mind_in, assign_in = mind.copy(), assign.copy()
    mind64, assign64 = mind.copy(), assign.copy()
    dist = np.full(len(visited), np.nan, np.float32)
    step16(x16, idx, c, mind, assign, 9, dist)
    ref = reference_step64(x64, idx, c, mind64, assign64, 9)
    np.testing.assert_allclose(dist, ref, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(mind, mind64, rtol=2e-6, atol=1e-6)
    assert (mind[chosen] == -1.0).all() and (assign[chosen] == assign_in[chosen]).all()
    assert (mind[tie] == 5.0).all() and (assign[tie] == assign_in[tie]).all()
    assert (dist[tie[visited]] == 5.0).all()
    # the update decision matches float64 except where float32 rounding could flip it
    near = np.zeros(n, bool)
    near[visited] = np.abs(ref - mind_in[visited]) <= 1e-5 * np.abs(ref)
    near[tie] = False  # exact ties are decided exactly
    np.testing.assert_array_equal(assign[~near], assign64[~near])
    # bit-for-bit the float32 path on the upcast rows
    m32, a32 = mind_in.copy(), assign_in.copy()
    dist32 = np.full(len(visited), np.nan, np.float32)
    _C.min_dist_update(x64.astype(np.float32), idx, c, m32, a32, 9, dist32)
    assert np.array_equal(dist, dist32) and np.array_equal(mind, m32) and np.array_equal(assign, a32)


def test_cpp_step_widens_every_float16_value_exactly():
    from autoal_fast import _C

    v = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(-1, 1)
    for cv in (0.0, -3.5, 1000.0):  # two centres pin the value down, sign included
        c = np.array([cv], np.float32)
        out = []
        for x in (v, v.astype(np.float32)):
            mind, assign = np.full(len(v), np.inf, np.float32), np.zeros(len(v), np.int32)
            dist = np.empty(len(v), np.float32)
            _C.min_dist_update(x, None, c, mind, assign, 1, dist)
            out.append(dist)
        assert np.array_equal(out[0], out[1], equal_nan=True), cv


def test_cpp_step_row_format_errors():
    from autoal_fast import _C

    mind, assign, c = np.zeros(4, np.float32), np.zeros(4, np.int32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="float32 or float16"):
        _C.min_dist_update(np.zeros((4, 3)), None, c, mind, assign, 0)
    with pytest.raises(ValueError, match="float32 or float16"):
        _C.min_dist_update(np.zeros((4, 3), np.int16), None, c, mind, assign, 0)
    with pytest.raises(ValueError, match="bfloat16=True"):
        _C.min_dist_update(np.zeros((4, 3), np.float16), None, c, mind, assign, 0, bfloat16=True)
    with pytest.raises(ValueError, match="unit stride"):
        _C.min_dist_update(np.zeros((3, 4), np.float16).T, None, c, mind, assign, 0)
    with pytest.raises(ValueError, match="byte order"):
        _C.min_dist_update(np.zeros((4, 3), ">f2"), None, c, mind, assign, 0)


def torch_path_picks(monkeypatch, pool, k, labeled=None):
    """Picks with the C++ step unavailable (the torch reference step)."""
    with monkeypatch.context() as mp:
        mp.setattr(_greedy, "load_ext", lambda: None)
        picks = select("coreset", pool, k, labeled=labeled)
    assert _backend.last_used["coreset"] == "torch"
    return picks


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,d,nl,k", [(2000, 77, 30, 150), (4000, 128, 0, 200)])
def test_16bit_pool_cpp_picks_equal_torch_path(monkeypatch, dtype, n, d, nl, k):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(n + nl, d, generator=g).to(dtype)
    pool = pool_of(x[:n])
    lab = pool_of(x[n:]) if nl else None
    a = select("coreset", pool, k, labeled=lab)
    assert _backend.last_used["coreset"] == "cpp"
    b = torch_path_picks(monkeypatch, pool, k, lab)
    assert torch.equal(a, b)


def test_float16_memmap_pool_read_in_place(tmp_path, monkeypatch):
    x = np.random.default_rng(3).standard_normal((3000, 40)).astype(np.float16)
    np.save(tmp_path / "e.npy", x)
    e = np.load(tmp_path / "e.npy", mmap_mode="r")
    pool = aaf.PoolOutputs(np.zeros((3000, 2), np.float32), e)
    metric = _greedy.EuclideanRows(pool.embeddings)
    assert metric.backend == "cpp" and np.shares_memory(metric._xn, e)  # no copy
    lab = aaf.PoolOutputs(np.zeros((5, 2), np.float32), x[:5].astype(np.float32))
    monkeypatch.setattr(_greedy, "CHUNK_BYTES", 1 << 15)
    a = select("coreset", pool, 60, labeled=lab)
    assert _backend.last_used["coreset"] == "cpp"
    b = torch_path_picks(monkeypatch, pool, 60, lab)
    assert torch.equal(a, b)
    check_greedy(x.astype(np.float64), a.tolist(), x[:5])


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


# --------------------------------------------------------------------------- labeled init
def exact_nearest(x, lab):
    """float64 difference-form nearest labeled row: (squared distances (n, m), argmin, float32 mind)."""
    x = np.asarray(x, np.float64)
    lab = np.asarray(lab, np.float64)
    d2 = np.concatenate([((x[lo:lo + 256, None, :] - lab[None]) ** 2).sum(-1)
                         for lo in range(0, len(x), 256)]) if len(x) else np.zeros((0, len(lab)))
    arg = d2.argmin(1) if len(x) else np.zeros(0, np.int64)
    return d2, arg, np.sqrt(d2[np.arange(len(x)), arg]).astype(np.float32)


def check_init(x, lab, mind, assign, exact_ties=False):
    """mind is the float64 nearest distance rounded to float32; assign a nearest row
    (the lowest-index one where distances are exact, e.g. integer data)."""
    d2, arg, ref = exact_nearest(x, lab)
    mind, assign = mind.numpy(), assign.numpy().astype(np.int64)
    np.testing.assert_allclose(mind, ref, rtol=1e-6, atol=0)
    rows = np.arange(len(x))
    best = d2[rows, arg]
    assert np.all(d2[rows, assign] <= best * (1 + 1e-12)), "assign is not a nearest labeled row"
    if exact_ties:
        assert assign.tolist() == arg.tolist()


def _init_case(kind, n, d, seed):
    if kind == "dup_labeled":  # labeled rows repeated, pool rows on labeled rows
        g = np.random.default_rng(seed)
        base = clustered(max(1, n // 8), d, seed=seed)
        return base[g.integers(0, len(base), n)]
    return _lazy_case(kind, n, d, seed)


@pytest.mark.parametrize("kind", ["isotropic", "clustered", "duplicates", "ties", "dup_labeled"])
@pytest.mark.parametrize("n,d,m", [(1, 3, 1), (50, 2, 1), (300, 7, 10), (2000, 33, 300), (3000, 64, 1000)])
def test_pruned_init_equals_nearest_centres(kind, n, d, m):
    x = _init_case(kind, n + m, d, seed=3 * n + d + m)
    pool, lab = torch.from_numpy(x[:n]), torch.from_numpy(x[n:]).contiguous()
    ref_m, ref_a = coreset.nearest_centres(pool, lab)
    check_init(x[:n], x[n:], ref_m, ref_a, exact_ties=kind in ("ties", "dup_labeled", "duplicates"))
    for prune in ("always", "auto"):
        mind, assign = coreset.nearest_labeled(pool, lab, prune=prune)
        assert coreset.last_init_stats["path"] == ("pruned" if prune == "always" or
                                                   (m >= coreset.PRUNED_INIT_MIN_LABELED and
                                                    coreset.last_init_stats.get("members_per_row") is not None)
                                                   else "plain")
        assert torch.equal(mind, ref_m), (prune, int((mind != ref_m).sum()))
        assert torch.equal(assign, ref_a), (prune, int((assign != ref_a).sum()))


@pytest.mark.parametrize("seed", range(4))
def test_pruned_init_fresh_random_inputs(seed):
    """Random sizes, spreads and cluster counts; the pruned init against the plain one and float64."""
    g = np.random.default_rng(100 + seed)
    n, m, d = int(g.integers(1, 3000)), int(g.integers(1, 700)), int(g.integers(1, 130))
    x = clustered(n + m, d, n_clusters=int(g.integers(1, 60)), seed=seed) * float(g.uniform(0.01, 50))
    x += float(g.uniform(-100, 100))  # far from the origin: the squared form cancels badly
    pool, lab = torch.from_numpy(x[:n]), torch.from_numpy(x[n:]).contiguous()
    ref_m, ref_a = coreset.nearest_centres(pool, lab)
    mind, assign = coreset.nearest_labeled(pool, lab, prune="always")
    assert torch.equal(mind, ref_m) and torch.equal(assign, ref_a)
    check_init(x[:n], x[n:], mind, assign)


def test_pruned_init_prunes_clustered_and_falls_back_on_isotropic():
    x = clustered(6000, 64, n_clusters=40, seed=2)
    pool, lab = torch.from_numpy(x[:5000]), torch.from_numpy(x[5000:]).contiguous()
    coreset.nearest_labeled(pool, lab)
    st = coreset.last_init_stats
    assert st["path"] == "pruned" and st["members_per_row"] < 0.1 * 1000, st
    y = torch.from_numpy(np.random.default_rng(0).standard_normal((6000, 256)).astype(np.float32))
    mind, assign = coreset.nearest_labeled(y[:5000], y[5000:].contiguous())
    st = coreset.last_init_stats
    assert st["path"] == "plain" and st["probe_members_per_row"] > 0.5 * 1000, st
    ref = coreset.nearest_centres(y[:5000], y[5000:].contiguous())
    assert torch.equal(mind, ref[0]) and torch.equal(assign, ref[1])


def test_init_zero_and_ten_thousand_labeled_and_empty_pool():
    x = clustered(11_500, 24, seed=5)
    pool, lab = torch.from_numpy(x[:1500]), torch.from_numpy(x[1500:]).contiguous()  # 10k labeled
    mind, assign = coreset.nearest_labeled(pool, lab)
    assert coreset.last_init_stats["path"] == "pruned"
    ref = coreset.nearest_centres(pool, lab)  # 3 matmul column blocks of <= 4096
    assert torch.equal(mind, ref[0]) and torch.equal(assign, ref[1])
    check_init(x[:1500], x[1500:], mind, assign)
    mind, assign = coreset.nearest_labeled(pool, lab[:0])
    assert torch.isinf(mind).all() and (assign == -1).all() and mind.shape == (1500,)
    for prune in ("auto", "always"):
        mind, assign = coreset.nearest_labeled(pool[:0], lab, prune=prune)
        assert mind.shape == (0,) and assign.shape == (0,)


def test_nearest_centres_ties_across_column_blocks():
    lab = clustered(9000, 8, seed=1)
    lab[4500] = lab[10]  # same row in the first and second 4096-column block
    lab[8999] = lab[4100]
    pool = np.stack([lab[10], lab[4100], lab[8999]])
    for fn in (coreset.nearest_centres, lambda p, c: coreset.nearest_labeled(p, c, prune="always")):
        mind, assign = fn(torch.from_numpy(pool), torch.from_numpy(lab))
        assert assign.tolist() == [10, 4100, 4100] and mind.tolist() == [0.0, 0.0, 0.0]


def test_nearest_centres_settles_float32_near_ties_in_float64():
    """Far from the origin the float32 squared form cannot tell two nearly equidistant
    centres apart; the float64 winner must come out anyway (fails with a bare argmin)."""
    g = np.random.default_rng(7)
    d, n = 16, 400
    off = np.full(d, 3000.0)
    cents = (off + g.standard_normal((2, d))).astype(np.float32)
    # pool rows on the bisector of the two centres, nudged by a tiny amount to either side
    mid = (cents[0].astype(np.float64) + cents[1]) / 2
    u = (cents[1].astype(np.float64) - cents[0]) / np.linalg.norm(cents[1].astype(np.float64) - cents[0])
    basis = np.linalg.qr(np.column_stack([u, g.standard_normal((d, d - 1))]))[0][:, 1:]
    x = mid + g.standard_normal((n, d - 1)) @ basis.T + np.outer(g.uniform(-1e-3, 1e-3, n), u)
    x = x.astype(np.float32)
    lab = np.concatenate([cents, (off + 50 * g.standard_normal((30, d))).astype(np.float32)])
    _, arg, ref = exact_nearest(x, lab)
    mind, assign = coreset.nearest_centres(torch.from_numpy(x), torch.from_numpy(lab))
    assert assign.numpy().tolist() == arg.tolist()
    np.testing.assert_array_equal(mind.numpy(), ref)
    lab_t = torch.from_numpy(lab)
    bare = torch.addmm(lab_t.pow(2).sum(1)[None], torch.from_numpy(x), lab_t.T, alpha=-2.0).argmin(1)
    assert (bare.numpy() != arg).any()  # the case is hard: a bare float32 argmin gets some wrong
    m2, a2 = coreset.nearest_labeled(torch.from_numpy(x), lab_t, prune="always")
    assert torch.equal(m2, mind) and torch.equal(a2, assign)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["isotropic", "clustered", "duplicates"])
def test_pruned_init_16bit_pools(dtype, kind):
    x = torch.from_numpy(_init_case(kind, 2400, 40, seed=21)).to(dtype)
    pool, lab = x[:2000], x[2000:].to(torch.float32).contiguous()
    ref_m, ref_a = coreset.nearest_centres(pool, lab)
    mind, assign = coreset.nearest_labeled(pool, lab, prune="always")
    assert coreset.last_init_stats["path"] == "pruned"
    assert torch.equal(mind, ref_m) and torch.equal(assign, ref_a)
    check_init(pool.double().numpy(), lab.double().numpy(), mind, assign)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_coreset_picks_with_pruned_init_equal_plain_greedy(monkeypatch, dtype):
    monkeypatch.setattr(coreset, "PRUNED_INIT_MIN_LABELED", 1)
    x = torch.from_numpy(clustered(4400, 48, n_clusters=30, seed=9)).to(dtype)
    pool, lab = pool_of(x[:4000]), pool_of(x[4000:])
    a = select("coreset", pool, 200, labeled=lab)
    assert coreset.last_stats.get("lazy") and coreset.last_init_stats["path"] == "pruned"
    assert a.tolist() == plain_greedy_picks(monkeypatch, pool, 200, lab).tolist()


def test_nearest_labeled_pruned_argument_errors():
    from autoal_fast import _C

    x = np.zeros((3, 2), np.float32)
    lab = np.zeros((2, 2), np.float32)
    ok = dict(lab_id=np.arange(2, dtype=np.int64), start=np.array([0, 2], np.int64),
              dots=np.zeros((3, 1), np.float32), anchor_sq=np.zeros(1), radius=np.zeros(1),
              unit=2.0 ** -24, mind=np.zeros(3, np.float32), assign=np.zeros(3, np.int32))
    assert _C.nearest_labeled_pruned(x, lab, **ok) == 6
    two = dict(dots=np.zeros((3, 2), np.float32), anchor_sq=np.zeros(2), radius=np.zeros(2))
    for bad, msg in [(dict(start=np.array([0, 2, 2], np.int64), **two), "no empty group"),
                     (dict(start=np.array([0, 1], np.int64)), "from 0 to nl"),
                     (dict(dots=np.zeros((3, 2), np.float32)), "dots has the wrong shape"),
                     (dict(radius=-np.ones(1)), "radius"),
                     (dict(mind=np.zeros(3)), "mind must be"),
                     (dict(unit=0.5), "unit")]:
        with pytest.raises(ValueError, match=msg):
            _C.nearest_labeled_pruned(x, lab, **{**ok, **bad})
