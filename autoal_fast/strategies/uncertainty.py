"""Uncertainty strategies: all six scores in one streamed, fused pass over the pool.

``uncertainty_scores(pool, names)`` is the private worker behind
``strategies.score`` / ``strategies.select`` (which validate first). It reads
the pool in row chunks, moves each chunk to the compute device and runs the
fused kernel of ``autoal_fast.kernels.uncertainty`` once per chunk, computing
every requested score from that single read (AutoAL asks for all six).

Definitions (docs/method.md; higher = query first): entropy, margin =
-(p_(1) - p_(2)), least_confidence = 1 - max p, var_ratio = 1 - modal-argmax
count / T, bald = H(mean_t p_t) - mean_t H(p_t), mean_std = mean over classes
of the population std over t. Only the inputs the requested names need are
read: logits for the first three, mc_logits (or MC dropout) for the last three.

Memory
------
The pool is never copied whole: numpy arrays and ``np.load(mmap_mode="r")``
memmaps are viewed, and each chunk is sliced, moved and (if needed) converted
on its own. ``chunk_bytes`` (default ``DEFAULT_CHUNK_BYTES`` = 256 MiB) caps
what one chunk may allocate: its float32 working size (``4 * C * (1 + T)`` bytes
per row with MC work, ``4 * C`` without) times the backend's temporaries factor
(``_WORK_FACTOR``), plus the generated MC-dropout logits. Inputs that are
already on a CUDA device and read in place by the Triton kernel need no copy
and no temporaries, so they go through in one launch. Chunks have equal sizes
(the tail is spread over them).

MC dropout
----------
When var_ratio / bald / mean_std are asked and ``pool.mc_logits`` is None,
``pool.head`` is run ``pool.n_mc`` times over ``pool.embeddings``, chunk by
chunk, in train mode (dropout active) and under ``torch.no_grad()``; each
module's training flag is restored afterwards, even on error. The draws are
seeded: the whole pass runs inside ``torch.random.fork_rng`` after seeding the
CPU generator (and the head's CUDA device) with ``seed`` (default
``MC_DROPOUT_SEED`` = 0), so the caller's RNG state is untouched and the same
(seed, chunk_bytes, device) gives the same scores. The generated logits go
through the same fused pass as user-given ``mc_logits``.

Errors
------
NaN/inf are detected inside the fused pass (a per-row flag, no extra pass over
the data) and raise ValueError naming the argument and the first bad row.
"""
from __future__ import annotations

import warnings

import torch

from .. import _backend
from ..kernels import uncertainty as _k

SCORE_NAMES = _k.SCORE_NAMES
#: Default cap on what one chunk allocates, in bytes (see module docstring).
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: Seed of the MC-dropout draws when none is given.
MC_DROPOUT_SEED = 0
#: Temporaries per float32 input byte, by backend (Triton and C read float32 in
#: place, other dtypes as one float32 copy; the compiled CPU loop nest keeps
#: about one (T, n, C) buffer; eager keeps several).
_WORK_FACTOR = {"triton": 1, "c": 1, "compile": 3, "eager": 8}
#: Below this many input elements (n * C * (1 + T)) a CPU pool is scored eagerly:
#: torch.compile's first call costs seconds, eager costs under ~20 ms there.
COMPILE_MIN_ELEMENTS = 1 << 22

_compile_broken: list = []


