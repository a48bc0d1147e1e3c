"""AutoAL's search: the soft top-k relaxation, the nets, the bi-level steps, candidate inputs.

- ``relax``: ``soft_topk`` (Triton on CUDA, torch on CPU; exact implicit gradient),
  ``aggregate``, ``count_penalty``, ``ranking_loss``.
- ``nets``: ``FitNet`` (task-model stand-in, MC-dropout capable) and ``SearchNet``
  (per-sample strategy weights + loss-prediction head).
- ``bilevel``: FitNet pre-training and the alternating first-order steps; ``FitReport``.
- ``candidates``: rank-normalised scores and binary picks of every candidate, once per
  split and per query.

The public entry point is ``autoal_fast.AutoAL``.
"""
from .bilevel import FitReport, SearchConfig
from .candidates import Candidates, compute_candidates, rank_normalize
from .nets import FitNet, SearchNet
from .relax import aggregate, count_penalty, ranking_loss, soft_topk

__all__ = ["soft_topk", "aggregate", "count_penalty", "ranking_loss", "FitNet", "SearchNet",
           "FitReport", "SearchConfig", "Candidates", "compute_candidates", "rank_normalize"]
