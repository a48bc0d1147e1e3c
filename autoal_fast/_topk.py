"""Exact top-k for large pools: ``topk`` (one shot) and ``TopK`` (streaming).

Order: best value first; ties go to the lower index; +/-inf are ordinary
values. NaN policy: ``nan_policy="raise"`` (default) raises ValueError naming
the count of NaNs; ``"omit"`` drops NaNs (then k must not exceed the number of
non-NaN values). A NaN is never ranked as a number.

Backends: on CPU the C++ extension ``autoal_fast._C`` (OpenMP threads, as many
as ``torch.get_num_threads()``; no full sort). On CUDA, ``torch.topk`` followed
by an exact tie fix-up so the tie order is the same as on CPU.
"""
from __future__ import annotations

import numpy as np
import torch

import bisect

from ._validation import FLOAT_DTYPES, check_bool, check_int, check_k, is_array, native_array

_NAN_POLICIES = ("raise", "omit")


def _load_ext():
    try:
        from . import _C
    except ImportError as exc:  # pragma: no cover - only when the build is missing
        raise ImportError(
            "autoal_fast._C (the compiled core) is not built: reinstall with `pip install .` "
            "(needs CMake and a C++ compiler)"
        ) from exc
    return _C


def _check_nan_policy(nan_policy, caller):
    if not isinstance(nan_policy, str) or nan_policy not in _NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {_NAN_POLICIES} ({caller}); got {nan_policy!r}")
    return nan_policy


def _check_scores(x, caller, name="x"):
    """``x`` checked, as given (torch) or as a native-byte-order numpy array (one copy
    only when the byte order is swapped); ``name`` is the argument the user passed."""
    if isinstance(x, torch.Tensor):
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64 ({caller}); got {x.dtype}")
    elif is_array(x):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must be float16, float32 or float64 ({caller}); got numpy dtype {x.dtype}")
        x = native_array(x, name, caller)  # longdouble raises; swapped byte order is copied
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array ({caller}); got {type(x).__name__}")
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (n,) ({caller}); got shape {tuple(x.shape)}")
    return x


def _check_args(x, k, largest, nan_policy, caller):
    _check_nan_policy(nan_policy, caller)
    check_bool(largest, "largest", caller)
    x = _check_scores(x, caller)
    return x, check_k(k, int(x.shape[0]), caller, allow_zero=True, pool_name="n")


def _nan_error(count, caller, name="x"):
    return ValueError(
        f"{name} contains {count} NaN value(s) ({caller}); NaN is never ranked: clean the scores "
        "or pass nan_policy='omit' to drop them"
    )


def _cpu_topk(arr: np.ndarray, k: int, largest: bool, nan_policy: str, caller: str):
    """arr: 1-D float32/float64 contiguous numpy array. Returns numpy (values, indices)."""
    _C = _load_ext()
    values, indices, nans = _C.topk(arr, k, bool(largest), torch.get_num_threads())
    if nans:
        if nan_policy == "raise":
            raise _nan_error(nans, caller)
        if len(indices) < k:
            raise ValueError(
                f"k={k} exceeds the {arr.shape[0] - nans} non-NaN values of x ({caller})"
            )
    return values, indices


def _to_cpu_array(x) -> np.ndarray:
    """float32/float64 contiguous numpy view (widening float16/bfloat16 exactly)."""
    if isinstance(x, torch.Tensor):
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return np.ascontiguousarray(x.detach().contiguous().numpy())
    if x.dtype == np.float16:
        return x.astype(np.float32)
    return np.ascontiguousarray(x)


