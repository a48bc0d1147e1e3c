"""random: k indices drawn uniformly without replacement, seeded."""
from __future__ import annotations

import torch

from .. import _backend
from ._greedy import make_generator


def select_random(n: int, k: int, seed=None, device=None) -> torch.LongTensor:
    """k distinct indices in [0, n), uniformly at random, in draw order.

    Parameters
    ----------
    n : int
        Pool size.
    k : int
        ``1 <= k <= n`` (validated by the caller).
    seed : int, torch.Generator or None, default=None
        An int seeds a fresh CPU generator, so the same seed gives the same
        picks on every device; a Generator is used as is (and advanced); None
        draws fresh entropy.
    device : torch.device, default=None
        Where the result goes (the pool's device).

    Returns
    -------
    torch.LongTensor of shape (k,).

    Examples
    --------
    >>> select_random(10, 3, seed=0).tolist() == select_random(10, 3, seed=0).tolist()
    True
    """
    gen = make_generator(seed)
    perm = torch.randperm(n, generator=gen, device=gen.device)[:k]
    _backend.record("random", "torch")
    return perm.to(device) if device is not None else perm
