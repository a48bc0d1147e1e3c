"""kernels/uncertainty.py: the Triton kernel and the fused torch expression
against the plain torch reference (float64) on odd shapes x dtypes.

The Triton tests need CUDA or TRITON_INTERPRET=1, which must be set before
triton is imported. In a plain ``python -m pytest`` run (no GPU) the test
``test_triton_kernel_under_interpreter`` re-runs this file in a subprocess with
TRITON_INTERPRET=1, so the default run exercises the kernel on CPU.

Tolerances: rtol=1e-4 with an absolute floor of 1e-6 (bald: 2e-6) against the
float64 reference of the same (possibly rounded fp16/bf16) input values; the
kernels read any float type and accumulate in float32.
"""
import os
import subprocess
import sys

import pytest
import torch

from autoal_fast import _backend
from autoal_fast.kernels import uncertainty as K

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAS_CUDA = torch.cuda.is_available()
TRITON_OK = _backend.has_triton() and (INTERPRET or HAS_CUDA)
DEVICE = "cuda" if HAS_CUDA and not INTERPRET else "cpu"

needs_triton = pytest.mark.skipif(not TRITON_OK, reason="needs CUDA or TRITON_INTERPRET=1 (see test_triton_kernel_under_interpreter)")

# (n, C, T): tiny, C=2, one class block, C=1000 and 1001 (one 1024-wide block,
# masked tail), C=3000 wider than a block (looped classes for the logits and the
# two-phase MC path), odd everywhere.
SHAPES = [(1, 2, 2), (37, 2, 3), (50, 7, 5), (33, 1000, 4), (37, 1001, 3), (5, 3000, 2), (130, 100, 10)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# The interpreter is slow: every shape in float32, the half types on a few.
TRITON_CASES = [(*s, torch.float32) for s in SHAPES] + [
    (37, 1001, 3, torch.float16), (50, 7, 5, torch.bfloat16), (5, 3000, 2, torch.bfloat16)]


def make(n, c, t, dtype, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g) * scale).to(dtype)
    x = (torch.randn(t, n, c, generator=g) * scale).to(dtype)
    return z.to(DEVICE), x.to(DEVICE)


def worst(got, want):
    """The worst element, for failure messages."""
    err = (got.double() - want).abs() / (want.abs() + 1e-6)
    i = int(err.argmax())
    return f"row {i}: got {float(got[i])!r}, want {float(want[i])!r}"


def check(scores, z, x, names=K.SCORE_NAMES):
    ref = K.reference_scores(z, x, names, dtype=torch.float64)
    for nm in names:
        got = scores[nm]
        assert got.dtype == torch.float32 and got.shape == ref[nm].shape, nm
        atol = 2e-6 if nm == "bald" else 1e-6
        ok = torch.allclose(got.double(), ref[nm], rtol=1e-4, atol=atol)
        assert ok, f"{nm}: {worst(got, ref[nm])}"


# ------------------------------------------------------------- Triton kernel
@needs_triton
@pytest.mark.parametrize("n,c,t,dtype", TRITON_CASES)
def test_triton_matches_reference(n, c, t, dtype):
    z, x = make(n, c, t, dtype)
    scores, flags = K.fused_scores_triton(z, x, True, True)
    assert flags.shape == (n,) and int(flags.abs().sum()) == 0
    check(scores, z, x)


@needs_triton
@pytest.mark.parametrize("do_logits,do_mc", [(True, False), (False, True)])
@pytest.mark.parametrize("c", [7, 1001])
def test_triton_halves(do_logits, do_mc, c):
    z, x = make(21, c, 3, torch.float32, seed=1)
    names = K.LOGIT_NAMES if do_logits else K.MC_NAMES
    scores, flags = K.fused_scores_triton(z if do_logits else None, x if do_mc else None, do_logits, do_mc)
    assert set(scores) == set(names)
    check(scores, z, x, names)


@needs_triton
def test_triton_strided_inputs():
    # Non-contiguous views: transposed logits, mc sliced along the sample axis.
    g = torch.Generator().manual_seed(2)
    zt = torch.randn(11, 29, generator=g).to(DEVICE)  # (C, n)
    z = zt.t()
    xb = torch.randn(4, 60, 11, generator=g).to(DEVICE)
    x = xb[:, 10:39]
    assert not z.is_contiguous() and not x.is_contiguous()
    scores, _ = K.fused_scores_triton(z, x, True, True)
    check(scores, z, x)


