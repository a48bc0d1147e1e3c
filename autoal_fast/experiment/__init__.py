"""The experiment harness on top of the library: pool-based active-learning runs.

- ``config``: ``ExperimentConfig`` and the strategy names an experiment accepts.
- ``loop``: the AL round loop and the query dispatch (``run_experiment``, ``query_indices``).
- ``checkpoints``: atomic writes, RNG state, resume.
- ``reports``: AUBC, summaries, the console table, CSV, plots, merging runs.
- ``datasets``: digits, Fashion-MNIST, ``.npz`` files.
- ``models``: the task models (MLP, small CNN, ResNet-18).
- ``alb``: the ALBL bandit baseline.

The library (``autoal_fast`` outside this package) never imports it.

>>> from autoal_fast.experiment import ExperimentConfig, run_experiment
>>> cfg = ExperimentConfig(strategies=("entropy", "random"), rounds=2, seeds=(0,))   # doctest: +SKIP
>>> results = run_experiment(cfg, out="runs/demo")                                  # doctest: +SKIP
"""
from .checkpoints import CHECKPOINT
from .config import EXTRA_STRATEGIES, ExperimentConfig, resolve_strategies, strategy_names
from .loop import StrategyError, autoal_params, query_indices, run_experiment
from .reports import aubc, format_table, merge_results, strip_timings, write_reports

__all__ = ["ExperimentConfig", "StrategyError", "run_experiment", "strategy_names", "resolve_strategies", "query_indices",
           "autoal_params", "aubc", "format_table", "merge_results", "write_reports", "strip_timings", "EXTRA_STRATEGIES", "CHECKPOINT"]
