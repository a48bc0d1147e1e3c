"""Candidate inputs of the search, computed once per split (on B) and once per query (on U).

docs/method.md step 4: for each candidate strategy k, the binary picks
``S_k(x) = 1`` if strategy k picks x among its top ``k_sel`` of the set, and a continuous
score rank-normalised to [0, 1] (1 = the strategy's first choice). All uncertainty
strategies come from one fused pass (``strategies.uncertainty.uncertainty_scores``); the
selection strategies (kmeans, coreset, badge, random) give picks only, so their
continuous score is the pick itself. Nothing here runs inside an optimisation step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._topk import topk
from ..pool import PoolOutputs
from ..strategies import UNCERTAINTY

__all__ = ["Candidates", "rank_normalize", "compute_candidates"]


@dataclass
class Candidates:
    """Candidate inputs of n samples for K strategies.

    Attributes
    ----------
    names : tuple of str, length K
    ranks : torch.Tensor of shape (n, K), float32 in [0, 1]
    picks : torch.Tensor of shape (n, K), float32 in {0, 1}; each column sums to k
    k : int
        How many each strategy picked.
    """

    names: tuple
    ranks: torch.Tensor
    picks: torch.Tensor
    k: int

    def inputs(self) -> torch.Tensor:
        """SearchNet's candidate input, shape (n, 2K): ranks then picks."""
        return torch.cat([self.ranks, self.picks], dim=1)

    def to(self, device) -> "Candidates":
        return Candidates(self.names, self.ranks.to(device), self.picks.to(device), self.k)


def rank_normalize(score: torch.Tensor) -> torch.Tensor:
    """Ranks scaled to [0, 1]: 1 for the highest score, 0 for the lowest; tied scores share
    their mean rank (so the result does not depend on the samples' order).

    Shape (n,) -> (n,) float32 on the score's device.
    """
    n = score.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=score.device)
    if n == 1:
        return out.fill_(1.0)
    vals, order = torch.sort(score, descending=True, stable=True)
    _, counts = torch.unique_consecutive(vals, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    mean_pos = (starts.to(torch.float64) + (counts.to(torch.float64) - 1) / 2).repeat_interleave(counts)
    out[order] = (1.0 - mean_pos / (n - 1)).to(torch.float32)
    return out


def compute_candidates(pool: PoolOutputs, names, k: int, labeled: PoolOutputs | None = None,
                       seed=None) -> Candidates:
    """Ranks and picks of every candidate on ``pool`` (validated by the caller).

    Parameters
    ----------
    pool : PoolOutputs
        Logits (+ embeddings, + stochastic predictions) of the set to score.
    names : sequence of str
        Candidate strategies, in column order.
    k : int
        Picks per strategy (``1 <= k <= n``).
    labeled : PoolOutputs, default=None
        The labeled set, for coreset.
    seed : int, default=None
        Seed of the seeded strategies (kmeans, badge, random).
    """
    from ..strategies import select

    n = pool.n_samples
    names = tuple(names)
    ranks = torch.zeros((n, len(names)), dtype=torch.float32, device=pool.device)
    picks = torch.zeros((n, len(names)), dtype=torch.float32, device=pool.device)
    unc = [nm for nm in names if nm in UNCERTAINTY]
    scores = {}
    if unc:
        from ..strategies.uncertainty import uncertainty_scores

        scores = uncertainty_scores(pool, tuple(unc))
    for j, nm in enumerate(names):
        if nm in scores:
            sc = scores[nm].to(torch.float32)
            ranks[:, j] = rank_normalize(sc)
            idx = topk(sc, k)[1].to(pool.device)
            picks[idx, j] = 1.0
        else:
            idx = select(nm, pool, k, labeled=labeled, seed=seed).to(pool.device)
            picks[idx, j] = 1.0
            ranks[:, j] = picks[:, j]
    return Candidates(names, ranks, picks, int(k))
