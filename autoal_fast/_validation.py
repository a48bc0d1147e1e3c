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


#: numpy float dtypes torch takes as they are; other float kinds (longdouble) are refused.
NUMPY_FLOATS = (np.float16, np.float32, np.float64)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def native_array(x: np.ndarray, name: str, caller: str) -> np.ndarray:
    """``x`` as an array torch can wrap: itself when it can (no copy, memmaps stay
    memmaps), else one copy: negative strides -> contiguous, non-native byte order
    -> native. Float kinds torch has no type for (longdouble) raise TypeError naming
    ``name``: a cast would round them, so it is the caller's to make."""
    if x.dtype.kind == "f" and x.dtype.newbyteorder("=").type not in NUMPY_FLOATS:
        raise TypeError(
            f"{name} must be float16, float32 or float64 ({caller}); got numpy dtype {x.dtype}, which "
            f"torch cannot hold: cast it yourself, e.g. {name}.astype(np.float64)"
        )
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if any(s < 0 for s in x.strides):
        x = np.ascontiguousarray(x)
    return x


def as_tensor_view(x, name: str, caller: str) -> torch.Tensor:
    """A torch view of a numpy array (no copy) or the tensor itself.

    numpy float16/float32/float64 map to the same torch dtype; anything else
    non-floating is refused rather than guessed at. Arrays torch cannot view
    (negative strides, non-native byte order) are copied once (``native_array``).
    """
    if isinstance(x, torch.Tensor):
        return x
    if is_array(x):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point values ({caller}); got numpy dtype {x.dtype}")
        arr = native_array(np.asarray(x), name, caller)
        if not arr.flags.writeable:
            # np.load(..., mmap_mode="r") is read-only; torch warns that it has no
            # read-only tensors. autoal_fast never writes to pool arrays, so the
            # view is safe; silence only that warning.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(arr)
        return torch.from_numpy(arr)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array ({caller}); got {type(x).__name__}")


def check_bool(value, name: str, caller: str) -> bool:
    """A Python or numpy bool; anything else (a string "False", 0/1) raises TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool ({caller}); got {type(value).__name__} {value!r}")
    return bool(value)


def check_device(device, name: str, caller: str) -> torch.device:
    """A torch.device that exists here: a bad string, a wrong type, or a CUDA device on
    a machine without one (or an index past the last GPU) raises, naming ``name``."""
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, numbers.Integral)):
        raise TypeError(f"{name} must be a str or torch.device such as 'cpu' or 'cuda:0' ({caller}); "
                        f"got {type(device).__name__} {device!r}")
    if isinstance(device, numbers.Integral):
        device = f"cuda:{int(device)}"  # torch's meaning of an int device
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name} must be a device such as 'cpu', 'cuda' or 'cuda:0' ({caller}); "
                         f"got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={str(device)!r} but CUDA is not available on this machine ({caller}); "
                             "use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={str(device)!r} but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s) ({caller})")
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"{name} must be a CPU or CUDA device ({caller}); got {str(device)!r}")
    return dev


def check_ids(ids, name: str, caller: str, n_total: int | None = None) -> torch.Tensor:
    """1-D unique int64 ids in [0, n_total) on CPU (numpy, torch or a list of ints).

    Negative ids are refused rather than wrapped around; duplicates are refused
    rather than queried twice. Empty is allowed (the caller decides)."""
    if isinstance(ids, torch.Tensor):
        t = ids.detach().cpu()
    else:
        try:
            arr = np.asarray(ids)
        except (ValueError, TypeError):
            raise TypeError(f"{name} must be a 1-D array of integer ids ({caller}); "
                            f"got {type(ids).__name__}") from None
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)  # np.asarray([]) is float64: an empty list of ids
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a 1-D array of integer ids ({caller}); got dtype {arr.dtype}, "
                             f"shape {arr.shape}")
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > 2**63 - 1:
            raise ValueError(f"{name} must hold ids that fit int64 ({caller}); got {int(arr.max())}")
        t = torch.from_numpy(native_array(arr, name, caller).astype(np.int64, copy=False))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer ids ({caller}); got dtype {t.dtype}, "
                         f"shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"{name} must be ids >= 0 ({caller}); got {lo} (negative ids are not "
                             "wrapped around)")
        if n_total is not None and hi >= n_total:
            raise ValueError(f"{name} must be ids in [0, len(data)={n_total}) ({caller}); got {hi}")
        u, counts = torch.unique(t, return_counts=True)
        if u.numel() != t.numel():
            raise ValueError(f"{name} must be unique ({caller}); {int((counts > 1).sum())} id(s) repeat, "
                             f"e.g. {int(u[counts > 1][0])}")
    return t


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
        c = t[lo:lo + rows]
        if not _sum_is_finite(c):  # the exact per-row check only where the fast one is not sure
            ok = torch.isfinite(c)
            if ok.ndim > 1:
                ok = ok.flatten(1).all(1)
            if not bool(ok.all()):
                i = lo + int(torch.nonzero(~ok)[0, 0])
                raise ValueError(f"{name} contain NaN/inf at row {i} ({caller})")
        if t.dtype == torch.float64:
            check_fits_float32(c, name, caller, offset=lo)


def _sum_is_finite(c: torch.Tensor) -> bool:
    """True when every element of the float tensor c is finite, told by one reduction: a
    sum is finite only if every element is (NaN and inf propagate). False means not sure:
    NaN/inf, finite values whose sum overflows, or a non-float dtype."""
    if not c.is_floating_point():
        return False
    return bool(torch.isfinite(c.sum(dtype=torch.float32 if c.element_size() < 4 else c.dtype)))


def check_fits_float32(t: torch.Tensor, name: str, caller: str, offset: int = 0,
                       chunk_bytes: int = 64 << 20) -> None:
    """float64 values beyond float32's range would become inf in the float32 compute:
    raise ValueError saying so (naming the row) rather than calling them NaN/inf.
    Free for other dtypes; reads a float64 ``t`` in row chunks."""
    if t.dtype != torch.float64 or t.numel() == 0:
        return
    rows = max(1, chunk_bytes // max(1, t[0].numel() * t.element_size()))
    for lo in range(0, t.shape[0], rows):
        big = t[lo:lo + rows].abs() > FLOAT32_MAX
        if big.ndim > 1:
            big = big.flatten(1).any(1)
        if bool(big.any()):
            i = offset + lo + int(torch.nonzero(big)[0, 0])
            raise ValueError(
                f"{name} overflow float32 at row {i} ({caller}): finite float64 values beyond "
                f"+/-{FLOAT32_MAX:.4g}, which the float32 compute cannot hold; rescale them"
            )
