"""The search's small networks: FitNet (task-model stand-in) and SearchNet (+ loss-prediction head).

Both take per-sample features (by default the task model's embeddings). A user may pass
a ``backbone`` nn.Module mapping their features to a vector; the MLP heads then sit on
top of it (the paper's setting is a ResNet-18 backbone over images).

Shapes: features (n, d_in) -> backbone -> (n, d_feat).
FitNet: (n, d_feat) -> logits (n, n_classes); it has dropout, so it can serve as the
MC-dropout head over embeddings.
SearchNet: features (n, d_feat) and candidate inputs (n, 2K) (rank scores, picks) ->
weights (n, K) on the simplex and predicted loss (n,) from the shared hidden layer.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Standardize", "FitNet", "SearchNet"]


class Standardize(nn.Module):
    """(x - mean) / std with statistics fixed from a sample (buffers, saved in state_dict)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "Standardize":
        x = x.to(self.mean.dtype)
        self.mean.copy_(x.mean(0))
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(self.mean)
        self.inv_std.copy_(1.0 / std.clamp_min(1e-6))
        return self

    def forward(self, x):
        return (x.to(self.mean.dtype) - self.mean) * self.inv_std


class FitNet(nn.Module):
    """Classifier standing in for the task model during the search.

    Parameters
    ----------
    d_in : int
        Input feature dimension (the embedding dimension by default).
    n_classes : int
    hidden : int, default=128
    dropout : float, default=0.2
        Dropout before the last layer; it makes FitNet an MC-dropout head.
    backbone : nn.Module, default=None
        Optional user module mapping inputs (n, ...) to (n, d_feat); then ``d_feat``
        must be passed as ``d_in`` and inputs are not standardised.
    """

    def __init__(self, d_in: int, n_classes: int, hidden: int = 128, dropout: float = 0.2,
                 backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = nn.Identity() if backbone is None else backbone
        self.norm = Standardize(d_in) if backbone is None else nn.Identity()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.out(self.body(self.norm(self.backbone(x))))

    # MC dropout in two parts: the deterministic prefix once, the dropout + output
    # layer per pass (uncertainty_scores uses these when a head has them). The
    # passes draw the same dropout masks as calling forward T times.
    def mc_prefix(self, x):
        return self.body[1](self.body[0](self.norm(self.backbone(x))))

    def mc_suffix(self, h):
        return self.out(self.body[2](h))


class SearchNet(nn.Module):
    """Per-sample strategy weights W(x) (softmax over K) and the loss-prediction head.

    Input: the sample's features and its candidate inputs (rank-normalised scores and
    binary picks of the K strategies, shape (n, 2K)). The trunk is a two-layer MLP; the
    weight head and the loss-prediction head both read the trunk's hidden features, so
    the learning-loss objective shapes the representation the weights come from.

    Parameters
    ----------
    d_in : int
    n_strategies : int
    hidden : int, default=64
    backbone : nn.Module, default=None
        As in FitNet.
    prior : sequence of float, length K, default=None
        Initial weights (positive, summing to 1): the weight head starts at bias
        ``log(prior)`` and zero slope, so W(x) = prior for every x. None: uniform.
    per_sample : bool, default=True
        W depends on x (the paper's SearchNet). False: one weight vector for every
        sample, ``softmax(bias)`` (K parameters: it cannot memorise which samples of a
        small B to take, only how much each strategy's picks are worth); the loss head
        still reads the trunk.
    """

    def __init__(self, d_in: int, n_strategies: int, hidden: int = 64, backbone: nn.Module | None = None,
                 prior=None, per_sample: bool = True):
        super().__init__()
        self.backbone = nn.Identity() if backbone is None else backbone
        self.norm = Standardize(d_in) if backbone is None else nn.Identity()
        self.trunk = nn.Sequential(
            nn.Linear(d_in + 2 * n_strategies, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.per_sample = bool(per_sample)
        self.weight_head = nn.Linear(hidden, n_strategies)
        # loss-prediction head (learning loss): a small MLP on the shared hidden features
        self.loss_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.weight_head.weight)  # start from the prior (default uniform) for every x
        nn.init.zeros_(self.weight_head.bias)
        if prior is not None:
            with torch.no_grad():
                self.weight_head.bias.copy_(torch.log(torch.as_tensor(prior, dtype=torch.float32)))

    def forward(self, x, cand, predict_loss: bool = True):
        """Returns (weights (n, K), predicted loss (n,) or None when ``predict_loss`` is False)."""
        h = self.trunk(torch.cat([self.norm(self.backbone(x)), cand.to(torch.float32)], dim=1))
        if self.per_sample:
            w = torch.softmax(self.weight_head(h), dim=1)
        else:
            w = self.global_weights().expand(h.shape[0], -1)
        return w, (self.loss_head(h).squeeze(1) if predict_loss else None)

    def global_weights(self) -> torch.Tensor:
        """The one weight vector (K,) of ``per_sample=False``: ``softmax(bias)``."""
        return torch.softmax(self.weight_head.bias, dim=0)

    def search_parameters(self):
        """Parameters of the trunk and the weight head (the loss head is reported apart)."""
        return [p for n, p in self.named_parameters() if not n.startswith("loss_head.")]