def _torch_topk_exact(x: torch.Tensor, k: int, largest: bool, nan_policy: str, caller: str):
    """torch.topk with the tie order fixed to 'lower index first' (any device)."""
    nan_mask = torch.isnan(x)
    n_nan = int(nan_mask.sum())
    if n_nan:
        if nan_policy == "raise":
            raise _nan_error(n_nan, caller)
        if k > x.numel() - n_nan:
            raise ValueError(f"k={k} exceeds the {x.numel() - n_nan} non-NaN values of x ({caller})")
        fill = float("-inf") if largest else float("inf")
        x = x.masked_fill(nan_mask, fill)
    if k == 0:
        return x[:0], torch.empty(0, dtype=torch.long, device=x.device)
    vals, idx = torch.topk(x, k, largest=largest, sorted=True)
    kth = vals[k - 1]
    # Common case: every element equal to the k-th value is already selected,
    # so only the order inside ties needs fixing (sorts of k elements, one sync).
    if not n_nan and bool((x == kth).sum() == (vals == kth).sum()):
        idx = idx.sort().values
        order = torch.sort(x[idx], descending=largest, stable=True).indices
        idx = idx[order]
        return x[idx], idx
    better = (x > kth) if largest else (x < kth)
    if n_nan:
        better &= ~nan_mask
        equal = (x == kth) & ~nan_mask
    else:
        equal = x == kth
    idx_better = torch.nonzero(better).squeeze(1)
    idx_equal = torch.nonzero(equal).squeeze(1)[: k - idx_better.numel()]
    idx = torch.cat([idx_better, idx_equal]).sort().values
    # Stable sort by value keeps ascending index order inside ties.
    order = torch.sort(x[idx], descending=largest, stable=True).indices
    idx = idx[order]
    return x[idx], idx


def topk(x, k, largest=True, *, nan_policy="raise"):
    """Exact top-k of a 1-D array of scores.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray of shape (n,)
        float16, bfloat16, float32 or float64 scores, CPU or CUDA.
    k : int
        How many to return, ``0 <= k <= n``.
    largest : bool, default=True
        Largest values first; ``False`` gives the smallest first.
    nan_policy : {"raise", "omit"}, default="raise"
        NaN is never ranked: raise ValueError, or leave NaNs out.

    Returns
    -------
    values, indices
        Of shape (k,), best first, ties to the lower index. Torch in gives
        torch out (same device, values in x's dtype, indices int64); numpy in
        gives numpy out.

    Examples
    --------
    >>> import numpy as np, autoal_fast
    >>> autoal_fast.topk(np.array([1.0, 3.0, 3.0, 2.0]), 2)
    (array([3., 3.]), array([1, 2]))
    """
    caller = "topk"
    x, k = _check_args(x, k, largest, nan_policy, caller)
    if isinstance(x, torch.Tensor) and x.device.type != "cpu":
        v, i = _torch_topk_exact(x.detach(), k, largest, nan_policy, caller)
        return v, i
    arr = _to_cpu_array(x)
    values, indices = _cpu_topk(arr, k, largest, nan_policy, caller)
    if isinstance(x, torch.Tensor):
        return torch.from_numpy(values).to(x.dtype), torch.from_numpy(indices)
    return values.astype(x.dtype, copy=False), indices


