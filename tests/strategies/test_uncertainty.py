"""Uncertainty scores (entropy, margin, least_confidence, var_ratio, bald, mean_std)
against a float64 numpy reference written from docs/method.md.

Tolerances: rtol=1e-4 everywhere (the issue's bar), plus an absolute floor
``ATOL`` per score for values near zero: 1e-7 for the logit scores (float32
ulp scale) and 1e-6 for bald, a difference of two float32 entropies of size
up to log(C) ~ 7. float16/bfloat16 inputs are compared with the reference
evaluated on the same (rounded) values, so the same tolerances hold: the
kernels accumulate in float32 whatever the input type.
"""
import warnings

import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import _backend, strategies
from autoal_fast.strategies.uncertainty import SCORE_NAMES, uncertainty_scores

ATOL = {"entropy": 1e-7, "margin": 1e-7, "least_confidence": 1e-7, "var_ratio": 1e-7, "bald": 1e-6,
        "mean_std": 1e-7}
RTOL = 1e-4


def ref64(logits=None, mc=None):
    """The six scores in float64 numpy, straight from the definitions."""
    out = {}
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        p = np.exp(logp)
        out["entropy"] = -(p * logp).sum(-1)
        ps = np.sort(p, -1)
        out["margin"] = -(ps[:, -1] - ps[:, -2])
        # 1 - max p, summed as the other probabilities: 1.0 - p_max loses the
        # relative precision of tiny values even in float64.
        out["least_confidence"] = ps[:, :-1].sum(-1)
    if mc is not None:
        x = np.asarray(mc, dtype=np.float64)
        t = x.shape[0]
        x = x - x.max(-1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
        p = np.exp(logp)
        a = np.asarray(mc, dtype=np.float64).argmax(-1)  # (T, n), ties to the lower class
        counts = np.array([np.bincount(a[:, i]).max() for i in range(a.shape[1])])
        out["var_ratio"] = 1.0 - counts / t
        pbar = p.mean(0)
        h_bar = -np.where(pbar > 0, pbar * np.log(np.where(pbar > 0, pbar, 1.0)), 0.0).sum(-1)
        out["bald"] = h_bar - (-(p * logp).sum(-1)).mean(0)
        out["mean_std"] = p.std(0).mean(-1)
    return out


def assert_scores(got, want, names=None, rtol=RTOL):
    for nm in names or want:
        g = got[nm]
        assert g.dtype == torch.float32 and g.shape == want[nm].shape, nm
        np.testing.assert_allclose(g.cpu().numpy(), want[nm], rtol=rtol, atol=ATOL[nm], err_msg=nm)


def make(n, c, t, seed=0, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g) * scale).to(dtype)
    x = (torch.randn(t, n, c, generator=g) * scale).to(dtype)
    return z, x


SHAPES = [(1, 2, 2), (37, 2, 3), (200, 10, 5), (64, 1000, 3), (513, 100, 10), (9, 1001, 4)]


@pytest.mark.parametrize("n,c,t", SHAPES)
def test_all_six_match_float64_reference(n, c, t):
    z, x = make(n, c, t)
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x))
    assert set(got) == set(SCORE_NAMES)
    assert_scores(got, ref64(z, x))


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_public_score_one_name(name):
    z, x = make(300, 7, 4, seed=1)
    got = strategies.score(name, aaf.PoolOutputs(z, mc_logits=x))
    assert_scores({name: got}, ref64(z, x), [name])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("c", [2, 1000])
def test_low_and_high_precision_inputs(dtype, c):
    z, x = make(40, c, 3, seed=2, dtype=dtype)
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x))
    assert_scores(got, ref64(z.double(), x.double()))


def test_chunking_gives_the_same_scores():
    z, x = make(1001, 13, 4, seed=3)
    pool = aaf.PoolOutputs(z, mc_logits=x)
    whole = uncertainty_scores(pool)
    row = 4 * 13 * 5 * 8  # float32 bytes per row (1 + T inputs) x eager temporaries factor
    for cb in (row * 97, row * 500):  # 11 and 3 chunks
        part = uncertainty_scores(pool, chunk_bytes=cb)
        for nm in SCORE_NAMES:
            torch.testing.assert_close(part[nm], whole[nm], rtol=0, atol=0)
    one = uncertainty_scores(aaf.PoolOutputs(z[:20], mc_logits=x[:, :20]), chunk_bytes=1)  # a row per chunk
    for nm in SCORE_NAMES:
        torch.testing.assert_close(one[nm], whole[nm][:20], rtol=0, atol=0)


