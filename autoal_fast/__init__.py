"""autoal_fast: fast, GPU-first AutoAL (differentiable active-learning strategy search)."""
from ._topk import TopK, topk
from ._version import __version__
from .pool import PoolOutputs
from .autoal import AutoAL, QueryResult

__all__ = ["__version__", "topk", "TopK", "PoolOutputs", "AutoAL", "QueryResult"]
