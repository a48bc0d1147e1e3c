"""Pick the 1000 most uncertain samples of a random 1M-sample pool.

Run: python examples/demo.py
"""
import time

import torch

import autoal_fast


def main():
    torch.manual_seed(0)
    logits = torch.randn(1_000_000, 10)
    t0 = time.perf_counter()
    logp = torch.log_softmax(logits, dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    values, ids = autoal_fast.topk(entropy, 1000)
    dt = time.perf_counter() - t0
    print(f"autoal_fast {autoal_fast.__version__}: picked {ids.numel()} of {logits.shape[0]} "
          f"samples in {dt * 1e3:.1f} ms; first ids {ids[:5].tolist()}, "
          f"entropy {values[0]:.4f} .. {values[-1]:.4f}")


if __name__ == "__main__":
    main()
