"""Pool-based active-learning experiments: the loop, checkpoints and reports.

One experiment = every (seed, strategy) pair of a config. One run = an initial
random labeled set, then ``rounds`` rounds of: train the task model (from
scratch by default), evaluate test accuracy, score the pool once, query
``budget`` samples with the strategy, add their true labels; the model is
trained and evaluated once more after the last query.

>>> from autoal_fast.experiment import ExperimentConfig, run_experiment
>>> cfg = ExperimentConfig(strategies=("entropy", "random"), rounds=2, seeds=(0,))   # doctest: +SKIP
>>> results = run_experiment(cfg, out="runs/demo")                                  # doctest: +SKIP

Reproducibility. Every random choice is seeded from the config: the pool and
test subsamples and the initial labeled set from the seed (the same for every
strategy), the model's initialisation and training order from (seed, round)
(the same for every strategy: common random numbers), and the query from
(strategy, seed, round). Runs use ``torch.use_deterministic_algorithms`` and a
fixed thread count (``threads``). A checkpoint is written atomically after
every round (labeled ids, round, RNG states, completed results, AutoAL/ALBL
state, the model for warm start); ``resume=True`` continues it and ends with
exactly the results of an uninterrupted run (timings aside). AutoAL's state is
carried between rounds through ``state_dict()``/``load_state_dict()`` in every
run, interrupted or not, so both paths see the same thing.

Outputs in ``out``: ``results.json``, ``results.csv`` (one row per strategy,
seed and round), ``learning_curves.png`` (mean +/- std per strategy) and
``checkpoint.pt``.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import strategies as _strategies
from .datasets import DATASETS, load_dataset
from .models import MODELS, build_model
from .pool import PoolOutputs

__all__ = ["ExperimentConfig", "StrategyError", "run_experiment", "strategy_names", "resolve_strategies", "query_indices",
           "aubc", "format_table", "merge_results", "write_reports", "strip_timings", "EXTRA_STRATEGIES"]

#: Strategies of the experiment besides the candidates of ``strategies.names()``.
EXTRA_STRATEGIES = ("autoal", "albl")
CHECKPOINT = "checkpoint.pt"
_FORMAT = 1


class StrategyError(RuntimeError):
    """A strategy failed inside the loop; the message says which, where, and how to resume."""


@dataclass
class ExperimentConfig:
    """Settings of one experiment. Every field goes into results.json.

    Parameters
    ----------
    dataset : str, default="digits"
        ``"digits"``, ``"fashion-mnist"`` or a path to an ``.npz`` (see :mod:`autoal_fast.datasets`).
    data_root : str, default=None
        Folder of the Fashion-MNIST IDX files (default: Debian's package folder).
    strategies : tuple of str, default=("all",)
        Names from :func:`strategy_names`; ``"all"`` means all of them.
    candidates : tuple of str, default=the paper's seven
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
        Extra keyword arguments for :class:`autoal_fast.alb.ALBL` (delta, p_min).
    """

    dataset: str = "digits"
    data_root: str | None = None
    strategies: tuple = ("all",)
    candidates: tuple = _strategies.PAPER_CANDIDATES
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
                          ("n_mc", 2), ("eval_batch", 1), ("threads", 1)):
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
        return dataclasses.replace(self, strategies=tuple(resolve_strategies(self.strategies)))


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
            if n not in valid:
                raise ValueError(f"unknown strategy {n!r}: valid strategies are {valid} or 'all'")
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


# ----------------------------------------------------------------------------- seeding
def _derive(*parts) -> int:
    """A stable 62-bit seed from any printable parts (unlike hash(), not salted per process)."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 2


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _rng_state() -> dict:
    st = np.random.get_state()
    return {"python": random.getstate(), "numpy": (st[0], torch.from_numpy(st[1].copy()), st[2], st[3], st[4]),
            "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    st = state["numpy"]
    np.random.set_state((st[0], st[1].numpy(), st[2], st[3], st[4]))
    torch.set_rng_state(state["torch"])


# ----------------------------------------------------------------------------- model work
def _train(model, x, y, cfg: ExperimentConfig, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    n = x.shape[0]
    steps_per_epoch = max(1, n // cfg.batch_size + (n % cfg.batch_size >= 2))
    epochs = max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch))
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(x.device)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            if idx.numel() < 2 and n >= 2:  # a batch of one breaks BatchNorm; fold it away
                continue
            logits, _ = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


@torch.no_grad()
def _predict(model, x, batch: int):
    """Streamed eval-mode pass: (logits [n, C], embeddings [n, D]), float32."""
    model.eval()
    logits, embs = [], []
    for i in range(0, x.shape[0], batch):
        lo, em = model(x[i:i + batch])
        logits.append(lo.float())
        embs.append(em.float())
    return torch.cat(logits), torch.cat(embs)


@torch.no_grad()
def _accuracy(model, x, y, batch: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        lo, _ = model(x[i:i + batch])
        correct += int((lo.argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def _pool_outputs(logits, emb, head, n_mc: int) -> PoolOutputs:
    """PoolOutputs with the model's dropout head for MC samples (n_mc of them)."""
    import inspect

    if "n_mc" in inspect.signature(PoolOutputs).parameters:
        return PoolOutputs(logits, emb, head=head, n_mc=n_mc)
    return PoolOutputs(logits, emb, head=head)


# ----------------------------------------------------------------------------- the one integration point
def query_indices(name: str, pool: PoolOutputs, k: int, *, labeled: PoolOutputs, labeled_y, seed: int,
                  state: dict, cfg: ExperimentConfig, labels) -> tuple:
    """Turn a strategy name and the round's model outputs into k indices into ``pool``.

    ``state`` carries what a strategy keeps between rounds (AutoAL's and ALBL's
    state dicts); it is updated in place. ``labels(indices)`` is the oracle
    (ALBL reads the labels of the batch it queried). Returns ``(indices, info)``,
    ``info`` a small JSON-able dict of what the strategy reports.
    """
    if name == "autoal":
        try:
            from .autoal import AutoAL
        except ImportError as e:
            raise ImportError(f"strategy 'autoal' needs autoal_fast.autoal.AutoAL, which failed to import: {e}") from e
        al = AutoAL(strategies=list(cfg.candidates), budget=k, device=pool.device, seed=seed, **cfg.autoal)
        if state.get("autoal") is not None:
            al.load_state_dict(state["autoal"])
        al.fit(labeled, labeled_y, k=k, n_pool=pool.n_samples)  # the search selects the query's ratio k/|U|
        res = al.query(pool, k)
        state["autoal"] = copy.deepcopy(al.state_dict())
        info = {}
        w = getattr(res, "weights", None)
        if isinstance(w, torch.Tensor) and w.ndim == 2 and w.shape[1] == len(cfg.candidates):
            sel = w[res.indices.to(w.device)].float().mean(0)
            info["mean_weights"] = {c: round(float(v), 6) for c, v in zip(cfg.candidates, sel)}
        return torch.as_tensor(res.indices).long().cpu(), info
    if name == "albl":
        from .alb import ALBL

        bandit = ALBL(cfg.candidates, n_rounds=cfg.rounds, **cfg.albl)
        if state.get("albl") is not None:
            bandit.load_state_dict(state["albl"])
        idx = bandit.query(pool, k, labeled=labeled, seed=seed, labels=labels)
        state["albl"] = copy.deepcopy(bandit.state_dict())
        return idx.long().cpu(), {"arm": bandit.history[-1]["arm"]}
    return _strategies.select(name, pool, k, labeled=labeled, seed=seed).long().cpu(), {}


# ----------------------------------------------------------------------------- checkpoints
def _save_atomic(obj, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_text_atomic(text: str, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _load_checkpoint(path: str) -> dict:
    try:
        # Our own file: it holds RNG state tuples and strategy states, so the full unpickler is used.
        # Only resume from run folders you made.
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it to start over") from e
    if not isinstance(ck, dict) or ck.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {path} is not an autoal_fast experiment checkpoint (format {_FORMAT})")
    return ck


# ----------------------------------------------------------------------------- metrics and reports
def aubc(labeled, acc) -> float:
    """Area under the accuracy vs labeled-count curve (trapezoids) / the labeled-count range."""
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(acc, dtype=np.float64)
    if x.size == 0:
        return float("nan")
    if x.size == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / (x[-1] - x[0]))


def _summarise(runs_by_strategy: dict, cfg: ExperimentConfig, complete: bool) -> dict:
    out = {}
    for name in cfg.strategies:
        runs = [runs_by_strategy[name][s] for s in cfg.seeds if s in runs_by_strategy.get(name, {})]
        if not runs:
            continue
        a = np.array([r["aubc"] for r in runs], dtype=np.float64)

        def per_round(key):
            v = [rd[key] for r in runs for rd in r["rounds"] if rd.get(key) is not None]
            return float(np.mean(v)) if v else None

        out[name] = {
            "aubc_mean": float(a.mean()),
            "aubc_std": float(a.std(ddof=0)),
            "final_acc_mean": float(np.mean([r["rounds"][-1]["test_acc"] for r in runs])),
            "train_seconds_per_round": per_round("train_seconds"),
            "query_seconds_per_round": per_round("query_seconds"),
            "select_seconds_per_round": per_round("select_seconds"),
            "runs": runs,
        }
    return {"complete": complete, "strategies": out, "config": cfg.to_dict()}


def strip_timings(obj):
    """A copy of results without wall-clock timings (keys ending in ``_seconds``), for comparisons."""
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items()
                if not (k.endswith("_seconds") or k.endswith("_seconds_per_round"))}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def format_table(results: dict) -> str:
    """The console table: AUBC mean +/- std, final accuracy, seconds per round.

    ``query`` is the whole query step (pool pass + strategy), ``select`` the strategy
    alone; with entropy in the results, ``x entropy`` is the query step's time over entropy's.
    """
    strat = results["strategies"]
    ref = strat.get("entropy", {}).get("query_seconds_per_round")
    head = (f"{'strategy':<18}{'AUBC':>18}{'final acc':>11}{'train s/rd':>12}{'query s/rd':>12}"
            f"{'select s/rd':>13}" + (f"{'x entropy':>11}" if ref else ""))
    lines = [head, "-" * len(head)]
    rows = sorted(strat.items(), key=lambda kv: -kv[1]["aubc_mean"])

    def fmt(v):
        return f"{v:.3f}" if v is not None else "-"

    for name, r in rows:
        q = r["query_seconds_per_round"]
        lines.append(f"{name:<18}{r['aubc_mean']:>11.4f} ± {r['aubc_std']:.4f}{r['final_acc_mean']:>11.4f}"
                     f"{fmt(r['train_seconds_per_round']):>12}{fmt(q):>12}"
                     f"{fmt(r['select_seconds_per_round']):>13}"
                     + (f"{(q / ref if q is not None else float('nan')):>11.2f}" if ref else ""))
    return "\n".join(lines)


def merge_results(results_list, notes=None) -> dict:
    """Combine the results of runs that differ only in their strategies (e.g. run apart).

    A strategy found in several keeps its first occurrence; ``notes`` (a list) gets a line for each
    one left out.
    """
    if not results_list:
        raise ValueError("merge_results needs at least one results dict")
    base = dict(results_list[0]["config"])
    merged = {"complete": all(r.get("complete", False) for r in results_list), "strategies": {},
              "config": dict(base, strategies=[])}
    for i, r in enumerate(results_list):
        cfg = r["config"]
        diff = sorted(k for k in set(base) | set(cfg) if k != "strategies" and base.get(k) != cfg.get(k))
        if diff:
            raise ValueError(f"cannot merge results whose configs differ in {diff}: "
                             f"{[base.get(k) for k in diff]} vs {[cfg.get(k) for k in diff]}")
        for name, v in r["strategies"].items():
            if name in merged["strategies"]:
                if notes is not None:
                    notes.append(f"{name!r} of results #{i + 1} left out: an earlier one has it")
                continue
            merged["strategies"][name] = v
            merged["config"]["strategies"].append(name)
    return merged


def _csv_text(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["round", "labeled", "test_acc", "train_seconds", "query_seconds", "score_seconds", "select_seconds"]
    w.writerow(["strategy", "seed"] + cols)
    for name, r in results["strategies"].items():
        for run in r["runs"]:
            for rd in run["rounds"]:
                w.writerow([name, run["seed"]] + ["" if rd.get(c) is None else rd[c] for c in cols])
    return buf.getvalue()


def _plot(results: dict, path: str) -> bool:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no learning-curve PNG (pip install matplotlib)", file=sys.stderr)
        return False
    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    order = sorted(results["strategies"].items(), key=lambda kv: -kv[1]["aubc_mean"])
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if len(order) <= 10 else colormaps["tab20"]
    for i, (name, r) in enumerate(order):
        curves = np.array([[rd["test_acc"] for rd in run["rounds"]] for run in r["runs"]], dtype=np.float64)
        x = np.array([rd["labeled"] for rd in r["runs"][0]["rounds"]], dtype=np.float64)
        m, s = curves.mean(0), curves.std(0)
        style = "-" if name in EXTRA_STRATEGIES else ("--" if i % 2 else "-.")
        lw = 2.4 if name in EXTRA_STRATEGIES else 1.2
        color = cmap(i % cmap.N) if len(order) <= 10 else cmap((2 * i) % 20 + (2 * i) // 20)
        (line,) = ax.plot(x, m, style, lw=lw, color=color, label=f"{name} ({r['aubc_mean']:.3f})")
        ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.12, lw=0)
    cfg = results["config"]
    ax.set_xlabel("labeled samples")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{os.path.basename(str(cfg['dataset']))}: mean ± std over {len(cfg['seeds'])} seed(s); (AUBC)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return True


def write_reports(results: dict, out: str, plot: bool = True) -> None:
    """Write results.json, results.csv and (with matplotlib) learning_curves.png into ``out``."""
    os.makedirs(out, exist_ok=True)
    _write_text_atomic(json.dumps(results, indent=1, sort_keys=False) + "\n", os.path.join(out, "results.json"))
    _write_text_atomic(_csv_text(results), os.path.join(out, "results.csv"))
    if plot and results["strategies"]:
        _plot(results, os.path.join(out, "learning_curves.png"))


# ----------------------------------------------------------------------------- the experiment
class _Data:
    """Device-resident tensors of one seed's pool and the (shared) test subset."""

    def __init__(self, ds, cfg: ExperimentConfig, seed: int, dev: torch.device):
        n = ds.x_train.shape[0]
        if cfg.pool_subsample is not None and cfg.pool_subsample < n:
            ids = np.sort(np.random.default_rng(_derive("pool", seed)).choice(n, cfg.pool_subsample, replace=False))
        else:
            ids = np.arange(n)
        self.pool_ids = ids  # positions in the training set
        self.x = ds.x_train[torch.from_numpy(ids)].to(dev)
        self.y = ds.y_train[torch.from_numpy(ids)].to(dev)
        nt = ds.x_test.shape[0]
        if cfg.test_subsample is not None and cfg.test_subsample < nt:
            t = np.sort(np.random.default_rng(_derive("test")).choice(nt, cfg.test_subsample, replace=False))
            self.x_test, self.y_test = ds.x_test[torch.from_numpy(t)].to(dev), ds.y_test[torch.from_numpy(t)].to(dev)
        else:
            self.x_test, self.y_test = ds.x_test.to(dev), ds.y_test.to(dev)
        if cfg.initial >= len(ids):
            raise ValueError(f"initial={cfg.initial} must be smaller than the pool ({len(ids)} samples)")


def _run_rounds(name, seed, cfg, ds, data, cur, dev, ck, ck_path, bar):
    """Continue one (strategy, seed) run from ``cur`` to the end; checkpoint after every round."""
    n_pool = data.x.shape[0]
    for rnd in range(cur["round"], cfg.rounds + 1):
        labeled = torch.tensor(cur["labeled"], dtype=torch.long)
        lab_dev = labeled.to(dev)
        _seed_all(_derive("model", seed, rnd))
        model = build_model(cfg.model, ds.kind, ds.input_shape, ds.n_classes).to(dev)
        if cfg.warm_start and cur.get("model_state") is not None:
            model.load_state_dict(cur["model_state"])
        t0 = time.perf_counter()
        _train(model, data.x[lab_dev], data.y[lab_dev], cfg, _derive("order", seed, rnd))
        train_s = time.perf_counter() - t0
        acc = _accuracy(model, data.x_test, data.y_test, cfg.eval_batch)
        rec = {"round": rnd, "labeled": int(labeled.numel()), "test_acc": acc, "train_seconds": train_s,
               "query_seconds": None, "score_seconds": None, "select_seconds": None}
        mask = torch.ones(n_pool, dtype=torch.bool)
        mask[labeled] = False
        unl = torch.nonzero(mask).flatten()
        if rnd < cfg.rounds and unl.numel() > 0:
            k = min(cfg.budget, int(unl.numel()))
            qseed = _derive("query", name, seed, rnd)
            _seed_all(qseed)
            t0 = time.perf_counter()
            logits, emb = _predict(model, data.x, cfg.eval_batch)
            unl_dev = unl.to(dev)
            pool = _pool_outputs(logits[unl_dev], emb[unl_dev], model.head, cfg.n_mc)
            lab = _pool_outputs(logits[lab_dev], emb[lab_dev], model.head, cfg.n_mc)
            t1 = time.perf_counter()
            y_unl = data.y[unl_dev]
            try:
                picks, info = query_indices(
                    name, pool, k, labeled=lab, labeled_y=data.y[lab_dev], seed=qseed % (2 ** 62),
                    state=cur["state"], cfg=cfg, labels=lambda i: y_unl[i.to(dev)].cpu())
            except Exception as e:
                raise StrategyError(
                    f"strategy {name!r} failed at seed {seed}, round {rnd} ({type(e).__name__}: {e}); the "
                    "checkpoint keeps every finished round: --resume continues from there") from e
            t2 = time.perf_counter()
            picks = picks.cpu()
            if picks.numel() != k or torch.unique(picks).numel() != k or int(picks.min()) < 0 or \
                    int(picks.max()) >= unl.numel():
                raise RuntimeError(f"strategy {name!r} returned invalid indices (need {k} unique in "
                                   f"[0, {unl.numel()})): {picks.tolist()[:10]}...")
            cur["labeled"] = cur["labeled"] + unl[picks].tolist()
            rec.update(query_seconds=t2 - t0, score_seconds=t1 - t0, select_seconds=t2 - t1)
            if info:
                rec["info"] = info
        cur["rounds"].append(rec)
        cur["round"] = rnd + 1
        if cfg.warm_start:
            cur["model_state"] = copy.deepcopy(model.state_dict())
        cur["rng"] = _rng_state()
        _save_atomic(ck, ck_path)
        if bar is not None:
            bar.set_postfix_str(f"{name} seed={seed} n={rec['labeled']} acc={acc:.3f}", refresh=False)
            bar.update(1)
        if rnd < cfg.rounds and unl.numel() == 0:
            bar is not None and bar.update(cfg.rounds - rnd)
            break


def run_experiment(config: ExperimentConfig | None = None, out: str = "autoal_runs/digits", resume: bool = False,
                   progress: bool = True, verbose: bool = True, plot: bool = True) -> dict:
    """Run (or resume) an experiment and write its reports into ``out``.

    Parameters
    ----------
    config : ExperimentConfig, default=None
        None: the defaults, or with ``resume`` the checkpoint's config.
    out : str
        Output folder (created).
    resume : bool, default=False
        Continue ``out/checkpoint.pt`` when it exists (the config must match it);
        without it an existing checkpoint is overwritten.
    progress : bool
        tqdm progress bar on stderr.
    verbose : bool
        Print the table at the end.

    Returns
    -------
    dict, the content of results.json.
    """
    os.makedirs(out, exist_ok=True)
    ck_path = os.path.join(out, CHECKPOINT)
    ck = None
    if resume and os.path.exists(ck_path):
        ck = _load_checkpoint(ck_path)
        saved = ExperimentConfig.from_dict(ck["config"])
        if config is None:
            config = saved
        else:
            mine = config.validate().to_dict()
            diff = sorted(k for k in mine if mine[k] != ck["config"].get(k))
            if diff:
                raise ValueError(
                    f"--resume: the config differs from the checkpoint in {out} in {diff} "
                    f"(checkpoint: {[ck['config'].get(k) for k in diff]}, now: {[mine[k] for k in diff]}); "
                    "resume with the same settings or use another --out")
    elif resume and verbose:
        print(f"no checkpoint in {out}: starting from the beginning", file=sys.stderr)
    cfg = (config or ExperimentConfig()).validate()
    if ck is None:
        ck = {"format": _FORMAT, "config": cfg.to_dict(), "runs": {}, "current": None}
    dev = _device(cfg.device)
    ds = load_dataset(cfg.dataset, root=cfg.data_root)
    if cfg.initial + cfg.budget * cfg.rounds > (cfg.pool_subsample or ds.x_train.shape[0]):
        raise ValueError(f"initial + budget * rounds = {cfg.initial + cfg.budget * cfg.rounds} exceeds the pool "
                         f"({cfg.pool_subsample or ds.x_train.shape[0]} samples)")
    if "autoal" in cfg.strategies:  # fail before hours of other strategies, not after
        from .autoal import AutoAL  # noqa: F401

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    # strict on CPU (every op used has a deterministic kernel); CUDA has ops that only warn
    torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
    bar = None
    try:
        total = len(cfg.seeds) * len(cfg.strategies) * (cfg.rounds + 1)
        done = sum(len(r["rounds"]) for runs in ck["runs"].values() for r in runs.values())
        if ck["current"] is not None:
            done += len(ck["current"]["rounds"])
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=done, desc="AL rounds", unit="rd", dynamic_ncols=True, file=sys.stderr)
        for seed in cfg.seeds:
            data = None
            for name in cfg.strategies:
                if seed in ck["runs"].get(name, {}):
                    continue
                if data is None:
                    data = _Data(ds, cfg, seed, dev)
                cur = ck["current"]
                if cur is None or cur["strategy"] != name or cur["seed"] != seed:
                    init = np.random.default_rng(_derive("initial", seed)).choice(
                        data.x.shape[0], cfg.initial, replace=False)
                    cur = {"strategy": name, "seed": seed, "round": 0, "labeled": [int(i) for i in init],
                           "rounds": [], "state": {}, "model_state": None, "rng": None}
                    ck["current"] = cur
                elif cur.get("rng") is not None:
                    _set_rng_state(cur["rng"])
                _run_rounds(name, seed, cfg, ds, data, cur, dev, ck, ck_path, bar)
                run = {"seed": seed, "aubc": aubc([r["labeled"] for r in cur["rounds"]],
                                                  [r["test_acc"] for r in cur["rounds"]]),
                       "pool_size": int(data.x.shape[0]), "rounds": cur["rounds"]}
                ck["runs"].setdefault(name, {})[seed] = run
                ck["current"] = None
                _save_atomic(ck, ck_path)
                write_reports(_summarise(ck["runs"], cfg, complete=False), out, plot=False)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    results = _summarise(ck["runs"], cfg, complete=True)
    write_reports(results, out, plot=plot)
    if verbose:
        print(format_table(results))
        print(f"results in {os.path.abspath(out)}")
    return results
