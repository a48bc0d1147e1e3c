"""MC dropout through a head split into prefix + per-pass suffix equals T full passes."""
import torch

import autoal_fast as aaf
from autoal_fast.search.nets import FitNet
from autoal_fast.strategies.uncertainty import uncertainty_scores


class _Plain(torch.nn.Module):
    """The same net without mc_prefix/mc_suffix: uncertainty_scores calls it T times."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, e):
        return self.net(e)


def test_split_head_gives_the_same_mc_scores():
    torch.manual_seed(0)
    net = FitNet(16, 5, hidden=32, dropout=0.3)
    net.norm.fit(torch.randn(100, 16))
    emb = torch.randn(300, 16)
    logits = torch.randn(300, 5)
    names = ("var_ratio", "bald", "mean_std")
    split = uncertainty_scores(aaf.PoolOutputs(logits, emb, head=net, n_mc=6), names)
    plain = uncertainty_scores(aaf.PoolOutputs(logits, emb, head=_Plain(net), n_mc=6), names)
    for nm in names:
        torch.testing.assert_close(split[nm], plain[nm], rtol=0, atol=0)
    assert float(split["bald"].abs().sum()) > 0  # dropout really acted
