"""Triton kernels (installed as autoal_fast.kernels), each beside its torch reference."""