def uncertainty_scores(pool, names=SCORE_NAMES, *, chunk_bytes: int | None = None, seed: int | None = None,
                       device=None, backend: str = "auto", caller: str = "uncertainty_scores") -> dict:
    """Uncertainty scores of every pool sample, all requested names in one pass.

    Parameters
    ----------
    pool : PoolOutputs
        ``logits`` of shape (n_samples, n_classes); for var_ratio/bald/mean_std
        also ``mc_logits`` of shape (n_mc, n_samples, n_classes), or
        ``embeddings`` + ``head`` for MC dropout (``pool.n_mc`` passes).
    names : iterable of str, default=all six
        Subset of ``SCORE_NAMES``.
    chunk_bytes : int, default=DEFAULT_CHUNK_BYTES
        Memory cap per chunk (see the module docstring).
    seed : int, default=MC_DROPOUT_SEED
        Seed of the MC-dropout draws (unused with ``mc_logits``).
    device : torch.device or str, default=the pool's device
        Where the pass runs and the scores live; chunks are moved there.
    backend : {"auto", "triton", "c", "compile", "eager"}, default="auto"
        "auto": Triton on CUDA (and on CPU under TRITON_INTERPRET=1); on CPU
        the C++ kernel of autoal_fast._C (see kernels/uncertainty.py),
        else torch.compile for pools of at least ``COMPILE_MIN_ELEMENTS``
        input elements, eager below. The choice is recorded in
        ``autoal_fast._backend.last_used["uncertainty"]``. CPU figures
        (200k x 100, T=10, all six, 2 cores): C 0.91 s, torch.compile 1.7 s,
        eager one-by-one about 11 s.
    caller : str, default="uncertainty_scores"
        The public function named in error messages (e.g. ``"select('entropy')"``).

    Returns
    -------
    dict name -> float32 Tensor of shape (n_samples,) on ``device``; higher =
    query first.

    Raises
    ------
    ValueError
        NaN/inf in logits or mc_logits (or in the head's MC-dropout outputs),
        naming the first bad row (float64 values beyond float32's range are
        reported as such: the pass computes in float32); a head that fails on
        the embeddings; MC scores asked without mc_logits or
        head + embeddings; fewer than 2 stochastic samples.
    """
    names = tuple(names)
    for nm in names:
        if nm not in SCORE_NAMES:
            raise ValueError(f"names must be drawn from {list(SCORE_NAMES)} (uncertainty_scores); got {nm!r}")
    do_logits = any(nm in _k.LOGIT_NAMES for nm in names)
    do_mc = any(nm in _k.MC_NAMES for nm in names)
    n, c = pool.n_samples, pool.n_classes
    device = torch.device(device) if device is not None else pool.device
    chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1 (uncertainty_scores); got {chunk_bytes}")
    seed = MC_DROPOUT_SEED if seed is None else int(seed)

    use_head = False
    t = 0
    if do_mc:
        if pool.mc_logits is not None:
            t = int(pool.mc_logits.shape[0])
            src = "mc_logits"
        elif pool.head is not None and pool.embeddings is not None:
            t = int(pool.n_mc)
            use_head = True
            src = "n_mc"
        else:
            raise ValueError(
                f"var_ratio, bald and mean_std need stochastic predictions ({caller}): pass "
                "PoolOutputs(..., mc_logits=<(n_mc, n_samples, n_classes)>) or PoolOutputs(..., "
                "embeddings=..., head=<classifier head with dropout>)"
            )
        if t < 2:
            what = "pool.mc_logits must hold" if src == "mc_logits" else "pool.n_mc must be"
            raise ValueError(f"{what} n_mc >= 2 stochastic samples along axis 0 ({caller}); got {t}")

    backend = _pick_backend(backend, device, n * c * ((1 if do_logits else 0) + t))
    out = {nm: torch.empty(n, dtype=torch.float32, device=device) for nm in names}
    if n == 0:
        _backend.record("uncertainty", _label(backend))
        return out

    rows = _rows_per_chunk(pool, n, c, t, do_logits, do_mc, use_head, device, backend, chunk_bytes)
    n_chunks = -(-n // rows)
    rows = -(-n // n_chunks)  # equal chunks: no tiny tail (and no recompile for it)

    head_ctx = _MCDropout(pool.head, seed, device, caller) if use_head else None
    if head_ctx is not None:
        head_ctx.__enter__()
    used = backend
    try:
        for i0 in range(0, n, rows):
            i1 = min(n, i0 + rows)
            z = _to(pool.logits[i0:i1], device) if do_logits else None
            x = None
            if do_mc:
                x = head_ctx.run(pool.embeddings[i0:i1], t, c) if use_head else _to(pool.mc_logits[:, i0:i1], device)
            scores, flags, used = _run(z, x, names, backend)
            _check_flags(flags, i0, use_head, pool, caller)
            for nm in names:
                out[nm][i0:i1] = scores[nm]
    finally:
        if head_ctx is not None:
            head_ctx.__exit__(None, None, None)
    _backend.record("uncertainty", _label(used))
    return out


def _label(backend: str) -> str:
    return {"triton": "triton", "c": "c", "compile": "torch.compile", "eager": "torch-eager"}[backend]


def _pick_backend(backend: str, device: torch.device, n_elements: int) -> str:
    if backend not in _k.BACKENDS:
        raise ValueError(f"backend must be one of {list(_k.BACKENDS)} (uncertainty_scores); got {backend!r}")
    if backend == "triton" and not _backend.use_triton(device):
        raise ValueError(
            f"backend='triton' needs triton and a CUDA device (or TRITON_INTERPRET=1) "
            f"(uncertainty_scores); got device {device}"
        )
    if backend == "c" and (device.type != "cpu" or not _k.has_c()):
        raise ValueError(
            f"backend='c' needs a CPU device and the compiled extension autoal_fast._C (uncertainty_scores); got device {device}"
        )
    if backend != "auto":
        return backend
    if _backend.use_triton(device):
        return "triton"
    if device.type == "cpu" and _k.has_c():
        return "c"
    if device.type == "cpu" and n_elements >= COMPILE_MIN_ELEMENTS and not _compile_broken:
        return "compile"
    return "eager"


def _rows_per_chunk(pool, n, c, t, do_logits, do_mc, use_head, device, backend, chunk_bytes) -> int:
    in_place = backend == "triton" and not use_head and pool.logits.device == device and (
        not do_mc or pool.mc_logits.device == device)
    if in_place:
        return n
    per_row = 4 * c * ((1 if do_logits else 0) + (t if do_mc else 0)) * _WORK_FACTOR[backend]
    if use_head:
        per_row += 4 * (t * c + int(pool.embeddings.shape[1]))
    return max(1, min(n, chunk_bytes // max(1, per_row)))


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x if x.device == device else x.to(device, non_blocking=False)


def _run(z, x, names, backend):
    if backend == "compile":
        try:
            return _k.fused_scores(z, x, names, backend="compile")
        except Exception as exc:  # a missing C++ compiler etc.: say so once, then run eagerly
            if isinstance(exc, ValueError):
                raise
            _compile_broken.append(repr(exc))
            warnings.warn(
                f"torch.compile failed for the fused uncertainty pass ({exc!r}); using eager torch "
                "(same math, slower)", RuntimeWarning, stacklevel=3)
            return _k.fused_scores(z, x, names, backend="eager")
    return _k.fused_scores(z, x, names, backend=backend)


def _overflow_error(name: str, row: int, caller: str) -> ValueError:
    return ValueError(
        f"{name} overflow float32 at row {row} ({caller}): finite float64 values beyond "
        f"+/-{torch.finfo(torch.float32).max:.4g}, which the float32 scoring cannot hold; rescale them"
    )


def _check_flags(flags: torch.Tensor, offset: int, use_head: bool, pool=None,
                 caller: str = "uncertainty_scores") -> None:
    bad = flags.nonzero()
    if bad.numel() == 0:
        return
    first = int(bad[0, 0])
    f = int(flags[first])
    row = offset + first
    if f & _k.BAD_LOGITS:
        if pool is not None and pool.logits.dtype == torch.float64 and bool(torch.isfinite(pool.logits[row]).all()):
            raise _overflow_error("logits", row, caller)
        raise ValueError(f"logits contain NaN/inf at row {row} ({caller}): clean the model outputs")
    if use_head:
        raise ValueError(
            f"MC-dropout logits from pool.head contain NaN/inf at row {row} ({caller}): "
            "check pool.embeddings and the head"
        )
    if pool is not None and pool.mc_logits is not None and pool.mc_logits.dtype == torch.float64 \
            and bool(torch.isfinite(pool.mc_logits[:, row]).all()):
        raise _overflow_error("mc_logits", row, caller)
    raise ValueError(
        f"mc_logits contain NaN/inf at row {row} (sample index along axis 1) ({caller}): "
        "clean the stochastic outputs"
    )


class _MCDropout:
    """Seeded MC-dropout passes of a head; restores each module's training flag."""

    def __init__(self, head: torch.nn.Module, seed: int, device: torch.device, caller: str = "uncertainty_scores"):
        self.head = head
        self.caller = caller
        self.seed = seed
        self.device = device
        p = next(head.parameters(), None)
        self.head_device = p.device if p is not None else device
        self.head_dtype = p.dtype if (p is not None and p.dtype.is_floating_point) else None
        self._flags = None
        self._rng = None

    def __enter__(self):
        self._flags = [(m, m.training) for m in self.head.modules()]
        cuda = [self.head_device] if self.head_device.type == "cuda" else []
        self._rng = torch.random.fork_rng(devices=cuda)
        self._rng.__enter__()
        torch.random.default_generator.manual_seed(self.seed)
        if cuda:
            with torch.cuda.device(self.head_device):
                torch.cuda.manual_seed(self.seed)
        self.head.train(True)
        return self

    def __exit__(self, *exc):
        for m, flag in self._flags:
            m.training = flag
        self._rng.__exit__(None, None, None)
        return False

    @torch.no_grad()
    def run(self, emb: torch.Tensor, t: int, c: int) -> torch.Tensor:
        e = emb.to(self.head_device)
        if self.head_dtype is not None and e.dtype != self.head_dtype:
            e = e.to(self.head_dtype)
        outs = []
        # A head may split itself into a deterministic prefix, run once, and the
        # stochastic part run per pass (``mc_prefix`` / ``mc_suffix``, as AutoAL's
        # FitNet does): same outputs and dropout draws, T-1 fewer prefix passes.
        split = hasattr(self.head, "mc_prefix") and hasattr(self.head, "mc_suffix")
        try:
            state = self.head.mc_prefix(e) if split else None
            y0 = self.head.mc_suffix(state) if split else self.head(e)
        except (RuntimeError, TypeError, ValueError) as exc:
            # a head built for other shapes fails inside torch ("mat1 and mat2 ..."):
            # say which argument it was (later passes run the same shapes)
            raise ValueError(
                f"pool.head failed on pool.embeddings rows of shape {tuple(e.shape)} ({self.caller}); it "
                f"must map (n, n_features) to logits (n, n_classes={c}): {type(exc).__name__}: {exc}"
            ) from exc
        for p in range(t):
            y = y0 if p == 0 else (self.head.mc_suffix(state) if split else self.head(e))
            if not isinstance(y, torch.Tensor) or tuple(y.shape) != (e.shape[0], c):
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ValueError(
                    f"pool.head must map embeddings of shape (n, n_features) to logits of shape "
                    f"(n, n_classes={c}) ({self.caller}); got {got}"
                )
            outs.append(y.to(self.device))
        return torch.stack(outs)


__all__ = ["uncertainty_scores", "SCORE_NAMES", "DEFAULT_CHUNK_BYTES", "MC_DROPOUT_SEED",
           "COMPILE_MIN_ELEMENTS"]
