"""Task models for the active-learning experiments (no pretrained weights).

Every model maps a batch to ``(logits, embeddings)`` and ends in ``model.head``:
``Dropout(p) -> Linear(emb_dim, n_classes)`` over the embeddings, so that
``logits == model.head(embeddings)`` in eval mode and the head run in train mode
gives cheap MC-dropout samples over cached embeddings (what
:class:`autoal_fast.PoolOutputs` ``head=`` expects).

- :class:`SmallCNN` for small grey images (28x28 Fashion-MNIST; any h, w >= 12).
- :class:`CNN1D` for 1-D signals (MNIST-1D).
- :class:`MLP` for flat features (sklearn digits, .npz features).
- :class:`ResNet18` for 32x32 colour images (the CIFAR variant: 3x3 stem, no
  max-pool), BatchNorm, trained from scratch.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["SmallCNN", "CNN1D", "MLP", "ResNet18", "build_model", "MODELS"]

MODELS = ("auto", "cnn", "cnn1d", "mlp", "resnet18")


def _head(emb_dim: int, n_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(emb_dim, n_classes))


class SmallCNN(nn.Module):
    """LeNet-style CNN: two 5x5 conv + max-pool blocks, a 128-d embedding, a dropout head.

    Input shape (n, in_channels, h, w); output ``(logits (n, n_classes), embeddings (n, emb_dim))``.
    """

    def __init__(self, n_classes: int, in_channels: int = 1, emb_dim: int = 128, dropout: float = 0.5,
                 width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 5)
        self.conv2 = nn.Conv2d(width, 2 * width, 5)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(2 * width * 16, emb_dim)
        self.head = _head(emb_dim, n_classes, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(torch.flatten(self.pool(x), 1)))

    def forward(self, x):
        e = self.embed(x)
        return self.head(e), e


class CNN1D(nn.Module):
    """Three 1-D conv layers (the second and third with stride 2), a 128-d embedding, a dropout head.

    Input shape (n, length) or (n, 1, length); output ``(logits, embeddings (n, emb_dim))``.
    """

    def __init__(self, n_classes: int, length: int, emb_dim: int = 128, dropout: float = 0.5,
                 width: int = 32):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=2), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )
        out_len = (((length + 1) // 2) + 1) // 2
        self.fc = nn.Linear(width * out_len, emb_dim)
        self.head = _head(emb_dim, n_classes, dropout)

    def forward(self, x):
        x = x.reshape(x.shape[0], 1, -1)
        e = F.relu(self.fc(torch.flatten(self.convs(x), 1)))
        return self.head(e), e


class MLP(nn.Module):
    """Two hidden ReLU layers; the second is the embedding. Input (n, in_features)."""

    def __init__(self, n_classes: int, in_features: int, hidden: int = 256, emb_dim: int = 128,
                 dropout: float = 0.5):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                  nn.Linear(hidden, emb_dim), nn.ReLU())
        self.head = _head(emb_dim, n_classes, dropout)

    def forward(self, x):
        e = self.body(x)
        return self.head(e), e


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool); 512-d embedding; dropout head."""

    def __init__(self, n_classes: int, in_channels: int = 3, dropout: float = 0.3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = _head(512, n_classes, dropout)

    def forward(self, x):
        e = torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)
        return self.head(e), e


def build_model(name: str, kind: str, input_shape, n_classes: int) -> nn.Module:
    """The task model for a dataset: ``name`` in :data:`MODELS` (``"auto"`` picks by ``kind``:
    flat -> MLP, signal -> CNN1D, grey -> SmallCNN, colour -> ResNet18)."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)} (build_model); got {name!r}")
    if name == "auto":
        name = {"flat": "mlp", "signal": "cnn1d", "grey": "cnn", "colour": "resnet18"}[kind]
    if name in ("mlp", "cnn1d"):
        n_in = 1
        for s in input_shape:
            n_in *= int(s)
        return MLP(n_classes, n_in) if name == "mlp" else CNN1D(n_classes, n_in)
    if len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs image inputs (c, h, w) (build_model); got input shape "
                         f"{tuple(input_shape)}: use model='mlp' for flat features")
    if name == "cnn":
        if min(input_shape[1:]) < 12:
            raise ValueError(f"model 'cnn' needs images of at least 12x12 (build_model); got {tuple(input_shape)}")
        return SmallCNN(n_classes, in_channels=int(input_shape[0]))
    return ResNet18(n_classes, in_channels=int(input_shape[0]))
