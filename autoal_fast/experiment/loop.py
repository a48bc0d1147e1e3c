"""The active-learning round loop and the query dispatch of an experiment.

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
import hashlib
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import strategies as _strategies
from ..pool import PoolOutputs
from .checkpoints import CHECKPOINT, open_checkpoint, rng_state, save_atomic, set_rng_state
from .config import ExperimentConfig, _device
from .datasets import load_dataset
from .models import build_model
from .reports import aubc, format_table, summarise, write_reports

__all__ = ["StrategyError", "run_experiment", "query_indices", "autoal_params"]


class StrategyError(RuntimeError):
    """A strategy failed inside the loop; the message says which, where, and how to resume."""


# ----------------------------------------------------------------------------- seeding
def _derive(*parts) -> int:
    """A stable 62-bit seed from any printable parts (unlike hash(), not salted per process)."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 2


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


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
def _autoal(cfg: ExperimentConfig, k: int, device, seed: int, **overrides):
    """AutoAL as the config asks; with ``autoal_features="inputs"`` its nets read the
    task's inputs (flattened) instead of the task model's embeddings; ``cfg.autoal_seed``
    other than 0 salts ``seed``, so every AutoAL the loop builds draws its randomness afresh."""
    try:
        from ..autoal import AutoAL
    except ImportError as e:
        raise ImportError(f"strategy 'autoal' needs autoal_fast.autoal.AutoAL, which failed to import: {e}") from e
    kw = dict(cfg.autoal, **overrides)
    if cfg.autoal_features == "inputs":
        kw["backbone"] = torch.nn.Flatten()
    if cfg.autoal_seed:
        seed = _derive("autoal", seed, cfg.autoal_seed)
    return AutoAL(strategies=list(cfg.candidates), budget=k, device=device, seed=seed, **kw)


def autoal_params(cfg: ExperimentConfig) -> dict | None:
    """AutoAL's constructor parameters as this config resolves them, JSON-able (None when
    the config runs no AutoAL): what a run folder's results hold, so that a folder made
    under other AutoAL defaults can be told apart from one made under today's. ``budget``,
    ``device`` and ``seed`` are left out (the loop sets them per run); a backbone is named
    by its class."""
    if "autoal" not in cfg.strategies:
        return None
    import json

    p = _autoal(cfg, cfg.budget, None, 0).get_params()
    for key in ("budget", "device", "seed"):
        p.pop(key)
    p["backbone"] = None if p["backbone"] is None else type(p["backbone"]).__name__
    return json.loads(json.dumps(p, default=list))


def _summary(runs: dict, cfg: ExperimentConfig, complete: bool, params) -> dict:
    """``summarise`` plus the AutoAL that ran (``autoal_params(cfg)``, given once per run)."""
    results = summarise(runs, cfg, complete=complete)
    if params is not None:
        results["autoal_params"] = params
    return results


