"""check_finite_rows: the fast path (one sum per chunk) against a plain per-element check."""
import numpy as np
import pytest
import torch

from autoal_fast._validation import check_finite_rows


def _plain_first_bad_row(t):
    bad = ~np.isfinite(t.to(torch.float64).numpy().reshape(t.shape[0], -1)).all(1)
    return int(np.argmax(bad)) if bad.any() else None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_first_bad_row_matches_plain(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n, d = int(torch.randint(1, 400, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
    t = torch.randn(n, d, generator=g).to(dtype)
    for _ in range(seed):  # 0..3 bad entries: NaN, inf, -inf
        r, c = int(torch.randint(n, (1,), generator=g)), int(torch.randint(d, (1,), generator=g))
        t[r, c] = (float("nan"), float("inf"), float("-inf"))[int(torch.randint(3, (1,), generator=g))]
    want = _plain_first_bad_row(t)
    chunk = int(torch.randint(1, 64, (1,), generator=g)) * t.element_size() * d  # several chunks
    if want is None:
        check_finite_rows(t, "x", "test", chunk_bytes=chunk)
    else:
        with pytest.raises(ValueError, match=f"NaN/inf at row {want} "):
            check_finite_rows(t, "x", "test", chunk_bytes=chunk)


def test_finite_values_whose_sum_overflows_pass():
    t = torch.full((50, 4), 3e38, dtype=torch.float32)  # the sum is inf, every value finite
    check_finite_rows(t, "x", "test")
    h = torch.full((100, 8), 60000.0, dtype=torch.float16)  # float16 sum would overflow
    check_finite_rows(h, "x", "test")
    t[49, 3] = float("nan")
    with pytest.raises(ValueError, match="at row 49 "):
        check_finite_rows(t, "x", "test")


def test_empty_and_integer_rows():
    check_finite_rows(torch.zeros(0, 3), "x", "test")
    check_finite_rows(torch.arange(12).reshape(4, 3), "x", "test")
