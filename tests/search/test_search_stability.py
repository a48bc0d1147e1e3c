"""The search must stay finite when FitNet fits half B perfectly (tiny labeled sets)."""
import math

import torch

import autoal_fast as aaf
from autoal_fast.search.relax import ranking_loss


def test_ranking_loss_ignores_pairs_without_order():
    pred = torch.tensor([3.0, -2.0, 5.0, 1.0], requires_grad=True)
    target = torch.tensor([1e-9, 2e-9, 2e-9, 1e-9])  # all "zero": no order to learn
    loss = ranking_loss(pred, target, margin=1.0)
    loss.backward()
    assert float(loss.detach()) == 1.0  # the margin only
    assert torch.count_nonzero(pred.grad) == 0
    # ordered pairs inside the margin do give a gradient
    pred = torch.zeros(4, requires_grad=True)
    ranking_loss(pred, torch.tensor([2.0, 0.5, 1.0, 0.1]), margin=1.0).backward()
    assert torch.count_nonzero(pred.grad) == 4


def test_twenty_digits_labels_stay_finite():
    # 20 labeled digits with random-feature embeddings: FitNet drives half B's
    # losses to ~0 and, before the fix (no clipping, noise-ordered pairs), the
    # loss head's ranking loss diverged to inf under SGD on this seed.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16
    y = torch.tensor(y)
    g = torch.Generator().manual_seed(3)
    emb = torch.relu(x @ (torch.randn(64, 128, generator=g) / 8) * 3)
    logits = emb @ (torch.randn(128, 10, generator=g) / 11)
    perm = torch.randperm(len(y), generator=g)
    lab, pool = perm[:20], perm[20:1300]
    al = aaf.AutoAL(seed=3)
    rep = al.fit(aaf.PoolOutputs(logits[lab], emb[lab]), y[lab], k=20, n_pool=len(pool))
    for key in ("search_loss", "rank_loss", "grad_norm_search", "grad_norm_loss_head", "fit_loss"):
        assert all(math.isfinite(v) for v in getattr(rep, key)), key
    res = al.query(aaf.PoolOutputs(logits[pool], emb[pool]), 20)
    assert res.indices.unique().numel() == 20
