"""Soft top-k: the torch path here, the Triton kernels under TRITON_INTERPRET=1 in a subprocess."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from autoal_fast._backend import has_triton, last_used
from autoal_fast.search.relax import soft_topk


@pytest.mark.parametrize("shape,k,t", [((37,), 5, 0.1), ((3, 1000), 20.5, 0.05), ((2, 5000), 100, 1.0),
                                       ((17,), 16.5, 0.01), ((1,), 0.5, 0.3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_count_bounds_and_order(shape, k, t, dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(shape, generator=g, dtype=dtype)
    s = soft_topk(a, k, t, backend="torch")
    assert s.shape == a.shape and s.dtype == dtype
    assert last_used["soft_topk"] == "torch"
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    assert torch.allclose(s.reshape(-1, shape[-1]).sum(1).double(), torch.full((s.reshape(-1, shape[-1]).shape[0],), float(k), dtype=torch.float64), atol=tol * max(1, k))
    assert (s >= 0).all() and (s <= 1).all()
    # monotone in a: a larger score never gets a smaller mask value
    a2 = a.reshape(-1, shape[-1])
    s2 = s.reshape(-1, shape[-1])
    for r in range(a2.shape[0]):
        order = torch.argsort(a2[r])
        assert (torch.diff(s2[r][order]) >= -1e-6).all()


def test_small_temperature_is_hard_topk():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, generator=g, dtype=torch.float64)
    s = soft_topk(a, 30, 1e-4, backend="torch")
    hard = torch.zeros_like(a)
    hard[torch.topk(a, 30).indices] = 1
    assert torch.allclose(s, hard, atol=1e-6)


def test_shift_invariance_and_half_input():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(64, generator=g)
    s1, t1 = soft_topk(a, 8, 0.2, return_tau=True)
    s2, t2 = soft_topk(a + 3.0, 8, 0.2, return_tau=True)
    assert torch.allclose(s1, s2, atol=1e-5) and abs(float(t2 - t1) - 3.0) < 1e-4
    sh = soft_topk(a.to(torch.bfloat16), 8, 0.2)
    assert sh.dtype == torch.bfloat16 and abs(float(sh.float().sum()) - 8) < 0.1


@pytest.mark.parametrize("shape,k,t", [((13,), 3.3, 0.3), ((2, 9), 4.0, 0.05), ((1, 30), 1.0, 1.0)])
def test_gradcheck_float64(shape, k, t):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: soft_topk(x, k, t, backend="torch"), (a,))


def test_gradient_includes_tau_term():
    # Ignoring tau's dependence on a would give d * g; the implicit gradient sums to zero per row.
    g = torch.Generator().manual_seed(4)
    a = torch.randn(200, generator=g, dtype=torch.float64, requires_grad=True)
    s = soft_topk(a, 20, 0.2, backend="torch")
    w = torch.rand(200, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((s * w).sum(), a)
    assert abs(float(grad.sum())) < 1e-10
    naive = s.detach() * (1 - s.detach()) / 0.2 * w
    assert (grad - naive).abs().max() > 1e-3


@pytest.mark.parametrize("kw,msg", [(dict(k=0), "k must be"), (dict(k=10), "k must be"),
                                    (dict(temperature=0.0), "temperature"), (dict(backend="x"), "backend"),
                                    (dict(n_iter=0), "n_iter")])
def test_validation(kw, msg):
    args = dict(k=3, temperature=0.1)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        soft_topk(torch.randn(10), **args)
    with pytest.raises(TypeError):
        soft_topk(torch.arange(10), 3)


_INTERPRET_SCRIPT = textwrap.dedent(
    """
    import torch
    from autoal_fast._backend import last_used
    from autoal_fast.search.relax import soft_topk
    g = torch.Generator().manual_seed(0)
    worst = {}
    # odd shapes: tiny, not a power of two, two rows, wider than one 4096-block
    for dtype, tol in ((torch.float32, 2e-5), (torch.float64, 1e-12)):
        for shape, k, t in (((1, 37), 5.0, 0.1), ((3, 1000), 20.5, 0.05), ((1, 5000), 100.0, 1.0),
                            ((1, 17), 16.5, 0.01)):
            a = torch.randn(shape, generator=g, dtype=dtype, requires_grad=True)
            go = torch.randn(shape, generator=g, dtype=dtype)
            st = soft_topk(a, k, t, backend="triton")
            assert last_used["soft_topk"] == "triton"
            (gt,) = torch.autograd.grad(st, a, go)
            sr = soft_topk(a, k, t, backend="torch")
            (gr,) = torch.autograd.grad(sr, a, go)
            e_s = float((st - sr).detach().abs().max())
            e_g = float((gt - gr).abs().max() / (gr.abs().max() + 1e-12))
            worst[(str(dtype), shape)] = (e_s, e_g)
            assert e_s <= tol and e_g <= 10 * tol, (dtype, shape, e_s, e_g)
    # auto picks Triton under the interpreter
    soft_topk(torch.randn(10), 2.0)
    assert last_used["soft_topk"] == "triton"
    a = torch.randn(2, 11, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: soft_topk(x, 3.5, 0.3, backend="triton"), (a,), fast_mode=True)
    print("OK", worst)
    """
)


@pytest.mark.skipif(not has_triton(), reason="triton is not installed")
@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="a CPU-machine test: on CUDA the Triton tests run on the GPU itself (and the "
                           "Triton 3.6 interpreter of the GPU image fails on numpy 2.4 scalars)")
def test_triton_matches_torch_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", _INTERPRET_SCRIPT],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_host_and_vectorised_solves_agree(dtype):
    from autoal_fast.kernels.softtopk import solve_tau_host, solve_tau_torch

    g = torch.Generator().manual_seed(5)
    for shape, k, t in (((1, 37), 5.0, 0.1), ((3, 1000), 20.5, 0.05), ((1, 17), 16.5, 0.01)):
        a = torch.randn(shape, generator=g, dtype=dtype)
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        assert torch.allclose(solve_tau_host(a, k, t), solve_tau_torch(a, k, t), atol=tol, rtol=0)
