"""AutoAL(sample_value="influence"): B's values by their influence on the judge C through
FitNet's output layer, against a float64 autograd Hessian and per-sample gradients."""
import pytest
import torch
import torch.nn.functional as F

import autoal_fast as aaf
from autoal_fast.search.bilevel import influence_values, judged_values, sample_values
from autoal_fast.search.nets import FitNet


def _plain_influence(net, x_a, y_a, x_b, y_b, x_c, y_c, damping=0.01):
    """float64: H of A's mean loss in the output layer's (W, b) by autograd, damped by
    ``damping`` x its mean diagonal; each B sample's gradient dotted with H^-1 grad L_C."""
    net = net.double()
    n_cls = net.out.out_features
    theta = torch.cat([net.out.weight.detach(), net.out.bias.detach()[:, None]], 1).reshape(-1)

    def loss(th, x, y):
        t = th.reshape(n_cls, -1)
        z = net.mc_prefix(x.double()) @ t[:, :-1].T + t[:, -1]
        return F.cross_entropy(z, y)

    hess = torch.autograd.functional.hessian(lambda t: loss(t, x_a, y_a), theta)
    hess = hess + damping * hess.diagonal().mean() * torch.eye(hess.shape[0], dtype=hess.dtype)
    th = theta.clone().requires_grad_(True)
    g_c = torch.autograd.grad(loss(th, x_c, y_c), th)[0]
    v = torch.linalg.solve(hess, g_c)
    out = []
    for i in range(x_b.shape[0]):
        th = theta.clone().requires_grad_(True)
        out.append(torch.autograd.grad(loss(th, x_b[i:i + 1], y_b[i:i + 1]), th)[0] @ v)
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)


@pytest.mark.parametrize("d,n_cls,hidden,n_a,n_b,n_c,seed", [
    (6, 3, 5, 30, 10, 12, 0), (4, 2, 3, 2, 7, 2, 1), (8, 5, 16, 300, 40, 25, 2), (5, 4, 6, 9, 0, 5, 3)])
def test_influence_matches_autograd_hessian(d, n_cls, hidden, n_a, n_b, n_c, seed):
    torch.manual_seed(seed)
    net = FitNet(d, n_cls, hidden=hidden)
    net.norm.fit(torch.randn(50, d))
    g = torch.Generator().manual_seed(seed)

    def part(n):
        return torch.randn(n, d, generator=g) * 2, torch.randint(0, n_cls, (n,), generator=g)

    (x_a, y_a), (x_b, y_b), (x_c, y_c) = part(n_a), part(n_b), part(n_c)
    got = influence_values(net, x_a, y_a, x_b, y_b, x_c, y_c, chunk=7)  # several chunks of A
    assert got.shape == (n_b,) and got.dtype == torch.float32
    ref = _plain_influence(net, x_a, y_a, x_b, y_b, x_c, y_c)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)


def test_influence_ties_and_dispatch():
    torch.manual_seed(0)
    net = FitNet(4, 3, hidden=6)
    x = torch.randn(20, 4)
    y = torch.randint(0, 3, (20,))
    xb = torch.cat([x[:3], x[:3]])  # duplicates: equal values
    yb = torch.cat([y[:3], y[:3]])
    v = influence_values(net, x, y, xb, yb, x[10:], y[10:])
    assert torch.equal(v[:3], v[3:])
    assert torch.equal(judged_values("influence", net, x, y, xb, yb, x[10:], y[10:]), v)
    assert torch.equal(judged_values("dot", net, x, y, xb, yb, x[10:], y[10:]),
                       sample_values(net, xb, yb, x[10:], y[10:]))
    assert net.training  # mode restored


def test_influence_discounts_what_a_already_teaches():
    """Two B samples with the same one-step alignment to C's gradient: one along a direction
    A covers densely, one along a direction A has not seen. The influence values the second
    above the first; the dot value cannot tell them apart (by construction, equal)."""
    torch.manual_seed(0)
    net = FitNet(2, 2, hidden=2)
    with torch.no_grad():  # penultimate features = relu(x) on standardised inputs (identity norm)
        net.body[0].weight.copy_(torch.eye(2))
        net.body[0].bias.zero_()
        net.out.weight.zero_()
        net.out.bias.zero_()
    g = torch.Generator().manual_seed(1)
    x_a = torch.cat([torch.rand(200, 1, generator=g) * 3, torch.zeros(200, 1)], 1)  # A spans feature 0 only
    y_a = torch.randint(0, 2, (200,), generator=g)
    x_c = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    y_c = torch.tensor([0, 0])
    x_b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # along A's direction / along the unseen one
    y_b = torch.tensor([0, 0])
    dot = sample_values(net, x_b, y_b, x_c, y_c)
    inf = influence_values(net, x_a, y_a, x_b, y_b, x_c, y_c)
    torch.testing.assert_close(dot[0], dot[1])
    assert float(inf[1]) > 2 * float(inf[0]) > 0


def test_autoal_with_influence_values_fits_queries_and_repeats():
    g = torch.Generator().manual_seed(0)
    lab = aaf.PoolOutputs(torch.randn(60, 3, generator=g), torch.randn(60, 8, generator=g))
    y = torch.randint(0, 3, (60,), generator=g)
    pool = aaf.PoolOutputs(torch.randn(200, 3, generator=g), torch.randn(200, 8, generator=g))
    kw = dict(strategies=("entropy", "margin", "badge"), seed=3, pretrain_steps=10, search_steps=10,
              sample_value="influence")
    picks = []
    for _ in range(2):
        al = aaf.AutoAL(**kw)
        rep = al.fit(lab, y, k=10, n_pool=200)
        assert rep.sample_values is not None and torch.isfinite(rep.sample_values).all()
        picks.append(al.query(pool, 10).indices)
    assert torch.equal(picks[0], picks[1])
    with pytest.raises(ValueError, match="sample_value must be"):
        aaf.AutoAL(sample_value="influences")
    # with the credit and several splits too
    al = aaf.AutoAL(credit="effect", n_splits=2, **kw)
    al.fit(lab, y, k=10, n_pool=200)
    q = al.query(pool, 10)
    lab2 = aaf.PoolOutputs(torch.cat([lab.logits, pool.logits[q.indices]]),
                           torch.cat([lab.embeddings, pool.embeddings[q.indices]]))
    rep = al.fit(lab2, torch.cat([y, torch.randint(0, 3, (10,), generator=g)]), k=10, n_pool=190,
                 new=torch.arange(60, 70))
    assert rep.n_new == 10 and all(v == v for v in rep.real_credit.values())
