"""What each candidate's part of the exploration share is worth, round by round (issue 11).

AutoAL's exploration share takes the last tenth of each batch round-robin from every
candidate's best-ranked samples. This script measures, on margin's trajectory, what that
tenth is worth when it comes from each candidate alone: every round it trains the next
round's model (the loop's own seeds, so every variant is paired) on the labeled set plus

- ``margin``: margin's top k (the baseline);
- ``share``: margin's top k - m, then m round-robin over the candidates (the share as AutoAL
  takes it, m = explore * k, equal quotas);
- ``share_<X>``: margin's top k - m, then candidate X's m best-ranked samples not chosen yet;

and records each variant's test accuracy. The trajectory then goes on with margin's own
batch. One JSON per (setting, seed) under ``--out``: finished ones are skipped, so a killed
run continues. ``--table`` prints, per setting and variant, the mean over rounds and seeds of
the accuracy difference against ``margin`` (± SE over the seeds' per-seed means, and the
seeds on which it is ahead).

    python benchmarks/share_value.py --settings c,d --seeds 0-5 --jobs 2
    python benchmarks/share_value.py --settings c,d --table

It peeks at the test set (as the oracle does): a measurement, never a method.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from al_benchmark import CANDIDATES8, SETTINGS, _parse_seeds  # noqa: E402

from autoal_fast.autoal import _quotas, fill_round_robin  # noqa: E402


def _share(base: list, lists: dict, m: int, order) -> list:
    """``base`` plus m more, the candidates of ``order`` in turn, each adding its best-ranked
    sample not chosen yet (equal quotas, the first candidates taking the remainder)."""
    quotas = _quotas(torch.ones(len(order)), m)  # the equal split of AutoAL's explore_from="candidates"
    return base + fill_round_robin(base, [lists[c] for c in order], quotas)


def run_one(setting: str, seed: int, out: str, explore: float, threads: int) -> str:
    import torch

    from autoal_fast import strategies
    from autoal_fast.experiment import ExperimentConfig
    from autoal_fast.experiment.config import _device
    from autoal_fast.experiment.datasets import load_dataset
    from autoal_fast.experiment.loop import (_Data, _derive, _pool_outputs, _predict, _round_model, _seed_all)

    path = os.path.join(out, setting, f"seed{seed}.json")
    if os.path.exists(path):
        return f"{setting}/seed{seed}: done before"
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    cfg = ExperimentConfig(strategies=("margin",), seeds=(seed,), threads=threads, **SETTINGS[setting][1])
    dev = _device(cfg.device)
    ds = load_dataset(cfg.dataset, root=cfg.data_root)
    data = _Data(ds, cfg, seed, dev)
    n_pool = data.x.shape[0]
    labeled = [int(i) for i in np.random.default_rng(_derive("initial", seed)).choice(n_pool, cfg.initial,
                                                                                     replace=False)]
    others = [c for c in CANDIDATES8 if c != "margin"]
    rounds, t0 = [], time.perf_counter()
    for rnd in range(cfg.rounds):
        lab = torch.tensor(labeled, dtype=torch.long)
        model, _, acc = _round_model(cfg, ds, data, lab.to(dev), seed, rnd, dev)
        mask = torch.ones(n_pool, dtype=torch.bool)
        mask[lab] = False
        unl = torch.nonzero(mask).flatten()
        k = min(cfg.budget, int(unl.numel()))
        m = int(round(explore * k))
        _seed_all(_derive("query", "margin", seed, rnd))
        logits, emb = _predict(model, data.x, cfg.eval_batch)
        pool = _pool_outputs(logits[unl], emb[unl], model.head, cfg.n_mc)
        lab_out = _pool_outputs(logits[lab], emb[lab], model.head, cfg.n_mc)
        qseed = _derive("query", "margin", seed, rnd) % (2 ** 62)
        lists = {c: strategies.select(c, pool, k, labeled=lab_out, seed=qseed).long().cpu().tolist()
                 for c in CANDIDATES8}
        top = lists["margin"]
        variants = {"margin": top, "share": _share(top[:k - m], lists, m, list(CANDIDATES8))}
        for c in others:
            variants[f"share_{c}"] = _share(top[:k - m], lists, m, [c])
        accs = {}
        for name, picks in variants.items():
            assert len(set(picks)) == k, (name, len(set(picks)))
            ids = torch.cat([lab, unl[torch.tensor(picks)]]).to(dev)
            accs[name] = _round_model(cfg, ds, data, ids, seed, rnd + 1, dev)[2]
        rounds.append({"round": rnd, "labeled": len(labeled), "acc": acc, "next_acc": accs,
                       "overlap_with_margin_next": {c: len(set(lists[c][:m]) & set(top[k - m:k])) for c in others}})
        labeled = labeled + unl[torch.tensor(top)].tolist()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"setting": setting, "seed": seed, "explore": explore, "rounds": rounds}, f)
    os.replace(path + ".tmp", path)
    return f"{setting}/seed{seed}: {time.perf_counter() - t0:.0f} s"


def table(out: str, settings) -> dict:
    res = {}
    for st in settings:
        d = os.path.join(out, st)
        if not os.path.isdir(d):
            continue
        runs = [json.load(open(os.path.join(d, f))) for f in sorted(os.listdir(d)) if f.endswith(".json")]
        if not runs:
            continue
        names = list(runs[0]["rounds"][0]["next_acc"])
        res[st] = {"seeds": [r["seed"] for r in runs], "variants": {}}
        print(f"\n{st}: {SETTINGS[st][0]} ({len(runs)} seeds; next-round accuracy minus margin's, mean over rounds)")
        print("| variant | mean ± SE over seeds | ahead (seeds) | per round (mean over seeds) |")
        print("|---|---|---|---|")
        for nm in names:
            per = np.array([[rd["next_acc"][nm] - rd["next_acc"]["margin"] for rd in r["rounds"]] for r in runs])
            s = per.mean(1)
            se = s.std(ddof=1) / np.sqrt(len(s)) if len(s) > 1 else float("nan")
            res[st]["variants"][nm] = {"mean": float(s.mean()), "se": float(se), "ahead": int((s > 0).sum()),
                                       "per_round": per.mean(0).tolist()}
            print(f"| {nm} | {s.mean():+.4f} ± {se:.4f} | {(s > 0).sum()}/{len(s)} | "
                  + " ".join(f"{v:+.4f}" for v in per.mean(0)) + " |")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="c,d")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--out", default="runs/share_value")
    ap.add_argument("--explore", type=float, default=0.1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only print the table of what is finished")
    ap.add_argument("--json", default=None, help="write the table's figures here")
    a = ap.parse_args(argv)
    settings = [s for s in a.settings.split(",") if s]
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        ap.error(f"--settings: unknown {bad}; known: {sorted(SETTINGS)}")
    if not 0.0 < a.explore < 1.0:
        ap.error(f"--explore must lie in (0, 1), got {a.explore}")
    if not a.table:
        jobs = [(st, sd) for st in settings for sd in _parse_seeds(a.seeds)]
        with ProcessPoolExecutor(max_workers=a.jobs) as ex:
            futs = [ex.submit(run_one, st, sd, a.out, a.explore, a.threads) for st, sd in jobs]
            for f in as_completed(futs):
                print(f.result(), flush=True)
    res = table(a.out, settings)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