def test_ties_and_uniform_rows():
    c = 6
    z = torch.tensor([[1.0, 3.0, 3.0, 0.0, 0.0, 0.0],  # tied top two: margin 0
                      [2.0] * c,                        # uniform: entropy log C
                      [0.0, 0.0, 5.0, 5.0, 5.0, -1.0]])
    # MC: sample argmaxes per row: (1,2,1,2) -> modal count 2; ties inside a sample go to the lower class
    x = torch.zeros(4, 3, c)
    x[0, 0, 1] = x[2, 0, 1] = 1.0
    x[1, 0, 2] = x[3, 0, 2] = 1.0
    x[:, 1] = torch.tensor([0.0, 2.0, 2.0, 0.0, 0.0, 0.0])  # all tie between class 1 and 2 -> class 1
    x[:, 2, 4] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x))
    want = ref64(z, x)
    assert_scores(got, want)
    assert got["margin"][0] == 0 and got["margin"][1] == 0
    assert abs(float(got["entropy"][1]) - np.log(c)) < 1e-6
    assert got["var_ratio"].tolist() == [0.5, 0.0, 0.0]


def test_confident_rows_keep_relative_precision():
    # least_confidence ~ 5e-13, entropy ~ 1.5e-11: 1 - max p would round to 0 in float32.
    z = torch.tensor([[30.0, 0.0, 0.0, 0.0, 0.0], [0.0, 25.0, 24.9, -3.0, 1.0]])
    got = uncertainty_scores(aaf.PoolOutputs(z), ("entropy", "margin", "least_confidence"))
    want = ref64(z)
    for nm in want:
        np.testing.assert_allclose(got[nm].numpy(), want[nm], rtol=RTOL, atol=0, err_msg=nm)
    assert got["least_confidence"][0] > 0


def test_large_logits_are_stable():
    z, x = make(50, 20, 3, seed=4, scale=1e4)
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x))
    for v in got.values():
        assert torch.isfinite(v).all()
    assert_scores(got, ref64(z, x))


def test_numpy_and_memmap_inputs(tmp_path):
    z, x = make(777, 9, 3, seed=5)
    np.save(tmp_path / "z.npy", z.numpy())
    np.save(tmp_path / "x.npy", x.numpy())
    zm = np.load(tmp_path / "z.npy", mmap_mode="r")
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    # torch warns (once per process) that a read-only memmap gives a
    # non-writable tensor; we only read it. (PoolOutputs could silence it.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        pool = aaf.PoolOutputs(zm, mc_logits=xm)
    got = uncertainty_scores(pool, chunk_bytes=4 * 9 * 4 * 8 * 50)  # ~50-row chunks
    assert isinstance(zm, np.memmap)
    assert_scores(got, ref64(z, x))
    got_np = uncertainty_scores(aaf.PoolOutputs(z.numpy(), mc_logits=x.numpy()))
    for nm in SCORE_NAMES:
        torch.testing.assert_close(got_np[nm], got[nm], rtol=0, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_logits_raise_with_row(bad):
    z, x = make(500, 5, 3, seed=6)
    z[321, 2] = bad
    with pytest.raises(ValueError, match="logits contain NaN/inf at row 321"):
        uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x), chunk_bytes=4 * 5 * 4 * 8 * 40)
    with pytest.raises(ValueError, match="logits contain NaN/inf at row 321"):
        strategies.score("entropy", aaf.PoolOutputs(z))


def test_nonfinite_mc_logits_raise_and_are_not_read_when_unneeded():
    z, x = make(100, 5, 3, seed=7)
    x[2, 77, 0] = float("nan")
    pool = aaf.PoolOutputs(z, mc_logits=x)
    with pytest.raises(ValueError, match=r"mc_logits contain NaN/inf at row 77"):
        uncertainty_scores(pool, ("bald",))
    # entropy alone never reads mc_logits
    assert_scores(uncertainty_scores(pool, ("entropy",)), ref64(z), ["entropy"])


def test_empty_pool():
    pool = aaf.PoolOutputs(torch.zeros(0, 4), mc_logits=torch.zeros(3, 0, 4))
    got = uncertainty_scores(pool)
    assert all(v.shape == (0,) and v.dtype == torch.float32 for v in got.values())
    with pytest.raises(ValueError, match="empty"):
        strategies.score("entropy", pool)


def test_bad_arguments():
    z, x = make(10, 3, 2)
    pool = aaf.PoolOutputs(z)
    with pytest.raises(ValueError, match="mc_logits"):
        uncertainty_scores(pool, ("bald",))
    with pytest.raises(ValueError, match="stochastic"):
        strategies.score("var_ratio", pool)
    with pytest.raises(ValueError, match="names must be drawn from"):
        uncertainty_scores(pool, ("coreset",))
    with pytest.raises(ValueError, match="n_mc >= 2"):
        uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x[:1]), ("mean_std",))
    with pytest.raises(ValueError, match="n_mc"):
        aaf.PoolOutputs(z, n_mc=1)
    with pytest.raises(ValueError, match="chunk_bytes"):
        uncertainty_scores(pool, ("entropy",), chunk_bytes=0)
    with pytest.raises(ValueError, match="backend"):
        uncertainty_scores(pool, ("entropy",), backend="cuda")


