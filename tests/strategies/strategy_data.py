"""Test data shared by the diversity-strategy tests."""
import numpy as np
import torch

import autoal_fast as aaf


def clustered(n, d, n_clusters=20, latent=4, seed=0):
    """float32 (n, d): Gaussian blobs around n_clusters centres, with a low-rank spread."""
    g = np.random.default_rng(seed)
    cent = g.standard_normal((n_clusters, d)) * 3
    lab = g.integers(0, n_clusters, n)
    proj = g.standard_normal((latent, d)) / latent ** 0.5
    x = cent[lab] + g.standard_normal((n, latent)) @ proj + 0.05 * g.standard_normal((n, d))
    return x.astype(np.float32)


def pool_of(x):
    """A PoolOutputs with dummy 2-class logits around embeddings x (numpy or torch)."""
    if isinstance(x, np.ndarray):
        return aaf.PoolOutputs(np.zeros((x.shape[0], 2), np.float32), x)
    return aaf.PoolOutputs(torch.zeros(x.shape[0], 2), torch.as_tensor(x))
