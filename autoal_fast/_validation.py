"""Checks run once at the public door; private workers trust their input.

Messages name the argument, the caller, what is accepted and what was received.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_int(value, name: str, caller: str, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int in [low, high] or raise a message naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int ({caller}); got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be an int in [{lo}, {hi}] ({caller}); got {value}")
    return value


def check_k(k, n: int, caller: str, allow_zero: bool = False, pool_name: str = "n_pool") -> int:
    """k must be an int in [1, n] (or [0, n] with allow_zero)."""
    low = 0 if allow_zero else 1
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int ({caller}); got {type(k).__name__} {k!r}")
    if not low <= int(k) <= n:
        raise ValueError(f"k must be an int in [{low}, {pool_name}={n}] ({caller}); got {int(k)}")
    return int(k)


def is_array(x) -> bool:
    return isinstance(x, (np.ndarray, np.memmap))


def as_tensor_view(x, name: str, caller: str) -> torch.Tensor:
    """A torch view of a numpy array (no copy) or the tensor itself.

    numpy float16/float32/float64 map to the same torch dtype; anything else
    non-floating is refused rather than guessed at.
    """
    if isinstance(x, torch.Tensor):
        return x
    if is_array(x):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point values ({caller}); got numpy dtype {x.dtype}")
        arr = np.asarray(x)
        if not arr.flags.writeable:
            # np.load(..., mmap_mode="r") is read-only; torch warns that it has no
            # read-only tensors. autoal_fast never writes to pool arrays, so the
            # view is safe; silence only that warning.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(arr)
        return torch.from_numpy(arr)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array ({caller}); got {type(x).__name__}")


def check_float_dtype(t: torch.Tensor, name: str, caller: str) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64 ({caller}); got {t.dtype}"
        )


def check_ndim(t, ndim: int, name: str, caller: str, shape_hint: str) -> None:
    if t.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D of shape {shape_hint} ({caller}); got shape {tuple(t.shape)}"
        )


def check_finite_rows(t: torch.Tensor, name: str, caller: str, chunk_bytes: int = 64 << 20) -> None:
    """Raise ValueError naming the first row of ``t`` with NaN/inf; reads ``t`` in row chunks."""
    if t.numel() == 0:
        return
    row_bytes = max(1, t[0].numel() * t.element_size())
    rows = max(1, chunk_bytes // row_bytes)
    for lo in range(0, t.shape[0], rows):
        ok = torch.isfinite(t[lo:lo + rows])
        if ok.ndim > 1:
            ok = ok.flatten(1).all(1)
        if not bool(ok.all()):
            i = lo + int(torch.nonzero(~ok)[0, 0])
            raise ValueError(f"{name} contain NaN/inf at row {i} ({caller})")
