"""The bi-level search core on synthetic candidate inputs (no strategies involved)."""
import math

import pytest
import torch
import torch.nn.functional as F

from autoal_fast.search.bilevel import FitReport, SearchConfig, alternate, pretrain_fitnet
from autoal_fast.search.candidates import rank_normalize
from autoal_fast.search.nets import FitNet, SearchNet
from autoal_fast.search.relax import aggregate, count_penalty, ranking_loss, soft_topk


pytestmark = pytest.mark.usefixtures("one_thread")


def _task(seed=0, n=600, d=16, C=4, K=4, ratio=0.05):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(C, d, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    x = centers[y] + 1.5 * torch.randn(n, d, generator=g)
    ia, ib = torch.arange(0, n // 2), torch.arange(n // 2, n)
    fit = FitNet(d, C)
    fit.norm.fit(x)
    sn = SearchNet(d, K)
    sn.norm.fit(x)
    opt_f = torch.optim.Adam(fit.parameters(), 5e-3)
    opt_s = torch.optim.SGD(sn.parameters(), lr=0.05, momentum=0.9)
    pretrain_fitnet(fit, opt_f, x[ia], y[ia], 100, 1024, g)
    with torch.no_grad():
        fit.eval()
        loss_b = F.cross_entropy(fit(x[ib]), y[ib], reduction="none")
    nb = len(ib)
    kb = math.ceil(ratio * nb)
    # column 0 is the informative strategy (ranks FitNet's loss, a little noise); the rest are noise
    cols = [loss_b + 0.05 * torch.randn(nb, generator=g)] + [torch.randn(nb, generator=g) for _ in range(K - 1)]
    ranks = torch.stack([rank_normalize(c) for c in cols], 1)
    picks = torch.zeros_like(ranks)
    for j in range(K):
        picks[torch.topk(ranks[:, j], kb).indices, j] = 1
    return dict(x=x, y=y, ia=ia, ib=ib, fit=fit, sn=sn, opt_f=opt_f, opt_s=opt_s, ranks=ranks, picks=picks,
                loss_b=loss_b, kb=kb, ratio=ratio, g=g)


def _lift(sn, t, cfg):
    """SearchNet's objective on fixed FitNet losses (the pre-trained FitNet's)."""
    with torch.no_grad():
        sn.eval()
        w, _ = sn(t["x"][t["ib"]], torch.cat([t["ranks"], t["picks"]], 1))
        a = aggregate(w, t["picks"], t["ranks"], cfg.theta, cfg.rank_mix)
        s = soft_topk(a, float(t["kb"]), cfg.temperature)
        sn.train()
        return float((s * t["loss_b"]).sum() / (t["kb"] * t["loss_b"].mean())), w, a


def test_searchnet_gets_gradient_and_objective_improves():
    t = _task(seed=0)
    cfg = SearchConfig(search_steps=80)
    before, w0, _ = _lift(t["sn"], t, cfg)
    rep = FitReport()
    ib = t["ib"]
    alternate(t["fit"], t["sn"], t["opt_f"], t["opt_s"], t["x"][t["ia"]], t["y"][t["ia"]], t["x"][ib], t["y"][ib],
              torch.cat([t["ranks"], t["picks"]], 1), t["ranks"], t["picks"], t["ratio"], cfg, t["g"], rep)
    assert len(rep.lift) == 80 and len(rep.grad_norm_search) == 80
    assert min(rep.grad_norm_search[:10]) > 0 and min(rep.grad_norm_loss_head) > 0 and min(rep.grad_norm_fit) > 0
    after, w1, _ = _lift(t["sn"], t, cfg)
    assert after > before + 0.5, (before, after)
    # the soft top-k selects exactly the target every step
    assert all(abs(c - rep.target_count) < 1e-3 for c in rep.topk_count)
    # the loss head learned to rank FitNet's losses (ranking loss falls from ~margin)
    assert sum(rep.rank_loss[-10:]) / 10 < rep.rank_loss[0]


def test_weights_concentrate_on_informative_candidate():
    t = _task(seed=1)
    cfg = SearchConfig(search_steps=80)
    rep = FitReport()
    ib = t["ib"]
    alternate(t["fit"], t["sn"], t["opt_f"], t["opt_s"], t["x"][t["ia"]], t["y"][t["ia"]], t["x"][ib], t["y"][ib],
              torch.cat([t["ranks"], t["picks"]], 1), t["ranks"], t["picks"], t["ratio"], cfg, t["g"], rep)
    _, w, a = _lift(t["sn"], t, cfg)
    share = w.mean(0)
    assert share[0] > 0.8, share
    top = set(torch.topk(a, t["kb"]).indices.tolist())
    informative = set(torch.nonzero(t["picks"][:, 0]).flatten().tolist())
    overlap = len(top & informative) / t["kb"]
    chance = t["kb"] / len(ib)
    assert overlap > 0.8 and overlap > 10 * chance, (overlap, chance)


def test_count_penalty_and_ranking_loss_have_gradients():
    a = torch.randn(100, requires_grad=True)
    pen, count = count_penalty(a, 10.0, 0.1)
    pen.backward()
    assert a.grad.abs().sum() > 0 and float(pen.detach()) > 0
    # at the target the penalty is zero
    a0 = torch.cat([torch.full((10,), 5.0), torch.full((90,), -5.0)])
    p0, c0 = count_penalty(a0, 10.0, 0.1)
    assert abs(float(c0) - 10) < 1e-6 and float(p0) < 1e-8
    pred = torch.randn(20, requires_grad=True)
    target = torch.rand(20)
    loss = ranking_loss(pred, target)
    loss.backward()
    assert pred.grad.abs().sum() > 0
    # predictions ordered like the targets with a wide gap give zero loss
    assert float(ranking_loss(target * 100, target, margin=0.0)) == 0.0


def test_aggregate_paper_form():
    w = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    picks = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ranks = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert torch.allclose(aggregate(w, picks, ranks, 0.5, 0.0), torch.tensor([0.0, -0.5]))
    mixed = aggregate(w, picks, ranks, 0.5, 0.1)
    # votes = 0.9 * picks + 0.1 * ranks
    assert torch.allclose(mixed, torch.tensor([0.5 * (0.99 - 0.5) + 0.5 * (0.01 - 0.5), 0.02 - 0.5]))
