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

from ..distributed import LOCAL
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


def rank_normalize_global(score: torch.Tensor, shard) -> torch.Tensor:
    """``rank_normalize`` over a pool sharded across a process group (shard: a
    ``distributed.Shard``): this rank's rows of the result on the whole pool.

    The sorted scores of every rank are all-gathered once (n_total values, float64
    on the wire) and each local score's count of greater and equal values is read
    off by binary search; the arithmetic is then rank_normalize's, so the values
    are bit-identical to the single-process ones.
    """
    import numpy as np

    from ..distributed import _all_gather_rows

    n = shard.n_total
    local = score.detach().to(torch.float32).cpu()
    if n == 1:
        return torch.ones(local.numel(), dtype=torch.float32, device=score.device)
    width = max(shard.sizes)
    buf = torch.zeros(width, dtype=torch.float64)
    buf[:local.numel()] = torch.sort(local).values.double()
    allv = _all_gather_rows(buf, shard.group).cpu().numpy()
    every = np.sort(np.concatenate([allv[r * width:r * width + s] for r, s in enumerate(shard.sizes)]))
    v = local.double().numpy()
    right = np.searchsorted(every, v, side="right")
    left = np.searchsorted(every, v, side="left")
    mean_pos = (n - right).astype(np.float64) + ((right - left).astype(np.float64) - 1) / 2
    return torch.from_numpy(1.0 - mean_pos / (n - 1)).to(device=score.device, dtype=torch.float32)


def compute_candidates(pool: PoolOutputs, names, k: int, labeled: PoolOutputs | None = None,
                       seed=None, reducer=None) -> Candidates:
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
    reducer : distributed.LocalReducer or GroupReducer, default=None (local)
        With a ``GroupReducer``, the pool is one rank's shard of a pool spread over a
        process group: ranks and picks are those of the whole pool (global ranks,
        global picks), returned for this rank's rows.
    """
    from ..distributed import LocalReducer
    from ..strategies import select

    n = pool.n_samples
    red = reducer if reducer is not None else LocalReducer(n)
    names = tuple(names)
    ranks = torch.zeros((n, len(names)), dtype=torch.float32, device=pool.device)
    picks = torch.zeros((n, len(names)), dtype=torch.float32, device=pool.device)
    unc = [nm for nm in names if nm in UNCERTAINTY]
    scores = {}
    if unc:
        from ..strategies.uncertainty import uncertainty_scores

        # sharded, NaN/inf rows are found while scoring: agree before the collectives below
        scores = red.agree(lambda: uncertainty_scores(pool, tuple(unc)), "AutoAL.query candidates")
    selected = {}
    sel = [nm for nm in names if nm not in scores]
    if red.shard is None and pool.device.type == "cuda" and CONCURRENT_CUDA and len(sel) >= 2:
        selected = _select_concurrently(sel, pool, k, labeled, seed)
    for j, nm in enumerate(names):
        if nm in scores:
            sc = scores[nm].to(torch.float32)
            ranks[:, j] = red.rank_normalize(sc)
            picks[red.local_rows(red.topk(sc, k), pool.device), j] = 1.0
        else:
            idx = selected.get(nm)
            if idx is None:
                idx = select(nm, pool, k, labeled=labeled, seed=seed, group=red.group)
            picks[red.local_rows(idx, pool.device), j] = 1.0
            ranks[:, j] = picks[:, j]
    return Candidates(names, ranks, picks, int(k))


#: On CUDA, run the selection strategies (kmeans, coreset, badge, random) of one
#: query at the same time, each in its own thread and CUDA stream: coreset is a
#: sequence of bandwidth-bound passes with a host decision per step, k-means
#: mostly GEMMs and graph replays, so they overlap. Picks are the same as one
#: after the other (each strategy's work stays in order on its own stream);
#: benchmarks/gpu/scale.py measures both and compares the picks.
CONCURRENT_CUDA = True


def _select_concurrently(names, pool: PoolOutputs, k: int, labeled, seed) -> dict:
    """{name: picks} of ``strategies.select`` for names, each on its own CUDA stream."""
    from concurrent.futures import ThreadPoolExecutor

    from ..strategies import select

    main = torch.cuda.current_stream(pool.device)

    def run(nm):
        stream = torch.cuda.Stream(device=pool.device)
        stream.wait_stream(main)  # the pool's tensors are ready
        with torch.cuda.device(pool.device), torch.cuda.stream(stream):
            idx = select(nm, pool, k, labeled=labeled, seed=seed, group=LOCAL).to(pool.device)
            done = torch.cuda.Event()
            done.record(stream)
        return idx, done

    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="autoal-select") as ex:
        futures = {nm: ex.submit(run, nm) for nm in names}
        out = {}
        for nm, fut in futures.items():
            idx, done = fut.result()
            main.wait_event(done)
            idx.record_stream(main)  # made on the side stream, used on the main one
            out[nm] = idx
    return out

