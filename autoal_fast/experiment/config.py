"""The settings of an experiment: ``ExperimentConfig`` and the strategy names it accepts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from .. import strategies as _strategies
from .models import MODELS

__all__ = ["ExperimentConfig", "EXTRA_STRATEGIES", "PEEKING_STRATEGIES", "CONTROL_STRATEGIES", "strategy_names",
           "resolve_strategies"]

#: Strategies of the experiment besides the candidates of ``strategies.names()``.
EXTRA_STRATEGIES = ("autoal", "albl")
#: Upper bounds that peek at the test set: accepted by name, never part of "all".
#: ``oracle``: each round, the candidate whose batch gives the best next-round test accuracy.
PEEKING_STRATEGIES = ("oracle",)
#: Controls, accepted by name, never part of "all". ``coin``: each round one of the
#: candidates drawn uniformly at random (seeded), whose batch is queried: what a search
#: that chooses among its candidates with no information would do.
CONTROL_STRATEGIES = ("coin",)


@dataclass
class ExperimentConfig:
    """Settings of one experiment. Every field goes into results.json.

    Parameters
    ----------
    dataset : str, default="digits"
        ``"digits"``, ``"fashion-mnist"`` or a path to an ``.npz`` (see :mod:`autoal_fast.experiment.datasets`).
    data_root : str, default=None
        Folder of the Fashion-MNIST IDX files (default: Debian's package folder).
    strategies : tuple of str, default=("all",)
        Names from :func:`strategy_names`; ``"all"`` means all of them.
    candidates : tuple of str, default=strategies.AUTOAL_CANDIDATES (the paper's seven plus badge)
        The candidate strategies AutoAL and ALBL choose among.
    model : str, default="auto"
        ``"auto"`` (MLP for flat features, small CNN for grey images, ResNet-18 for colour),
        ``"mlp"``, ``"cnn"``, ``"resnet18"``.
    rounds : int, default=10
        Query rounds; the model is trained and evaluated ``rounds + 1`` times.
    initial : int, default=20
        Size of the initial random labeled set.
    budget : int, default=20
        Samples queried per round.
    seeds : tuple of int, default=(0, 1, 2)
    epochs : int, default=30
        Training epochs per round over the labeled set.
    min_steps : int, default=0
        Train for at least this many gradient steps (more epochs while the labeled
        set is small, so that early rounds are not under-trained).
    batch_size : int, default=32
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=0.0
    warm_start : bool, default=False
        Continue from the previous round's weights instead of a fresh initialisation.
    pool_subsample : int, default=None
        Use a random subset of the training set of this size as the pool (per seed).
    test_subsample : int, default=None
        Evaluate on a fixed random subset of the test set of this size.
    n_mc : int, default=10
        MC-dropout samples of the classifier head (var_ratio, bald, mean_std).
    eval_batch : int, default=1024
        Batch size of the streamed pool and test passes.
    threads : int, default=1
        torch threads (fixed so that results do not depend on the machine's load).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (cuda when available).
    autoal : dict, default={}
        Extra keyword arguments for :class:`autoal_fast.AutoAL`.
    albl : dict, default={}
        Extra keyword arguments for :class:`autoal_fast.experiment.alb.ALBL` (delta, p_min).
    autoal_features : {"embeddings", "inputs"}, default="embeddings"
        What AutoAL's nets read: the task model's embeddings, or the task's inputs
        (flattened, through ``backbone=nn.Flatten()``): features that no model trained on
        the labeled set has shaped, so that the search's halves B and C look no easier
        than the pool does.
    autoal_seed : int, default=0
        Salt of AutoAL's own randomness (its splits, its nets' initialisation, the MC draws
        through FitNet). 0 seeds AutoAL with the round's query seed; another value draws
        all of that afresh while the pool, the initial labeled set and the task model's
        seeds stay those of the run's seed: repeats of AutoAL on the same paired seed, to
        tell AutoAL's own variance from the seed's.
    """

    dataset: str = "digits"
    data_root: str | None = None
    strategies: tuple = ("all",)
    candidates: tuple = _strategies.AUTOAL_CANDIDATES
    model: str = "auto"
    rounds: int = 10
    initial: int = 20
    budget: int = 20
    seeds: tuple = (0, 1, 2)
    epochs: int = 30
    min_steps: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warm_start: bool = False
    pool_subsample: int | None = None
    test_subsample: int | None = None
    n_mc: int = 10
    eval_batch: int = 1024
    threads: int = 1
    device: str = "cpu"
    autoal: dict = field(default_factory=dict)
    albl: dict = field(default_factory=dict)
    autoal_features: str = "embeddings"
    autoal_seed: int = 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("strategies", "candidates", "seeds"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown} (ExperimentConfig); valid: {sorted(known)}")
        d = dict(d)
        for key in ("strategies", "candidates", "seeds"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def validate(self) -> "ExperimentConfig":
        """Check every field; return a copy with ``strategies`` expanded."""
        c = "ExperimentConfig"
        for name, low in (("rounds", 0), ("initial", 1), ("budget", 1), ("epochs", 0), ("min_steps", 0), ("batch_size", 1),
                          ("n_mc", 2), ("eval_batch", 1), ("threads", 1), ("autoal_seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low} ({c}); got {v!r}")
        for name in ("pool_subsample", "test_subsample"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be None or an int >= 1 ({c}); got {v!r}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of ints >= 0 ({c}); got {list(self.seeds)!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct ({c}); got {list(self.seeds)}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"lr must be > 0 and weight_decay >= 0 ({c}); got {self.lr}, {self.weight_decay}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)} ({c}); got {self.model!r}")
        valid_cand = _strategies.names()
        bad = [s for s in self.candidates if s not in valid_cand]
        if bad or not self.candidates:
            raise ValueError(f"candidates must be a non-empty list from {valid_cand} ({c}); got {list(self.candidates)}")
        _device(self.device)
        if self.autoal_features not in ("embeddings", "inputs"):
            raise ValueError(f"autoal_features must be 'embeddings' or 'inputs' ({c}); got {self.autoal_features!r}")
        strategies = tuple(resolve_strategies(self.strategies))
        if "oracle" in strategies and self.warm_start:
            raise ValueError(f"strategy 'oracle' cannot run with warm_start=True ({c}): its foresight retrains "
                             "the next round's model from scratch with the same seeds")
        _check_extra_args(self, strategies)
        return dataclasses.replace(self, strategies=strategies)


#: what the round loop passes to AutoAL / ALBL itself: not for --autoal-arg / --albl-arg
_AUTOAL_SET = ("strategies", "budget", "device", "seed")
_ALBL_SET = ("candidates", "n_rounds")


def _check_extra_args(cfg, strategies) -> None:
    """Build AutoAL and ALBL once with the ``autoal`` / ``albl`` keyword arguments, so a
    bad one fails here, before any strategy trains (not rounds into the run)."""
    c = "ExperimentConfig"
    for field_, flag, taken, used in (("autoal", "--autoal-arg", _AUTOAL_SET, "autoal" in strategies),
                                      ("albl", "--albl-arg", _ALBL_SET, "albl" in strategies)):
        extra = getattr(cfg, field_)
        if not isinstance(extra, dict) or any(not isinstance(k, str) for k in extra):
            raise ValueError(f"{field_} must be a dict of keyword arguments ({c}); got {extra!r}")
        if not (used or extra):
            continue
        clash = sorted(set(extra) & set(taken))
        if clash:
            raise ValueError(f"{field_} ({flag}) cannot set {clash} ({c}): the experiment sets them "
                             f"(use the options {['--' + k for k in clash]} of the run instead)")
        try:
            if field_ == "autoal":
                from ..autoal import AutoAL

                AutoAL(strategies=list(cfg.candidates), budget=cfg.budget, seed=0, **extra)
            else:
                from .alb import ALBL

                ALBL(cfg.candidates, n_rounds=cfg.rounds, **extra)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{field_} ({flag}) {extra!r} is refused ({c}): {e}") from None


def strategy_names() -> list:
    """Every strategy an experiment can run: the candidates, ``autoal`` and ``albl``."""
    return _strategies.names() + list(EXTRA_STRATEGIES)


def resolve_strategies(spec) -> list:
    """``"all"``, a comma-separated string or a list -> a list of valid names (order kept, no repeats)."""
    if isinstance(spec, str):
        spec = [s for s in spec.split(",")]
    items = [s.strip() for s in spec if s.strip()]
    valid = strategy_names()
    out = []
    for s in items:
        names = valid if s == "all" else [s]
        for n in names:
            if n not in valid and n not in PEEKING_STRATEGIES + CONTROL_STRATEGIES:
                raise ValueError(f"unknown strategy {n!r}: valid strategies are {valid}, 'all', the "
                                 f"test-peeking upper bound {list(PEEKING_STRATEGIES)} or the control "
                                 f"{list(CONTROL_STRATEGIES)}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError(f"strategies is empty: give a comma list from {valid} or 'all'")
    return out


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto' (ExperimentConfig); got {spec!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} was asked for but torch sees no CUDA device; use --device cpu")
    return dev
