"""Candidate query strategies: pure functions of a pool's model outputs.

``names()`` lists them; ``score(name, pool)`` gives the per-sample score of an
uncertainty strategy (higher = query first); ``select(name, pool, k, ...)``
gives k unique indices into ``pool`` in selection order, for every strategy.

Definitions follow docs/method.md (the AutoAL paper's candidates plus the usual
baselines). Inputs are validated here, once; the private workers trust them.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from .._validation import check_finite_rows, check_fits_float32, check_k
from ..pool import PoolOutputs

UNCERTAINTY = ("entropy", "margin", "least_confidence", "var_ratio", "bald", "mean_std")
DIVERSITY = ("kmeans", "coreset", "badge", "random")
MC_BASED = ("var_ratio", "bald", "mean_std")
NEEDS_EMBEDDINGS = ("kmeans", "coreset", "badge")
#: The candidate set of the AutoAL paper.
PAPER_CANDIDATES = ("entropy", "margin", "least_confidence", "var_ratio", "bald", "mean_std", "kmeans")
#: AutoAL's default candidates: the paper's seven plus badge, so that the default prior
#: (margin + badge, the literature's two strongest single strategies) is among them.
AUTOAL_CANDIDATES = PAPER_CANDIDATES + ("badge",)

__all__ = ["names", "score", "select", "UNCERTAINTY", "DIVERSITY", "PAPER_CANDIDATES", "AUTOAL_CANDIDATES"]


def names() -> list[str]:
    """All strategy names, uncertainty ones first."""
    return list(UNCERTAINTY + DIVERSITY)


def check_name(name, caller: str, allowed=None) -> str:
    allowed = tuple(allowed) if allowed is not None else UNCERTAINTY + DIVERSITY
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"name must be one of {list(allowed)} ({caller}); got {name!r}")
    return name


def check_pool(pool, caller: str, name: str = "pool") -> PoolOutputs:
    if not isinstance(pool, PoolOutputs):
        raise TypeError(f"{name} must be an autoal_fast.PoolOutputs ({caller}); got {type(pool).__name__}")
    if pool.n_samples == 0:
        raise ValueError(f"{name} is empty ({caller}): it has 0 samples")
    return pool


def check_seed(seed, caller: str):
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be None, a torch.Generator or an int >= 0 ({caller}); got {seed!r}")
    return int(seed)


def check_needs(name: str, pool: PoolOutputs, caller: str) -> None:
    if name in NEEDS_EMBEDDINGS and pool.embeddings is None:
        raise ValueError(
            f"pool.embeddings is required by {name!r} ({caller}): pass "
            "PoolOutputs(logits, embeddings=...) with the model's penultimate features"
        )
    if name in MC_BASED and pool.mc_logits is None and (pool.head is None or pool.embeddings is None):
        raise ValueError(
            f"{name!r} needs stochastic predictions ({caller}): pass PoolOutputs(..., "
            "mc_logits=<(n_mc, n_samples, n_classes)>) or PoolOutputs(..., embeddings=..., "
            "head=<classifier head with dropout>) for MC dropout over the embeddings"
        )


def score(name: str, pool: PoolOutputs) -> torch.Tensor:
    """Per-sample score of an uncertainty strategy; higher = query first.

    Parameters
    ----------
    name : str
        One of ``UNCERTAINTY``.
    pool : PoolOutputs
        logits (and mc_logits or embeddings + head for var_ratio, bald, mean_std).

    Returns
    -------
    torch.Tensor of shape (n_samples,), float32, on the pool's device.
    """
    caller = f"score({name!r})"
    check_name(name, caller, UNCERTAINTY)
    check_pool(pool, caller)
    check_needs(name, pool, caller)
    from .uncertainty import uncertainty_scores

    return uncertainty_scores(pool, (name,), caller=caller)[name]


def _check_select_args(name, pool, k, labeled, seed, n_total, caller):
    """Validation of ``select``'s arguments (pool already checked); returns (k, seed)."""
    k = check_k(k, n_total, caller)
    check_needs(name, pool, caller)
    seed = check_seed(seed, caller)
    if labeled is not None:
        check_pool(labeled, caller, "labeled")
        if name == "coreset" and labeled.embeddings is None:
            raise ValueError(f"labeled.embeddings is required by 'coreset' ({caller})")
        if labeled.embeddings is not None and pool.embeddings is not None and \
                labeled.embeddings.shape[1] != pool.embeddings.shape[1]:
            raise ValueError(
                f"labeled.embeddings must have n_features={pool.embeddings.shape[1]} like "
                f"pool.embeddings ({caller}); got {labeled.embeddings.shape[1]}"
            )
    if name in NEEDS_EMBEDDINGS and pool.embeddings.shape[1] == 0 and pool.n_samples:
        raise ValueError(f"pool.embeddings must have at least one feature for {name!r} ({caller}); "
                         f"got shape {tuple(pool.embeddings.shape)}")
    if name == "badge":  # badge checks NaN/inf in its own (float32) pass; float64 beyond float32 here
        check_fits_float32(pool.logits, "pool.logits", caller)
        check_fits_float32(pool.embeddings, "pool.embeddings", caller)
    if name in ("kmeans", "coreset"):  # badge checks logits/embeddings in its own pass
        check_finite_rows(pool.embeddings, "pool.embeddings", caller)
        if labeled is not None and labeled.embeddings is not None:
            check_finite_rows(labeled.embeddings, "labeled.embeddings", caller)
    return k, seed


