"""Fused nearest-centre step for exact k-center greedy: Triton kernel + torch reference.

One op, ``min_dist_update(x, idx, c, mind, assign, cid)``: for each row i of
``x`` (all rows, or the rows listed in ``idx``) compute the exact Euclidean
distance ``d_i = ||x_i - c||`` in float32 (difference form, no
``||a||^2 + ||b||^2 - 2ab`` cancellation), and where ``mind[i] >= 0`` and
``d_i < mind[i]`` set ``mind[i] = d_i`` and ``assign[i] = cid``. Rows with
``mind[i] < 0`` are "already chosen" and never change. In the same pass the
kernel reduces the updated ``mind`` to per-block (max, argmax) partials, so a
full-pool step (distance update + running min + argmax) reads ``x`` once.

Memory traffic of a full step: ``n*d*itemsize(x)`` + ``12*n`` bytes
(mind read/write, assign write). The torch reference below reads ``x`` once
too but writes an (rows, d) temporary per chunk.

Shapes: x (n, d) float32/float16/bfloat16 with unit feature stride; idx (m,)
int64 or None; c (d,) float32; mind (n,) float32; assign (n,) int32.
"""
from __future__ import annotations

import torch

try:  # Triton is optional: the reference runs everywhere.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without triton
    triton = None
    tl = None

__all__ = ["min_dist_update", "min_dist_update_reference", "HAS_TRITON"]

HAS_TRITON = triton is not None

#: Rows per torch chunk are chosen so the (rows, d) float32 temporary stays
#: under this many bytes.
REFERENCE_CHUNK_BYTES = 64 << 20


def min_dist_update_reference(x, idx, c, mind, assign, cid, dist_out=None):
    """Torch reference of :func:`min_dist_update` (in place; returns (max, argmax) of mind
    over the visited rows as 0-d tensors, argmax the lowest row among ties)."""
    d = x.shape[1]
    m = x.shape[0] if idx is None else idx.shape[0]
    rows_per = max(1, REFERENCE_CHUNK_BYTES // max(1, 4 * d))
    best_v = None
    best_i = None
    for lo in range(0, m, rows_per):
        hi = min(m, lo + rows_per)
        if idx is None:
            rows = torch.arange(lo, hi, device=mind.device)
            xr = x[lo:hi]
        else:
            rows = idx[lo:hi]
            xr = x.index_select(0, rows)
        dist = (xr.to(torch.float32) - c).pow_(2).sum(1).sqrt_()
        if dist_out is not None:
            dist_out[lo:hi] = dist
        old = mind[rows]
        upd = (old >= 0) & (dist < old)
        new = torch.where(upd, dist, old)
        mind[rows] = new
        assign[rows] = torch.where(upd, torch.full_like(assign[rows], cid), assign[rows])
        j = int(torch.argmax(new))
        v = new[j]
        if best_v is None or bool(v > best_v):
            best_v, best_i = v, rows[j]
    return best_v, best_i


if HAS_TRITON:

    @triton.jit
    def _min_dist_kernel(x_ptr, idx_ptr, c_ptr, mind_ptr, assign_ptr, dist_ptr,
                         pmax_ptr, parg_ptr, m, d, stride_x, cid,
                         HAS_IDX: tl.constexpr, HAS_DIST: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        r = pid * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
        rmask = r < m
        if HAS_IDX:
            rows = tl.load(idx_ptr + r, mask=rmask, other=0).to(tl.int64)
        else:
            rows = r
        acc = tl.zeros([BLOCK_M], dtype=tl.float32)
        for d0 in range(0, d, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            cmask = cols < d
            xv = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :],
                         mask=rmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
            cv = tl.load(c_ptr + cols, mask=cmask, other=0.0)
            t = xv - cv[None, :]
            acc += tl.sum(t * t, axis=1)
        dist = tl.sqrt(acc)
        if HAS_DIST:
            tl.store(dist_ptr + r, dist, mask=rmask)
        old = tl.load(mind_ptr + rows, mask=rmask, other=-1.0)
        upd = (old >= 0.0) & (dist < old) & rmask
        tl.store(mind_ptr + rows, dist, mask=upd)
        tl.store(assign_ptr + rows, tl.full([BLOCK_M], 0, tl.int32) + cid, mask=upd)
        new = tl.where(upd, dist, old)
        new = tl.where(rmask, new, float("-inf"))
        bmax = tl.max(new, axis=0)
        barg = tl.argmax(new, axis=0, tie_break_left=True)
        # row id of the block's argmax (rows are increasing within a block
        # when idx is sorted, which the callers guarantee)
        brow = tl.sum(tl.where(tl.arange(0, BLOCK_M) == barg, rows, 0), axis=0)
        tl.store(pmax_ptr + pid, bmax)
        tl.store(parg_ptr + pid, brow)


def _block_sizes(d: int):
    """Block-size rule in one place: 64 rows x up to 128 features per tile."""
    if d <= 0:
        raise ValueError(f"x must have at least one feature (min_dist_update); got d={d}")
    block_d = min(128, triton.next_power_of_2(d))
    return 64, block_d


def min_dist_update(x, idx, c, mind, assign, cid, dist_out=None):
    """Triton launch of the fused step; same contract as the reference.

    Returns (max, argmax) over the visited rows as 0-d tensors on x's device;
    ties go to the lowest row (``idx`` must be sorted ascending for that).
    """
    if not HAS_TRITON:
        raise RuntimeError("min_dist_update needs triton; use min_dist_update_reference")
    if x.stride(1) != 1:
        x = x.contiguous()
    m = x.shape[0] if idx is None else idx.shape[0]
    d = x.shape[1]
    block_m, block_d = _block_sizes(d)
    nblocks = max(1, triton.cdiv(m, block_m))
    pmax = torch.empty(nblocks, dtype=torch.float32, device=x.device)
    parg = torch.empty(nblocks, dtype=torch.int64, device=x.device)
    dummy_idx = idx if idx is not None else parg
    dummy_dist = dist_out if dist_out is not None else pmax
    if m > 0:
        _min_dist_kernel[(nblocks,)](
            x, dummy_idx, c, mind, assign, dummy_dist, pmax, parg, m, d, x.stride(0), int(cid),
            HAS_IDX=idx is not None, HAS_DIST=dist_out is not None,
            BLOCK_M=block_m, BLOCK_D=block_d,
        )
    # gather, not pmax[j]: indexing with a 0-d tensor calls .item(), a host sync
    # (which also breaks CUDA graph capture of a step)
    j = torch.argmax(pmax).view(1)
    return pmax.gather(0, j).view(()), parg.gather(0, j).view(())
