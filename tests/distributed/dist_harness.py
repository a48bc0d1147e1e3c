"""Launch a function on W gloo processes on loopback and collect their results."""
import os
import pickle
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank, world, init_file, out_dir, fn, args):
    import faulthandler

    faulthandler.enable()  # a crash in C++ (gloo, OpenMP, _C) prints the Python stack
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        res = fn(rank, world, *args)
        with open(os.path.join(out_dir, f"{rank}.pkl"), "wb") as f:
            pickle.dump(res, f)
        dist.barrier()  # no rank tears gloo down while another is still in a collective
    except BaseException:
        dist.destroy_process_group()
        raise
    # The result is written and every rank is past the barrier. Leave without gloo's
    # teardown and the interpreter's: on a loaded machine that teardown now and then
    # aborts in C++ after all Python code has run ("terminate called without an active
    # exception", no Python frame; seen twice in CI runs, never inside a collective).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_world(fn, world, *args):
    """Run ``fn(rank, world, *args)`` on ``world`` processes; list of returns by rank."""
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_worker, args=(world, init_file, tmp, fn, args), nprocs=world, join=True)
        out = []
        for r in range(world):
            with open(os.path.join(tmp, f"{r}.pkl"), "rb") as f:
                out.append(pickle.load(f))
        return out


def shard_bounds(n, world, rank, uneven=True):
    """Uneven shard [lo, hi) of n rows for a rank (exercises unequal sizes)."""
    if uneven:
        cuts = [0] + [int(n * (r + 1) * (r + 2) / (world * (world + 1))) for r in range(world)]
        cuts[-1] = n
    else:
        cuts = [n * r // world for r in range(world + 1)]
    return cuts[rank], cuts[rank + 1]
