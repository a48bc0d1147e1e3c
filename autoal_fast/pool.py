"""PoolOutputs: a model's outputs on a pool, validated once on construction."""
from __future__ import annotations

import torch

from ._validation import as_tensor_view, check_float_dtype, check_int, check_ndim


class PoolOutputs:
    """A model's outputs on a set of samples (a pool or a labeled set).

    Parameters
    ----------
    logits : torch.Tensor or numpy.ndarray of shape (n_samples, n_classes)
        Pre-softmax class scores; float16, bfloat16, float32 or float64. numpy
        arrays (including ``np.load(..., mmap_mode="r")``) are wrapped without
        a copy.
    embeddings : array of shape (n_samples, n_features), default=None
        Penultimate-layer features; needed by kmeans, coreset and badge.
    mc_logits : array of shape (n_mc, n_samples, n_classes), default=None
        T stochastic forward passes (e.g. MC dropout); needed by var_ratio,
        bald and mean_std unless a ``head`` for MC dropout is given.
    head : torch.nn.Module, default=None
        Classifier head mapping embeddings to logits with dropout in it; when
        ``mc_logits`` is absent, the MC strategies run it ``n_mc`` times in
        train mode over the embeddings (cheap head passes, not full passes).
    n_mc : int, default=10
        Number of MC-dropout passes of ``head`` (>= 2); unused when
        ``mc_logits`` is given (its first axis is T). The passes are seeded
        (see ``autoal_fast.strategies.uncertainty.uncertainty_scores``).

    All arrays must agree on n_samples, and logits/mc_logits on n_classes.
    Values are not scanned here (that would read the whole pool); NaN/inf in
    the logits are reported by the strategies that read them.
    """

    def __init__(self, logits, embeddings=None, mc_logits=None, head=None, n_mc=10):
        caller = "PoolOutputs"
        self.logits = as_tensor_view(logits, "logits", caller)
        check_float_dtype(self.logits, "logits", caller)
        check_ndim(self.logits, 2, "logits", caller, "(n_samples, n_classes)")
        n, c = self.logits.shape
        if c < 2:
            raise ValueError(f"logits must have at least 2 classes ({caller}); got shape {tuple(self.logits.shape)}")
        self.embeddings = None
        if embeddings is not None:
            self.embeddings = as_tensor_view(embeddings, "embeddings", caller)
            check_float_dtype(self.embeddings, "embeddings", caller)
            check_ndim(self.embeddings, 2, "embeddings", caller, "(n_samples, n_features)")
            if self.embeddings.shape[0] != n:
                raise ValueError(
                    f"embeddings must have n_samples={n} rows like logits ({caller}); "
                    f"got shape {tuple(self.embeddings.shape)}"
                )
        self.mc_logits = None
        if mc_logits is not None:
            self.mc_logits = as_tensor_view(mc_logits, "mc_logits", caller)
            check_float_dtype(self.mc_logits, "mc_logits", caller)
            check_ndim(self.mc_logits, 3, "mc_logits", caller, "(n_mc, n_samples, n_classes)")
            if tuple(self.mc_logits.shape[1:]) != (n, c):
                raise ValueError(
                    f"mc_logits must have shape (n_mc, {n}, {c}) to match logits ({caller}); "
                    f"got {tuple(self.mc_logits.shape)}"
                )
        if head is not None and not isinstance(head, torch.nn.Module):
            raise TypeError(f"head must be a torch.nn.Module ({caller}); got {type(head).__name__}")
        self.head = head
        self.n_mc = check_int(n_mc, "n_mc", caller, low=2)

    @property
    def n_samples(self) -> int:
        return int(self.logits.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[1])

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        parts = [f"logits={tuple(self.logits.shape)}"]
        if self.embeddings is not None:
            parts.append(f"embeddings={tuple(self.embeddings.shape)}")
        if self.mc_logits is not None:
            parts.append(f"mc_logits={tuple(self.mc_logits.shape)}")
        if self.head is not None:
            parts.append("head=" + type(self.head).__name__)
        return f"PoolOutputs({', '.join(parts)}, dtype={self.logits.dtype}, device={self.device})"
