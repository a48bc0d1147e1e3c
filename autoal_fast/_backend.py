"""Backend choice (Triton / torch / C++ / FAISS), made by device and reported.

Optional dependencies are imported lazily. A choice is never a silent fallback:
each op records what it ran on in ``last_used`` and ``backend_report()``
returns it, so a user (or a test) can see which path produced a result.

Environment overrides:
- ``AUTOAL_FAST_TRITON=0`` disables Triton kernels (torch paths are used).
- ``AUTOAL_FAST_FAISS=0`` disables FAISS (torch k-means is used).
"""
from __future__ import annotations

import functools
import os

import torch

#: op name -> backend used by its last call, e.g. {"kmeans": "faiss-cpu"}.
last_used: dict[str, str] = {}


@functools.lru_cache(maxsize=None)
def has_triton() -> bool:
    if os.environ.get("AUTOAL_FAST_TRITON", "1") == "0":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


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
    if os.environ.get("AUTOAL_FAST_FAISS", "1") == "0":
        return None
    try:
        import faiss
    except ImportError:
        return None
    return faiss


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
