"""Fixtures shared across the test suite."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch CPU thread for the test: small nets and pools run several times faster
    on one thread than on two on a loaded 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
