"""Shared helpers for the pytest-benchmark suites.

Run: ``pytest benchmarks/ -m slow --benchmark-only`` (they are marked slow so
that the default test run skips them). Each op is timed against a baseline in
the same run; compare ratios, not absolute times (this machine is noisy).
"""
import resource

import pytest


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@pytest.fixture
def record(benchmark):
    """Attach extra figures (peak RSS, ratios) to the benchmark's JSON."""
    def _record(**kw):
        benchmark.extra_info.update(kw)
    return _record