@needs_triton
@pytest.mark.parametrize("c", [6, 1001])
def test_triton_flags_nonfinite_rows(c):
    z, x = make(9, c, 3, torch.float32, seed=3)
    z[2, c - 1] = float("nan")
    z[4, 0] = float("inf")
    x[1, 5, 2] = -float("inf")
    x[2, 4, c // 2] = float("nan")
    _, flags = K.fused_scores_triton(z, x, True, True)
    assert flags.tolist() == [0, 0, K.BAD_LOGITS, 0, K.BAD_LOGITS | K.BAD_MC, K.BAD_MC, 0, 0, 0]


@needs_triton
def test_triton_ties_go_to_the_lower_class():
    z = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], device=DEVICE)
    x = torch.zeros(3, 2, 4, device=DEVICE)
    x[0, 0, 1] = x[0, 0, 2] = 1.0  # tie: class 1
    x[1, 0, 1] = 1.0
    x[2, 0, 2] = 1.0
    scores, _ = K.fused_scores_triton(z, x, True, True)
    assert scores["margin"].tolist() == [0.0, 0.0]
    assert scores["var_ratio"][0].item() == pytest.approx(1 - 2 / 3)
    check(scores, z, x)


@needs_triton
def test_triton_empty():
    z = torch.zeros(0, 5, device=DEVICE)
    x = torch.zeros(2, 0, 5, device=DEVICE)
    scores, flags = K.fused_scores_triton(z, x, True, True)
    assert flags.shape == (0,) and all(v.shape == (0,) for v in scores.values())


@needs_triton
@pytest.mark.parametrize("n,c,t", [(37, 2, 3), (50, 8, 5), (33, 1000, 4), (9, 1024, 2), (37, 1001, 3)])
def test_triton_one_block_path_equals_looped_path(n, c, t):
    # the two-reduction one-block path against the online-rescaling looped path
    # (forced with ONE_BLOCK=False), and both against the float64 reference
    z, x = make(n, c, t, torch.float32, seed=4)
    fast, f1 = K.fused_scores_triton(z, x, True, True)
    slow, f2 = K.fused_scores_triton(z, x, True, True, ONE_BLOCK=False)
    assert f1.tolist() == f2.tolist() == [0] * n
    check(fast, z, x)
    check(slow, z, x)
    for nm in K.SCORE_NAMES:
        torch.testing.assert_close(fast[nm], slow[nm], rtol=1e-5, atol=1e-6)


@needs_triton
@pytest.mark.parametrize("vec", [1, 4])
@pytest.mark.parametrize("block_n", [1, 4])
def test_triton_launch_overrides_agree(vec, block_n):
    # rows past N are clamped to N - 1 on load: BLOCK_N that does not divide n
    z, x = make(10, 1000, 2, torch.float32, seed=5)
    got, flags = K.fused_scores_triton(z, x, True, True, VEC=vec, BLOCK_N=block_n, num_warps=1)
    assert flags.tolist() == [0] * 10
    check(got, z, x)


@needs_triton
@pytest.mark.parametrize("c", [4, 1000, 1024])
def test_triton_one_block_flags_every_nonfinite_kind(c):
    # NaN, +inf (also as the row maximum), -inf, at the first/last class; and a
    # finite row spanning more than FLT_MAX, which must not be flagged
    z = torch.randn(8, c).to(DEVICE)
    z[1, 0] = float("nan")
    z[2, c - 1] = float("inf")
    z[3, 0] = -float("inf")
    z[4, ::2] = float("nan")  # (an all-NaN row is in the GPU check: the interpreter's argmax rejects it)
    z[5, 1] = float("inf")
    z[5, 2] = -float("inf")
    z[6, 0], z[6, 1] = 3e38, -3e38
    _, flags = K.fused_scores_triton(z, None, True, False)
    assert flags.tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    x = z.unsqueeze(0).repeat(2, 1, 1)
    x[0] = torch.randn(8, c)
    _, flags = K.fused_scores_triton(None, x, False, True)
    assert flags.tolist() == [0, 2, 2, 2, 2, 2, 0, 0]


@needs_triton
@pytest.mark.parametrize("c,t", [(2, 2), (2, 5), (10, 3), (1000, 2)])
def test_triton_mean_std_of_a_tiny_spread(c, t):
    # p barely moves over t, so mean_std is a small difference of O(1) numbers:
    # checked with an absolute slack of a few float32 ulps of p (1e-7; p itself
    # is rounded to ~3e-8), where the unshifted Welford update on an H200 was
    # off by 1.4e-6 on the first row (5.4202e-4 for 5.4339e-4)
    g = torch.Generator().manual_seed(6)
    base = torch.randn(1, 64, c, generator=g) * 2
    x = (base + 1e-2 * torch.randn(t, 64, c, generator=g)).to(DEVICE)
    if c == 2 and t == 2:
        x[:, 0] = torch.tensor([[1.353745937347412, 1.5568952560424805],
                                [2.5877861976623535, 2.7953286170959473]])
    got, _ = K.fused_scores_triton(None, x, False, True)
    ref = K.reference_scores(None, x, ("mean_std",), dtype=torch.float64)["mean_std"]
    torch.testing.assert_close(got["mean_std"].double(), ref, rtol=1e-4, atol=1e-7)