def query_indices(name: str, pool: PoolOutputs, k: int, *, labeled: PoolOutputs, labeled_y, seed: int,
                  state: dict, cfg: ExperimentConfig, labels, next_acc=None, inputs=(None, None)) -> tuple:
    """Turn a strategy name and the round's model outputs into k indices into ``pool``.

    ``state`` carries what a strategy keeps between rounds (AutoAL's and ALBL's
    state dicts); it is updated in place. ``labels(indices)`` is the oracle
    (ALBL reads the labels of the batch it queried). ``next_acc(indices)`` is the
    test accuracy of the next round's model trained with that batch added (only the
    ``oracle`` upper bound uses it: it peeks at the test set). ``inputs``: the task's
    inputs of the labeled set and of the pool (AutoAL reads them with
    ``cfg.autoal_features="inputs"``). Returns
    ``(indices, info)``, ``info`` a small JSON-able dict of what the strategy reports.
    """
    if name == "coin":
        g = torch.Generator().manual_seed(seed)
        c = cfg.candidates[int(torch.randint(len(cfg.candidates), (1,), generator=g))]
        return _strategies.select(c, pool, k, labeled=labeled, seed=seed).long().cpu(), {"chosen": c}
    if name == "oracle":
        if next_acc is None:
            raise ValueError("strategy 'oracle' needs next_acc: the experiment loop gives it, except with "
                             "warm_start=True (the next model would then depend on this round's weights)")
        accs, picks = {}, {}
        for c in cfg.candidates:  # ties go to the first candidate in cfg.candidates
            picks[c] = _strategies.select(c, pool, k, labeled=labeled, seed=seed).long().cpu()
            accs[c] = next_acc(picks[c])
        best = max(cfg.candidates, key=lambda c: accs[c])
        info = {"chosen": best, "next_acc": accs}
        if cfg.autoal.get("objective", "value") == "value" and labeled.n_samples >= 6:
            # what AutoAL's simulation says of each candidate in this very round (fidelity)
            al = _autoal(cfg, k, pool.device, seed, objective="value")
            rep = al.fit(labeled, labeled_y, k=k, n_pool=pool.n_samples, features=inputs[0])
            info["autoal_value"] = {c: round(float(v), 6) for c, v in rep.candidate_value.items()}
        return picks[best], info
    if name == "autoal":
        al = _autoal(cfg, k, pool.device, seed)
        if state.get("autoal") is not None:
            al.load_state_dict(state["autoal"])
        # the search selects the query's ratio k/|U|; the labeled set ends with last round's
        # batch in query order (the loop appends it), which the credit measures
        kp = al.n_pending
        new = torch.arange(labeled.n_samples - kp, labeled.n_samples) if kp else None
        # the loop's labeled set starts with the initial random draw
        rep = al.fit(labeled, labeled_y, k=k, n_pool=pool.n_samples, features=inputs[0], new=new,
                     random_set=torch.arange(min(cfg.initial, labeled.n_samples)))
        res = al.query(pool, k, features=inputs[1])
        state["autoal"] = copy.deepcopy(al.state_dict())
        info = {}
        w = getattr(res, "weights", None)
        if isinstance(w, torch.Tensor) and w.ndim == 2 and w.shape[1] == len(cfg.candidates):
            sel = w[res.indices.to(w.device)].float().mean(0)
            info["mean_weights"] = {c: round(float(v), 6) for c, v in zip(cfg.candidates, sel)}
            # the paper's figure: each strategy's share of the weight over the pool, per round
            info["weight_share"] = {c: round(float(v), 6) for c, v in zip(cfg.candidates, w.float().mean(0))}
        if getattr(rep, "candidate_value", None):
            info["candidate_value"] = {c: round(float(v), 6) for c, v in rep.candidate_value.items()}
        if getattr(rep, "margins", None):
            info["margins"] = {key: round(float(v), 6) for key, v in rep.margins.items()}
        for key in ("real_credit", "credit", "memory"):
            if getattr(rep, key, None):
                info[key] = {c: (round(float(v), 6) if v == v else None) for c, v in getattr(rep, key).items()}
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


def _round_model(cfg, ds, data, ids, seed: int, rnd: int, dev, init_state=None):
    """Round ``rnd``'s task model trained on the pool rows ``ids`` with that round's seeds:
    (model, training seconds, test accuracy). The loop and the oracle's foresight share it,
    so that the oracle foresees exactly what the next round measures."""
    _seed_all(_derive("model", seed, rnd))
    model = build_model(cfg.model, ds.kind, ds.input_shape, ds.n_classes).to(dev)
    if init_state is not None:
        model.load_state_dict(init_state)
    t0 = time.perf_counter()
    _train(model, data.x[ids], data.y[ids], cfg, _derive("order", seed, rnd))
    train_s = time.perf_counter() - t0
    return model, train_s, _accuracy(model, data.x_test, data.y_test, cfg.eval_batch)