class TopK:
    """Streaming exact top-k over scores that arrive in chunks.

    ``update(chunk, offset=None)`` takes the next chunk, whose first element has
    global index ``offset`` (default: the number of elements seen so far, i.e. one
    past the highest index seen); ``result()`` returns what ``topk`` would give on
    the concatenation (ties to the lower global index). Memory: O(k) beyond the
    chunk, plus one (start, end) pair per run of contiguous chunks.

    Offsets: chunks may come in any order and leave gaps, but each global index
    is scored once: a chunk whose range ``[offset, offset + len(chunk))`` overlaps
    an earlier chunk's raises ValueError naming ``offset`` (and leaves the state
    as it was), since the same index would otherwise be ranked twice.

    Examples
    --------
    >>> import numpy as np, autoal_fast
    >>> s = autoal_fast.TopK(2)
    >>> s.update(np.array([1.0, 5.0])); s.update(np.array([5.0, 2.0]))
    >>> s.result()
    (array([5., 5.]), array([1, 2]))
    """

    def __init__(self, k, largest=True, *, nan_policy="raise"):
        caller = "TopK"
        self.k = check_int(k, "k", caller, low=0)
        self.largest = check_bool(largest, "largest", caller)
        _check_nan_policy(nan_policy, caller)
        self.nan_policy = nan_policy
        self.seen = 0
        self._values = np.empty(0, dtype=np.float64)
        self._indices = np.empty(0, dtype=np.int64)
        self._kind = None  # (is_torch, dtype, device) of the first chunk
        self._starts, self._ends = [], []  # sorted disjoint [start, end) ranges seen

    def _check_overlap(self, lo: int, hi: int, caller: str) -> int:
        """Position where [lo, hi) goes in the ranges seen; raises if it overlaps one."""
        j = bisect.bisect_right(self._starts, lo)
        prev_end = self._ends[j - 1] if j else -1
        next_start = self._starts[j] if j < len(self._starts) else None
        if prev_end > lo or (next_start is not None and next_start < hi):
            s, e = (self._starts[j - 1], prev_end) if prev_end > lo else (next_start, self._ends[j])
            raise ValueError(
                f"offset={lo} makes this chunk (indices [{lo}, {hi})) overlap the indices [{s}, {e}) "
                f"of earlier chunks ({caller}); each index may be scored once"
            )
        return j

    def _add_range(self, j: int, lo: int, hi: int) -> None:
        if j and self._ends[j - 1] == lo:  # extends the previous run
            self._ends[j - 1] = hi
            if j < len(self._starts) and self._starts[j] == hi:
                self._ends[j - 1] = self._ends.pop(j)
                self._starts.pop(j)
        elif j < len(self._starts) and self._starts[j] == hi:
            self._starts[j] = lo
        else:
            self._starts.insert(j, lo)
            self._ends.insert(j, hi)

    def update(self, chunk, offset=None):
        caller = "TopK.update"
        chunk = _check_scores(chunk, caller, "chunk")
        n = int(chunk.shape[0])
        if offset is None:
            offset = self.seen
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
            raise ValueError(f"offset must be an int >= 0 ({caller}); got {offset!r}")
        offset = int(offset)
        pos = self._check_overlap(offset, offset + n, caller) if n else None
        kind = (isinstance(chunk, torch.Tensor), chunk.dtype,
                chunk.device if isinstance(chunk, torch.Tensor) else None)
        if self._kind is not None and kind[0] != self._kind[0]:
            raise TypeError(f"chunk must be of the same kind as the first chunk ({caller}): "
                            "do not mix numpy arrays and torch tensors")
        if isinstance(chunk, torch.Tensor) and chunk.device.type != "cpu":
            nan_count = int(torch.isnan(chunk).sum())
            kk = min(self.k, n - nan_count)
            v, i = _torch_topk_exact(chunk.detach(), kk, self.largest, "omit", caller)
            v, i = v.double().cpu().numpy(), i.cpu().numpy()
        else:
            arr = _to_cpu_array(chunk)
            v, i, nan_count = _load_ext().topk(arr, min(self.k, n), self.largest, torch.get_num_threads())
            v = v.astype(np.float64)
        if nan_count and self.nan_policy == "raise":
            raise _nan_error(nan_count, caller, "chunk")
        if self._kind is None:
            self._kind = kind
        if n:
            self._add_range(pos, offset, offset + n)
        self.seen = max(self.seen, int(offset) + n)
        values = np.concatenate([self._values, v])
        indices = np.concatenate([self._indices, i.astype(np.int64) + int(offset)])
        key = -values if self.largest else values
        order = np.lexsort((indices, key))[: self.k]
        self._values, self._indices = values[order], indices[order]

    def result(self):
        """(values, indices) of the best k seen so far, in the first chunk's kind."""
        if len(self._indices) < self.k:
            raise ValueError(f"TopK.result: only {len(self._indices)} ranked values seen; k={self.k}")
        if self._kind is None:
            return self._values, self._indices
        is_torch, dtype, device = self._kind
        if is_torch:
            return (torch.from_numpy(self._values).to(device=device, dtype=dtype),
                    torch.from_numpy(self._indices).to(device))
        return self._values.astype(dtype), self._indices.copy()