def select(name: str, pool: PoolOutputs, k: int, labeled=None, seed=None, group=None) -> torch.Tensor:
    """Pick k samples of ``pool`` with one strategy.

    Parameters
    ----------
    name : str
        One of ``names()``.
    pool : PoolOutputs
        The unlabeled pool; with a process group of several ranks, this rank's
        shard of it (shards in rank order).
    k : int
        How many to pick, ``1 <= k <= n_samples`` (of the whole pool when sharded).
    labeled : PoolOutputs, default=None
        The labeled set; coreset starts its k-center greedy from its embeddings.
        When sharded, every rank passes the whole labeled set.
    seed : int or torch.Generator, default=None
        For the seeded strategies (kmeans, badge, random). When sharded, None is
        drawn on rank 0 and shared; a Generator must be in the same state on
        every rank.
    group : torch.distributed ProcessGroup, default=None
        None uses the default group when torch.distributed is initialised. With
        more than one rank the pool is sharded (see ``strategies._dist``): the
        result is global indices into the concatenation of the shards, the same
        on every rank and equal to one process's answer on the concatenated pool
        (kmeans: with ``backend="torch"``, as FAISS is single-process only).

    Returns
    -------
    torch.LongTensor of shape (k,): unique indices into ``pool`` (global indices
    when sharded), in selection order.
    """
    caller = f"select({name!r})"
    check_name(name, caller)
    from ..distributed import reducer

    red = reducer(pool.n_samples if isinstance(pool, PoolOutputs) else 0, group)

    def validate():  # sharded: every rank validates, then all agree (one small all-gather),
        red.check_pool(pool, caller)  # so one rank's bad shard leaves no rank waiting in a collective
        return _check_select_args(name, pool, k, labeled, seed, red.n_total, caller)

    k, seed = red.agree(validate, caller)
    if name in UNCERTAINTY:
        from .uncertainty import uncertainty_scores

        # NaN/inf rows are found while scoring: agree before the merge's collective
        s = red.agree(lambda: uncertainty_scores(pool, (name,), caller=caller)[name], caller)
        return red.topk(s, k).to(s.device)
    seed = red.shared_seed(seed)
    if name == "random":
        from .random import select_random

        return select_random(red.n_total, k, seed, device=pool.device)
    if red.shard is not None:  # each diversity strategy has its own sharded steps
        from ._dist import select_distributed

        return select_distributed(name, pool, k, labeled, seed, red)
    if name == "kmeans":
        from .kmeans import select_kmeans

        return select_kmeans(pool, k, seed)
    if name == "coreset":
        from .coreset import select_coreset

        return select_coreset(pool, k, labeled)
    from .badge import select_badge

    return select_badge(pool, k, seed)
