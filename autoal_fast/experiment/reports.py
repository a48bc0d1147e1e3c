"""Reports of an experiment: AUBC, the summary in results.json, the console table, the CSV,
the learning-curve plot, and the merging of runs made apart."""
from __future__ import annotations

import csv
import io
import json
import os
import sys

import numpy as np

from .checkpoints import write_text_atomic
from .config import EXTRA_STRATEGIES, ExperimentConfig

__all__ = ["aubc", "summarise", "strip_timings", "format_table", "merge_results", "write_reports",
           "paired_differences", "difference_stats", "spearman", "weight_share_by_round"]


def aubc(labeled, acc) -> float:
    """Area under the accuracy vs labeled-count curve (trapezoids) / the labeled-count range."""
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(acc, dtype=np.float64)
    if x.size == 0:
        return float("nan")
    if x.size == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / (x[-1] - x[0]))


def summarise(runs_by_strategy: dict, cfg: ExperimentConfig, complete: bool) -> dict:
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


def paired_differences(aubc_by_label: dict, ref: str) -> dict:
    """``ref``'s AUBC minus every other label's, paired by seed.

    ``aubc_by_label``: label -> {seed: AUBC}. Only seeds both have count (same seed =
    same initial set, pool and model initialisation: common random numbers). Returns
    label -> {"n", "mean", "se", "wins", "losses"}: the mean paired difference, its
    standard error (std with ddof=1 over sqrt(n); NaN for n < 2), and the seeds on
    which ``ref`` is ahead / behind.
    """
    if ref not in aubc_by_label:
        raise ValueError(f"ref={ref!r} is not among the labels {sorted(aubc_by_label)} (paired_differences)")
    base = aubc_by_label[ref]
    out = {}
    for label, runs in aubc_by_label.items():
        if label == ref:
            continue
        seeds = sorted(set(base) & set(runs))
        out[label] = difference_stats([base[s] - runs[s] for s in seeds])
    return out


def difference_stats(d) -> dict:
    """{"n", "mean", "se", "wins", "losses"} of paired differences ``d`` (one per seed): their
    mean, its standard error (std with ddof=1 over sqrt(n); NaN for n < 2) and the seeds
    above / below 0."""
    d = np.asarray(d, dtype=np.float64)
    n = int(d.size)
    return {"n": n, "mean": float(d.mean()) if n else float("nan"),
            "se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-length sequences (ties get their mean rank);
    NaN when either is constant or shorter than 2."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size != b.size:
        raise ValueError(f"spearman needs equal lengths; got {a.size} and {b.size}")
    if a.size < 2:
        return float("nan")

    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(x.size, dtype=np.float64)
        r[order] = np.arange(x.size, dtype=np.float64)
        for v in np.unique(x):  # ties: mean rank
            m = x == v
            r[m] = r[m].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


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
            if name == "autoal" and r.get("autoal_params") is not None:  # the AutoAL that ran
                merged["autoal_params"] = r["autoal_params"]
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


def weight_share_by_round(results: dict, name: str = "autoal"):
    """(labeled counts, strategies, shares (rounds, K) averaged over seeds) of a strategy whose
    rounds record ``info["weight_share"]`` (AutoAL's weights over the pool), or None."""
    r = results["strategies"].get(name)
    if not r:
        return None
    per_seed = [[rd["info"]["weight_share"] for rd in run["rounds"] if rd.get("info", {}).get("weight_share")]
                for run in r["runs"]]
    per_seed = [p for p in per_seed if p]
    if not per_seed:
        return None
    n = min(len(p) for p in per_seed)
    names = list(per_seed[0][0])
    shares = np.array([[[p[i][c] for c in names] for i in range(n)] for p in per_seed], dtype=np.float64).mean(0)
    labeled = [rd["labeled"] for rd in r["runs"][0]["rounds"][:n]]
    return labeled, names, shares


def _plot_weights(results: dict, path: str) -> bool:
    """The paper's figure: each candidate's share of AutoAL's weights per round (stacked)."""
    got = weight_share_by_round(results)
    if got is None:
        return False
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    labeled, names, shares = got
    fig = Figure(figsize=(7.5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.stackplot(np.asarray(labeled, dtype=np.float64), shares.T, labels=names, alpha=0.85)
    ax.set_xlabel("labeled samples (at the query)")
    ax.set_ylabel("mean weight over the pool")
    ax.set_ylim(0, 1)
    ax.set_title(f"AutoAL's strategy weights per round, mean over {len(results['strategies']['autoal']['runs'])} seed(s)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    fig.savefig(path)
    return True


def write_reports(results: dict, out: str, plot: bool = True) -> None:
    """Write results.json, results.csv and (with matplotlib) learning_curves.png into ``out``,
    and weights.png (AutoAL's strategy weight share per round) when AutoAL ran."""
    os.makedirs(out, exist_ok=True)
    write_text_atomic(json.dumps(results, indent=1, sort_keys=False) + "\n", os.path.join(out, "results.json"))
    write_text_atomic(_csv_text(results), os.path.join(out, "results.csv"))
    if plot and results["strategies"]:
        _plot(results, os.path.join(out, "learning_curves.png"))
        _plot_weights(results, os.path.join(out, "weights.png"))
