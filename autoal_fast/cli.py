"""The ``autoal-fast`` command.

``autoal-fast run`` with no options runs a short experiment on scikit-learn's
digits (every strategy, 3 seeds; a few minutes on a laptop CPU). ``autoal-fast
list`` prints the datasets, strategies and models.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def _int_list(text: str) -> list:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from None


def _seeds(text: str) -> list:
    """``a,b,c`` -> those seeds (``--seeds 5`` is the single seed 5)."""
    vals = _int_list(text)
    if not vals or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"--seeds needs a comma list of ints >= 0, e.g. 0,1,2; got {text!r}")
    return vals


def _kv(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; got {text!r}")
    k, v = text.split("=", 1)
    for conv in (int, float):
        try:
            return k, conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return k, v.lower() == "true"
    return k, v


def _out_folder(path: str) -> str:
    """``--out``, created if needed: a bad path is a ValueError naming it, never a traceback."""
    if not path or not path.strip():
        raise ValueError("--out must be a folder path; got an empty string")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {path!r} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {path!r} cannot be made a folder: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path!r} is not writable")
    return path


def _read_results(path: str) -> dict:
    """One results.json (or the one in a run folder); errors name the file."""
    import json

    f = os.path.join(path, "results.json") if os.path.isdir(path) else path
    if not os.path.isfile(f):
        raise FileNotFoundError(f"no results.json at {f}")
    try:
        with open(f, encoding="utf-8") as fh:
            r = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"cannot read {f}: {e}") from None
    if not (isinstance(r, dict) and isinstance(r.get("config"), dict) and isinstance(r.get("strategies"), dict)):
        raise ValueError(f"{f} is not the results.json of an autoal-fast run (no 'config' and 'strategies')")
    return r


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoal-fast", description="AutoAL active-learning experiments.")
    sub = p.add_subparsers(dest="command", metavar="{run,report,list}")
    sub.required = True
    r = sub.add_parser("run", help="run (or --resume) an active-learning experiment",
                       description="Pool-based active learning: each round train the task model, evaluate it, "
                                   "query --budget samples with each strategy. Options left out take the "
                                   "defaults below (with --resume: the checkpoint's values).")
    S = argparse.SUPPRESS
    r.add_argument("--dataset", default=S, help="digits (default), fashion-mnist, or a path to an .npz with "
                   "x_train, y_train, x_test, y_test")
    r.add_argument("--data-root", dest="data_root", default=S,
                   help="folder with the Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)")
    r.add_argument("--strategies", default=S, help="comma list or 'all' (default all; see `autoal-fast list`)")
    r.add_argument("--candidates", default=S, help="candidates AutoAL and ALBL choose among (default: the "
                   "paper's seven plus badge)")
    r.add_argument("--model", default=S, help="auto (default), mlp, cnn, cnn1d, resnet18")
    r.add_argument("--rounds", type=int, default=S, help="query rounds (default 10)")
    r.add_argument("--initial", type=int, default=S, help="initial random labeled set (default 20)")
    r.add_argument("--budget", type=int, default=S, help="samples queried per round (default 20)")
    r.add_argument("--seeds", type=_seeds, default=S, help="comma list of seeds (default 0,1,2)")
    r.add_argument("--epochs", type=int, default=S, help="training epochs per round (default 30)")
    r.add_argument("--min-steps", dest="min_steps", type=int, default=S,
                   help="at least this many gradient steps per round (default 0)")
    r.add_argument("--batch-size", dest="batch_size", type=int, default=S, help="training batch (default 32)")
    r.add_argument("--lr", type=float, default=S, help="Adam learning rate (default 1e-3)")
    r.add_argument("--weight-decay", dest="weight_decay", type=float, default=S, help="default 0")
    r.add_argument("--warm-start", dest="warm_start", action="store_true", default=S,
                   help="continue from the previous round's weights (default: train from scratch)")
    r.add_argument("--pool-subsample", dest="pool_subsample", type=int, default=S,
                   help="use a random subset of the training set of this size as the pool")
    r.add_argument("--test-subsample", dest="test_subsample", type=int, default=S,
                   help="evaluate on a fixed random subset of the test set of this size")
    r.add_argument("--n-mc", dest="n_mc", type=int, default=S, help="MC-dropout samples (default 10)")
    r.add_argument("--threads", type=int, default=S, help="torch threads (default 1; fixed for reproducibility)")
    r.add_argument("--device", default=S, help="cpu (default), cuda, cuda:N or auto")
    r.add_argument("--autoal-arg", dest="autoal", type=_kv, action="append", default=S, metavar="KEY=VALUE",
                   help="extra keyword argument for AutoAL (repeatable)")
    r.add_argument("--albl-arg", dest="albl", type=_kv, action="append", default=S, metavar="KEY=VALUE",
                   help="extra keyword argument for ALBL: delta, p_min (repeatable)")
    r.add_argument("--out", default=None, help="output folder (default autoal_runs/<dataset>)")
    r.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    r.add_argument("--no-plot", dest="plot", action="store_false", help="no learning-curve PNG")
    rep = sub.add_parser("report", help="merge results.json of runs that differ only in their strategies",
                         description="Merge the results of runs made apart (same settings, other strategies) "
                                     "into one results.json, results.csv, learning-curve PNG and table. A "
                                     "strategy present in several runs is taken from the first.")
    rep.add_argument("runs", nargs="+", help="run folders (or results.json files)")
    rep.add_argument("--out", required=True, help="folder for the merged reports")
    sub.add_parser("list", help="list datasets, strategies and models")
    return p


def _run(args) -> int:
    from .experiment import CHECKPOINT, ExperimentConfig, run_experiment

    opts = {k: v for k, v in vars(args).items() if k not in ("command", "out", "resume", "progress", "plot")}
    for key in ("autoal", "albl"):
        if key in opts:
            opts[key] = dict(opts[key])
    for key in ("strategies", "candidates"):
        if key in opts:
            opts[key] = tuple(s.strip() for s in opts[key].split(",") if s.strip())
    if "seeds" in opts:
        opts["seeds"] = tuple(opts["seeds"])
    ds_name = os.path.splitext(os.path.basename(str(opts.get("dataset", "digits"))))[0]
    out = _out_folder(args.out if args.out is not None else os.path.join("autoal_runs", ds_name))
    config = None
    ck_path = os.path.join(out, CHECKPOINT)
    if args.resume and os.path.exists(ck_path):
        from .experiment.checkpoints import load_checkpoint

        saved = load_checkpoint(ck_path)["config"]
        if opts:
            merged = dict(saved)
            merged.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()})
            config = ExperimentConfig.from_dict(merged)
    else:
        config = ExperimentConfig.from_dict(opts)
    run_experiment(config, out=out, resume=args.resume, progress=args.progress, plot=args.plot)
    return 0


def _report(args) -> int:
    from .experiment import format_table, merge_results, write_reports

    loaded = [_read_results(path) for path in args.runs]
    out = _out_folder(args.out)
    notes = []
    try:
        merged = merge_results(loaded, notes)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot merge {args.runs}: a results.json lacks or mistypes {e}") from None
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    write_reports(merged, out)
    print(format_table(merged))
    print(f"merged results in {os.path.abspath(out)}")
    return 0


def _list() -> int:
    from . import strategies
    from .experiment import EXTRA_STRATEGIES
    from .experiment.datasets import DATASETS
    from .experiment.models import MODELS

    print("datasets:   " + ", ".join(DATASETS) + ", or a path to an .npz (x_train, y_train, x_test, y_test)")
    print("strategies: " + ", ".join(strategies.names() + list(EXTRA_STRATEGIES)) + " (or 'all')")
    print("candidates (default for autoal/albl): " + ", ".join(strategies.AUTOAL_CANDIDATES)
          + " (the paper's seven plus badge)")
    print("models:     " + ", ".join(MODELS))
    return 0


def main(argv=None) -> int:
    """Entry point of the ``autoal-fast`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "report":
            return _report(args)
        return _run(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"autoal-fast: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from .experiment import StrategyError

        if not isinstance(e, StrategyError):
            raise
        print(f"autoal-fast: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autoal-fast: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