def test_vec_width_rules():
    a = torch.zeros(4, 1000)
    assert K._vec_width([a], [(0,)], 4) == 4
    assert K._vec_width([torch.zeros(4, 1001)], [(0,)], 4) == 1
    assert K._vec_width([torch.zeros(4, 1000)[1:]], [(0,)], 4) == 4  # offset 4000 B
    assert K._vec_width([torch.zeros(4, 1000).t()], [(0,)], 4) == 1  # class axis strided
    assert K._vec_width([torch.zeros(4, 1000, dtype=torch.float16)], [(0,)], 2) == 8
    assert K._vec_width([torch.zeros(3, 4, 1000), a], [(0, 1), (0,)], 4) == 4


# ---------------------------------------------------- fused torch expression
@pytest.mark.parametrize("n,c,t", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_torch_eager_matches_reference(n, c, t, dtype):
    z, x = make(n, c, t, dtype)
    scores, flags = K.fused_scores_torch(z, x, True, True, compile=False)
    assert int(flags.abs().sum()) == 0
    check(scores, z, x)


needs_c = pytest.mark.skipif(not K.has_c(), reason="autoal_fast._C is not built")


@needs_c
@pytest.mark.parametrize("n,c,t", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_c_matches_reference(n, c, t, dtype):
    z, x = make(n, c, t, dtype)
    scores, flags = K.fused_scores_c(z.cpu(), x.cpu(), True, True, threads=2)
    assert int(flags.abs().sum()) == 0
    check(scores, z.cpu(), x.cpu())


@needs_c
def test_fused_c_strided_halves_and_flags():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(11, 29, generator=g).t()  # non-contiguous class axis: copied per chunk
    x = torch.randn(4, 60, 11, generator=g)[:, 10:39]  # strided samples: read in place
    scores, _ = K.fused_scores_c(z, None, True, False)
    check(scores, z, x, K.LOGIT_NAMES)
    scores, _ = K.fused_scores_c(None, x, False, True, threads=3)
    check(scores, z, x, K.MC_NAMES)
    z, x = make(9, 6, 3, torch.float32, seed=3)
    z, x = z.cpu(), x.cpu()
    z[2, 5] = float("nan")
    z[4, 0] = float("inf")
    x[1, 5, 2] = -float("inf")
    x[2, 4, 3] = float("nan")
    _, flags = K.fused_scores_c(z, x, True, True)
    assert flags.tolist() == [0, 0, K.BAD_LOGITS, 0, K.BAD_LOGITS | K.BAD_MC, K.BAD_MC, 0, 0, 0]


def test_launch_config_rules():
    cfg = K.launch_config(1000, 10, True)
    assert cfg["BLOCK_C"] == 1024 and cfg["ONE_BLOCK"] and cfg["BLOCK_T"] == 16
    assert K.launch_config(1001, 10, True)["ONE_BLOCK"]  # 1001 <= 1024: one block
    assert not K.launch_config(1025, 10, True)["ONE_BLOCK"]  # two-phase MC path
    assert K.launch_config(2, 2, False)["BLOCK_C"] == 2
    assert K.launch_config(1000, 1, False, BLOCK_N=1)["BLOCK_N"] == 1
    with pytest.raises(ValueError, match="overrides"):
        K.launch_config(10, 2, False, BLOCK_C=4)
    with pytest.raises(ValueError, match="n_classes"):
        K.launch_config(0, 2, False)
    with pytest.raises(ValueError, match="ONE_BLOCK"):
        K.launch_config(3000, 2, False, ONE_BLOCK=True)


# ------------------------------------------ the interpreter run, from plain CPU
@pytest.mark.skipif(INTERPRET or HAS_CUDA, reason="already running the Triton tests in this process")
@pytest.mark.skipif(not _backend.has_triton(), reason="triton is not installed")
def test_triton_kernel_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", "triton and not interpreter",
           "-o", "addopts=-m 'not slow and not gpu'"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    tail = (res.stdout + res.stderr)[-4000:]
    assert res.returncode == 0, tail
    assert " passed" in res.stdout and "skipped" not in res.stdout.split("\n")[-2], tail
