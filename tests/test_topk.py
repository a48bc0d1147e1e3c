"""autoal_fast.topk / TopK against a sorted float64 numpy reference."""
import numpy as np
import pytest
import torch

import autoal_fast
from autoal_fast import TopK, topk


def reference_topk(x, k, largest=True):
    """Sorted reference: value first (descending if largest), then lower index."""
    x64 = np.asarray(x, dtype=np.float64)
    keep = np.flatnonzero(~np.isnan(x64))
    key = -x64[keep] if largest else x64[keep]
    order = keep[np.lexsort((keep, key))][:k]
    return x64[order], order


def make_scores(rng, n, kind):
    if kind == "normal":
        return rng.standard_normal(n)
    if kind == "ties":
        return rng.integers(0, 4, n).astype(np.float64)
    if kind == "inf":
        x = rng.standard_normal(n)
        x[rng.random(n) < 0.1] = np.inf
        x[rng.random(n) < 0.1] = -np.inf
        return x
    if kind == "sorted":
        return np.arange(n, dtype=np.float64)
    raise AssertionError(kind)


SIZES = [0, 1, 2, 7, 1000, 70_001, 300_000]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["normal", "ties", "inf", "sorted"])
@pytest.mark.parametrize("largest", [True, False])
def test_numpy_matches_reference(n, kind, largest):
    rng = np.random.default_rng(n + len(kind))
    x = make_scores(rng, n, kind)
    for k in sorted({0, min(1, n), n // 3, n}):
        v, i = topk(x, k, largest=largest)
        rv, ri = reference_topk(x, k, largest)
        assert isinstance(v, np.ndarray) and isinstance(i, np.ndarray)
        assert i.dtype == np.int64 and v.dtype == x.dtype
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(v, rv)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("n", [5, 1000, 200_000])
def test_torch_dtypes_match_reference(dtype, n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g).to(dtype)  # low precision gives many ties
    k = max(1, n // 7)
    for largest in (True, False):
        v, i = topk(x, k, largest=largest)
        rv, ri = reference_topk(x.double().numpy(), k, largest)
        assert v.dtype == dtype and i.dtype == torch.int64
        np.testing.assert_array_equal(i.numpy(), ri)
        np.testing.assert_array_equal(v.double().numpy(), rv)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_numpy_low_precision(dtype):
    x = np.random.default_rng(0).standard_normal(5000).astype(dtype)
    v, i = topk(x, 100)
    rv, ri = reference_topk(x, 100)
    assert v.dtype == dtype
    np.testing.assert_array_equal(i, ri)


def test_multithreaded_equals_single_thread():
    # >= 2M elements per thread are needed before a second thread is used;
    # 4.5M gives two threads over 18 dynamically scheduled slices.
    x = np.random.default_rng(1).integers(0, 50, 4_500_000).astype(np.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = topk(x, 5000)
        torch.set_num_threads(max(2, old))
        b = topk(x, 5000)
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[1], reference_topk(x, 5000)[1])


def test_nan_raises_by_default():
    x = np.array([1.0, np.nan, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        topk(x, 1)
    with pytest.raises(ValueError, match="NaN"):
        topk(torch.tensor(x), 1)


@pytest.mark.parametrize("largest", [True, False])
def test_nan_omit(largest):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(10_000)
    x[rng.random(10_000) < 0.3] = np.nan
    v, i = topk(x, 500, largest=largest, nan_policy="omit")
    rv, ri = reference_topk(x, 500, largest)
    np.testing.assert_array_equal(i, ri)
    assert not np.isnan(v).any()
    with pytest.raises(ValueError, match="non-NaN"):
        topk(np.array([np.nan, 1.0]), 2, nan_policy="omit")


def test_torch_reference_path_matches_on_cpu():
    """The tie-fixing torch path (used on CUDA) gives the same answer on CPU."""
    from autoal_fast._topk import _torch_topk_exact

    spill = torch.randint(0, 5, (10_000,)).float()  # ties cross the k-th value
    spill[::17] = float("inf")
    inside = torch.randn(10_000)  # ties only well inside the selection
    inside[:50] = 100.0
    inside[-50:] = -100.0
    for x in (spill, inside, torch.randn(10_000)):
        for largest in (True, False):
            v, i = _torch_topk_exact(x, 777, largest, "raise", "test")
            np.testing.assert_array_equal(i.numpy(), reference_topk(x.numpy(), 777, largest)[1])


@pytest.mark.parametrize("bad_k", [-1, 11])
def test_bad_k(bad_k):
    with pytest.raises(ValueError, match=r"k must be an int in \[0, n=10\]"):
        topk(np.zeros(10), bad_k)


def test_bad_inputs():
    with pytest.raises(TypeError, match="k must be an int"):
        topk(np.zeros(10), 2.0)
    with pytest.raises(ValueError, match="1-D"):
        topk(np.zeros((2, 5)), 1)
    with pytest.raises(TypeError, match="float"):
        topk(np.zeros(10, dtype=np.int64), 1)
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        topk([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="nan_policy"):
        topk(np.zeros(3), 1, nan_policy="last")


def test_non_contiguous_tensor():
    x = torch.randn(2000)[::2]
    v, i = topk(x, 10)
    np.testing.assert_array_equal(i.numpy(), reference_topk(x.numpy(), 10)[1])


@pytest.mark.parametrize("kind", ["normal", "ties", "inf"])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("as_torch", [False, True])
def test_streaming_equals_one_shot(kind, largest, as_torch):
    rng = np.random.default_rng(7)
    x = make_scores(rng, 50_000, kind)
    k = 1234
    s = TopK(k, largest=largest)
    bounds = [0, 3, 10_000, 10_001, 31_000, 50_000]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        chunk = torch.from_numpy(x[lo:hi]) if as_torch else x[lo:hi]
        s.update(chunk)
    v, i = s.result()
    ov, oi = topk(x, k, largest=largest)
    np.testing.assert_array_equal(np.asarray(i), oi)
    np.testing.assert_array_equal(np.asarray(v), ov)


def test_streaming_out_of_order_offsets_and_errors():
    x = np.random.default_rng(8).integers(0, 3, 1000).astype(np.float64)
    s = TopK(50)
    s.update(x[500:], offset=500)
    s.update(x[:500], offset=0)
    np.testing.assert_array_equal(s.result()[1], topk(x, 50)[1])
    s2 = TopK(10)
    s2.update(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="seen"):
        s2.result()
    with pytest.raises(ValueError, match="NaN"):
        s2.update(np.array([np.nan]))
    with pytest.raises(TypeError, match="same kind"):
        s2.update(torch.zeros(3))


def test_extension_is_built_with_openmp_and_version():
    from autoal_fast import _C

    assert _C.has_openmp()
    assert _C.__version__ == autoal_fast.__version__