def test_select_is_topk_of_score():
    z, x = make(400, 6, 4, seed=8)
    pool = aaf.PoolOutputs(z, mc_logits=x)
    for nm in ("margin", "bald"):
        s = strategies.score(nm, pool)
        idx = strategies.select(nm, pool, 25)
        assert idx.tolist() == aaf.topk(s, 25)[1].tolist()


# ---------------------------------------------------------------- MC dropout
def _head(d=8, c=5, p=0.5):
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.ReLU(), torch.nn.Dropout(p), torch.nn.Linear(16, c))


def test_mc_dropout_seeded_and_equals_documented_procedure():
    g = torch.Generator().manual_seed(9)
    e = torch.randn(300, 8, generator=g)
    head = _head().eval()
    z = head(e).detach()
    pool = aaf.PoolOutputs(z, embeddings=e, head=head, n_mc=6)
    a = uncertainty_scores(pool, seed=5)
    b = uncertainty_scores(pool, seed=5)
    c = uncertainty_scores(pool, seed=6)
    for nm in SCORE_NAMES:
        torch.testing.assert_close(a[nm], b[nm], rtol=0, atol=0)
    assert not torch.equal(a["bald"], c["bald"])
    # The documented procedure, in one chunk: seed the CPU generator, train mode, n_mc passes.
    state = torch.random.get_rng_state()
    torch.manual_seed(5)
    head.train()
    with torch.no_grad():
        mc = torch.stack([head(e) for _ in range(6)])
    head.eval()
    torch.random.set_rng_state(state)
    assert_scores(a, ref64(z, mc))


def test_mc_dropout_chunked_is_reproducible_and_restores_state():
    e = torch.randn(500, 8)
    head = _head()
    head.train()
    head[2].eval()  # mixed flags must come back as they were
    flags = [m.training for m in head.modules()]
    pool = aaf.PoolOutputs(torch.randn(500, 5), embeddings=e, head=head, n_mc=3)
    rng_before = torch.random.get_rng_state()
    a = uncertainty_scores(pool, ("var_ratio", "bald", "mean_std"), chunk_bytes=40_000)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # caller's RNG untouched
    assert [m.training for m in head.modules()] == flags
    b = uncertainty_scores(pool, ("var_ratio", "bald", "mean_std"), chunk_bytes=40_000)
    for nm in a:
        torch.testing.assert_close(a[nm], b[nm], rtol=0, atol=0)
    assert (a["mean_std"] > 0).all()  # dropout is active: the passes differ


def test_mc_dropout_errors_restore_flags():
    e = torch.randn(20, 8)
    bad = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(8, 4))  # 4 classes, logits have 5
    bad.eval()
    pool = aaf.PoolOutputs(torch.randn(20, 5), embeddings=e, head=bad)
    with pytest.raises(ValueError, match="pool.head must map"):
        uncertainty_scores(pool, ("bald",))
    assert not any(m.training for m in bad.modules())
    nan_head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(8, 5))
    with torch.no_grad():
        nan_head[1].bias[0] = float("nan")
    pool = aaf.PoolOutputs(torch.randn(20, 5), embeddings=e, head=nan_head)
    with pytest.raises(ValueError, match="MC-dropout logits from pool.head contain NaN/inf at row 0"):
        uncertainty_scores(pool, ("mean_std",))


# ---------------------------------------------------------------- backends
def test_backend_is_recorded():
    from autoal_fast.kernels import uncertainty as K

    z, x = make(50, 4, 2)
    pool = aaf.PoolOutputs(z, mc_logits=x)
    uncertainty_scores(pool)
    assert _backend.last_used["uncertainty"] == ("c" if K.has_c() else "torch-eager")
    uncertainty_scores(pool, backend="eager")
    assert _backend.last_used["uncertainty"] == "torch-eager"


@pytest.mark.parametrize("backend", ["c", "eager"])
def test_cpu_backends_agree(backend):
    from autoal_fast.kernels import uncertainty as K

    if backend == "c" and not K.has_c():
        pytest.skip("autoal_fast._C is not built")
    z, x = make(3001, 50, 6, seed=12)
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x), backend=backend, chunk_bytes=4 * 50 * 7 * 8 * 400)
    assert_scores(got, ref64(z, x))


def test_compiled_cpu_path_all_six():
    """The CPU production path (torch.compile, chunked, uneven last chunk)."""
    z, x = make(2003, 100, 5, seed=10)
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x), backend="compile", chunk_bytes=4 * 100 * 6 * 3 * 700)
    assert _backend.last_used["uncertainty"] == "torch.compile"
    assert_scores(got, ref64(z, x))


@pytest.mark.slow
@pytest.mark.parametrize("names", [("entropy", "margin", "least_confidence"), ("var_ratio", "bald", "mean_std")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_cpu_path_halves_and_dtypes(names, dtype):
    z, x = make(1500, 1000, 3, seed=11, dtype=dtype)
    got = uncertainty_scores(aaf.PoolOutputs(z, mc_logits=x), names, backend="compile")
    assert_scores(got, ref64(z.double(), x.double()), names)
