"""autoal_fast: fast, GPU-first AutoAL (differentiable active-learning strategy search)."""
from . import strategies
from ._backend import backend_report
from ._topk import TopK, topk
from ._version import __version__
from .autoal import AutoAL, QueryResult
from .pool import PoolOutputs

__all__ = ["__version__", "topk", "TopK", "PoolOutputs", "AutoAL", "QueryResult", "strategies",
           "backend_report"]
