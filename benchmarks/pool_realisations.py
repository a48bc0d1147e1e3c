"""AutoAL against each strategy pooled over several realisations of the same paired seeds.

The CNN settings' runs do not reproduce from one machine to another (README, "A second
machine"), so each machine's ``al_benchmark.py --json`` is one realisation of seeds 0-4, to be
paired within itself. This reads several, takes on each seed the mean over the realisations of
(AutoAL - strategy), each difference taken within one realisation, and gives per setting and
strategy the mean ± standard error over seeds of those per-seed means and AutoAL's wins (seeds
where it is above 0): the seed, not the machine, is the unit, as the paired design has it.

    python benchmarks/pool_realisations.py --ref autoal \\
        --run benchmarks/results/al_bench.json:autoal=autoal_explore \\
        --run benchmarks/results/al_bench_rerun.json:autoal=autoal_defaults_mean3,autoal_prior=autoal_prior_mean3 \\
        --run benchmarks/results/al_bench_r3.json:autoal=autoal_defaults_mean2 \\
        --labels margin,badge,var_ratio,autoal_prior --seeds 0-4

``--run PATH[:NAME=LABEL,...]``: a table and the names its labels are pooled under (a label
keeps its own name unless renamed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from autoal_fast.experiment.reports import difference_stats


def _parse_run(text: str):
    path, _, renames = text.partition(":")
    names = {}
    for part in filter(None, renames.split(",")):
        name, eq, label = part.partition("=")
        if not eq or not name or not label:
            raise SystemExit(f"pool_realisations: --run {text!r}: renames must be NAME=LABEL")
        names[label] = name
    return path, names


def _aubc_by_name(table: dict, setting: str, names: dict) -> dict:
    """name -> {seed (str): AUBC} of one realisation's setting, labels renamed."""
    labels = table.get(setting, {}).get("labels", {})
    return {names.get(lab, lab): v["aubc"] for lab, v in labels.items() if "aubc" in v}


def pooled(tables: list, settings, ref: str, labels, seeds) -> dict:
    """setting -> label -> {mean, se, wins, n_seeds, realisations}: over ``seeds``, the per-seed
    mean over the realisations (``tables``: (table, renames) pairs) of ref - label."""
    out = {}
    for st in settings:
        rows = {}
        for lab in labels:
            per_seed, used = {}, 0
            for table, names in tables:
                a = _aubc_by_name(table, st, names)
                if ref not in a or lab not in a:
                    continue
                used += 1
                for sd in seeds:
                    s = str(sd)
                    if s in a[ref] and s in a[lab]:
                        per_seed.setdefault(s, []).append(a[ref][s] - a[lab][s])
            if per_seed:
                st_ = difference_stats([np.mean(v) for v in per_seed.values()])
                rows[lab] = {"mean": st_["mean"], "se": st_["se"], "wins": st_["wins"], "n_seeds": st_["n"],
                             "realisations": used}
        if rows:
            out[st] = rows
    return out


def markdown(result: dict, ref: str) -> str:
    lines = [f"| setting | label | {ref} − label, per-seed mean over realisations (mean ± SE) | {ref} ahead | "
             f"realisations |", "|---|---|---|---|---|"]
    for st, rows in result.items():
        for lab, r in rows.items():
            lines.append(f"| {st} | {lab} | {r['mean']:+.4f} ± {r['se']:.4f} | {r['wins']}/{r['n_seeds']} | "
                         f"{r['realisations']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="PATH[:NAME=LABEL,...]")
    ap.add_argument("--ref", default="autoal")
    ap.add_argument("--labels", required=True, help="comma list of the names to compare with --ref")
    ap.add_argument("--settings", default="a,b,c,d")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--json", default=None, help="write the result here too")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from al_benchmark import _parse_seeds

    tables = []
    for text in a.run:
        path, names = _parse_run(text)
        with open(path) as f:
            tables.append((json.load(f), names))
    res = pooled(tables, [s for s in a.settings.split(",") if s], a.ref, [s for s in a.labels.split(",") if s],
                 _parse_seeds(a.seeds))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    print(markdown(res, a.ref), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