def _run_rounds(name, seed, cfg, ds, data, cur, dev, ck, ck_path, bar):
    """Continue one (strategy, seed) run from ``cur`` to the end; checkpoint after every round."""
    n_pool = data.x.shape[0]
    for rnd in range(cur["round"], cfg.rounds + 1):
        labeled = torch.tensor(cur["labeled"], dtype=torch.long)
        lab_dev = labeled.to(dev)
        init = cur.get("model_state") if cfg.warm_start else None
        model, train_s, acc = _round_model(cfg, ds, data, lab_dev, seed, rnd, dev, init)
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

            def next_acc(p, rnd=rnd, labeled=labeled):
                """Test accuracy of round rnd + 1's model with the batch p added (the same seeds)."""
                saved = rng_state()
                ids = torch.cat([labeled, unl[p.cpu()]]).to(dev)
                out = _round_model(cfg, ds, data, ids, seed, rnd + 1, dev)[2]
                set_rng_state(saved)
                return out

            try:
                picks, info = query_indices(
                    name, pool, k, labeled=lab, labeled_y=data.y[lab_dev], seed=qseed % (2 ** 62),
                    state=cur["state"], cfg=cfg, labels=lambda i: y_unl[i.to(dev)].cpu(),
                    next_acc=None if cfg.warm_start else next_acc,
                    inputs=(data.x[lab_dev], data.x[unl_dev]) if cfg.autoal_features == "inputs" else (None, None))
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
            # the batch's make-up by true class (a diagnostic: how balanced the query is)
            rec["batch_classes"] = torch.bincount(y_unl[picks.to(dev)].long().cpu(),
                                                  minlength=ds.n_classes).tolist()
            if info:
                rec["info"] = info
        cur["rounds"].append(rec)
        cur["round"] = rnd + 1
        if cfg.warm_start:
            cur["model_state"] = copy.deepcopy(model.state_dict())
        cur["rng"] = rng_state()
        save_atomic(ck, ck_path)
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
    ck, cfg = open_checkpoint(out, config, resume, verbose)
    params = autoal_params(cfg)  # recorded in every results.json the run writes
    dev = _device(cfg.device)
    ds = load_dataset(cfg.dataset, root=cfg.data_root)
    for name, n_have in (("pool_subsample", ds.x_train.shape[0]), ("test_subsample", ds.x_test.shape[0])):
        asked = getattr(cfg, name)
        if asked is not None and asked > n_have:  # would silently use all and record the number asked
            raise ValueError(f"{name}={asked} exceeds the {n_have} samples of {cfg.dataset!r}'s "
                             f"{'training' if name == 'pool_subsample' else 'test'} set; give at most "
                             f"{n_have}, or leave it out for all of them")
    if cfg.initial + cfg.budget * cfg.rounds > (cfg.pool_subsample or ds.x_train.shape[0]):
        raise ValueError(f"initial + budget * rounds = {cfg.initial + cfg.budget * cfg.rounds} exceeds the pool "
                         f"({cfg.pool_subsample or ds.x_train.shape[0]} samples)")
    if "autoal" in cfg.strategies:  # fail before hours of other strategies, not after
        from ..autoal import AutoAL  # noqa: F401

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
                    set_rng_state(cur["rng"])
                _run_rounds(name, seed, cfg, ds, data, cur, dev, ck, ck_path, bar)
                run = {"seed": seed, "aubc": aubc([r["labeled"] for r in cur["rounds"]],
                                                  [r["test_acc"] for r in cur["rounds"]]),
                       "pool_size": int(data.x.shape[0]), "rounds": cur["rounds"]}
                ck["runs"].setdefault(name, {})[seed] = run
                ck["current"] = None
                save_atomic(ck, ck_path)
                write_reports(_summary(ck["runs"], cfg, complete=False, params=params), out, plot=False)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    results = _summary(ck["runs"], cfg, complete=True, params=params)
    write_reports(results, out, plot=plot)
    if verbose:
        print(format_table(results))
        print(f"results in {os.path.abspath(out)}")
    return results
