"""Plot bench_scale.py's figures: query time against pool size, one line per strategy.

Usage: python benchmarks/plot_scale.py runs/scale-<time>/scale.json [more.json ...] [-o out.png]
Several JSON files (runs made apart, e.g. per strategy group) are merged: a strategy's
times come from the first file that has it; the 1-vs-2-process panel from the last that has one.
"""
import json
import sys
from pathlib import Path


def plot(json_path, png_path=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [json_path] if isinstance(json_path, (str, Path)) else list(json_path)
    runs = [json.loads(Path(p).read_text()) for p in paths]
    res = dict(runs[0])
    res["time"] = {}
    for r in runs:
        for name, times in r["time"].items():
            if times and name not in res["time"]:
                res["time"][name] = times
        if "dist" in r:
            res["dist"] = r["dist"]
    png_path = Path(png_path or Path(paths[0]).with_suffix(".png"))
    fig, axes = plt.subplots(1, 2 if "dist" in res else 1, figsize=(13 if "dist" in res else 7, 5))
    ax = axes[0] if "dist" in res else axes
    for name, times in res["time"].items():
        if times:
            ns = sorted(int(n) for n in times)
            ax.loglog(ns, [times[str(n)] for n in ns], marker="o", label=name)
    ax.set_xlabel("pool size n")
    ax.set_ylabel("select time (s)")
    ax.set_title(f"k={res['k']}, {res['pool']}, {res['threads']} threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if "dist" in res:
        ax2 = axes[1]
        rows = res["dist"]["strategies"]
        names = list(rows)
        cols = [("1proc_1thread_s", "1 process, 1 thread"), ("1proc_2threads_s", "1 process, 2 threads"),
                ("2procs_1thread_s", "2 processes (gloo), 1 thread each")]
        w = 0.27
        for j, (key, lab) in enumerate(cols):
            ax2.bar([i + (j - 1) * w for i in range(len(names))],
                    [rows[nm][key] or 0.0 for nm in names], w, label=lab)
        ax2.set_xticks(range(len(names)))
        ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax2.set_yscale("log")
        ax2.set_ylabel("select time (s)")
        ax2.set_title(f"n={res['dist']['n']}, k={res['dist']['k']}")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if "-o" in args:
        i = args.index("-o")
        out = args[i + 1]
        del args[i:i + 2]
    print(plot(args, out))
