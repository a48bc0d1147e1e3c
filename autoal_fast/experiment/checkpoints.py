"""Checkpoints of an experiment: atomic writes, RNG state, resume.

A checkpoint (``checkpoint.pt`` in the run folder) is written atomically after every
round: the config, the finished runs, and the run in progress (labeled ids, round, RNG
states, AutoAL/ALBL state, the model for warm start). ``open_checkpoint`` starts one or
continues one whose config matches.
"""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from .config import ExperimentConfig

__all__ = ["CHECKPOINT", "open_checkpoint", "load_checkpoint", "save_atomic", "write_text_atomic",
           "rng_state", "set_rng_state"]

CHECKPOINT = "checkpoint.pt"
_FORMAT = 1


def save_atomic(obj, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(text: str, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    try:
        # Our own file: it holds RNG state tuples and strategy states, so the full unpickler is used.
        # Only resume from run folders you made.
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it to start over") from e
    if not isinstance(ck, dict) or ck.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {path} is not an autoal_fast experiment checkpoint (format {_FORMAT})")
    return ck


def open_checkpoint(out: str, config, resume: bool, verbose: bool):
    """The checkpoint to continue and the validated config: ``out/checkpoint.pt`` when
    ``resume`` and it exists (``config`` must then match it; None takes the checkpoint's),
    else a fresh one for ``config`` (None: the defaults). Returns ``(checkpoint, config)``."""
    ck_path = os.path.join(out, CHECKPOINT)
    ck = None
    if resume and os.path.exists(ck_path):
        ck = load_checkpoint(ck_path)
        saved = ExperimentConfig.from_dict(ck["config"])
        if config is None:
            config = saved
        else:
            mine = config.validate().to_dict()
            # a field added since the checkpoint was written holds its default there
            theirs = saved.to_dict()
            diff = sorted(k for k in mine if mine[k] != theirs.get(k))
            if diff:
                raise ValueError(
                    f"--resume: the config differs from the checkpoint in {out} in {diff} "
                    f"(checkpoint: {[theirs.get(k) for k in diff]}, now: {[mine[k] for k in diff]}); "
                    "resume with the same settings or use another --out")
    elif resume and verbose:
        print(f"no checkpoint in {out}: starting from the beginning", file=sys.stderr)
    cfg = (config or ExperimentConfig()).validate()
    if ck is None:
        ck = {"format": _FORMAT, "config": cfg.to_dict(), "runs": {}, "current": None}
    return ck, cfg


def rng_state() -> dict:
    st = np.random.get_state()
    return {"python": random.getstate(), "numpy": (st[0], torch.from_numpy(st[1].copy()), st[2], st[3], st[4]),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    st = state["numpy"]
    np.random.set_state((st[0], st[1].numpy(), st[2], st[3], st[4]))
    torch.set_rng_state(state["torch"])
