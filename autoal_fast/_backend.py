"""Backend choice (Triton / torch / C++ / FAISS), made by device and reported.

Optional dependencies are imported lazily. A choice is never a silent fallback:
each op records what it ran on in ``last_used`` and ``backend_report()``
returns it, so a user (or a test) can see which path produced a result.

Environment overrides:
- ``AUTOAL_FAST_TRITON=0`` disables Triton kernels (torch paths are used).
- ``AUTOAL_FAST_FAISS=0`` disables FAISS (torch k-means is used).
Both take 0/1, false/true, no/yes or off/on; another value raises ValueError.
"""
from __future__ import annotations

import functools
import importlib
import os

import torch

#: op name -> backend used by its last call, e.g. {"kmeans": "faiss-cpu"}.
last_used: dict[str, str] = {}


_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on", "")


def env_enabled(env: str) -> bool:
    """An on/off override: unset, 1/true/yes/on -> True; 0/false/no/off -> False (any
    case); anything else raises ValueError naming the variable rather than guessing."""
    value = os.environ.get(env, "1").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(f"environment variable {env} must be 0 or 1 (or false/true, no/yes, off/on); "
                     f"got {os.environ[env]!r}")


def _optional_module(name: str, env: str):
    """The module ``name``, or None when it is not installed or ``env`` turns it off."""
    if not env_enabled(env):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@functools.lru_cache(maxsize=None)
def has_triton() -> bool:
    return _optional_module("triton", "AUTOAL_FAST_TRITON") is not None


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(device: torch.device) -> bool:
    """Triton runs on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1."""
    if not has_triton():
        return False
    if torch.device(device).type == "cuda":
        return True
    return triton_interpret()


@functools.lru_cache(maxsize=None)
def faiss_module():
    """The faiss module, or None when it is not installed or disabled."""
    return _optional_module("faiss", "AUTOAL_FAST_FAISS")


def faiss_has_gpu() -> bool:
    faiss = faiss_module()
    return bool(faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)


def record(op: str, backend: str) -> str:
    last_used[op] = backend
    return backend


def backend_report() -> dict:
    """What is available and what each op last ran on."""
    return {
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "triton": has_triton(),
        "faiss": faiss_module() is not None,
        "faiss_gpu": faiss_has_gpu(),
        "last_used": dict(last_used),
    }
