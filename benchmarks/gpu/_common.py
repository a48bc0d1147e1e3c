"""Pieces every GPU check script shares: the bandwidth table for floors, a CUDA-event
timer, and the command-line entry (``python benchmarks/gpu/NAME.py [OUT]``)."""
import json
import os
import sys

import torch

#: Peak HBM bandwidth (B/s) used for every "floor": bytes / peak.
BANDWIDTH = {"H200": 3.94e12, "H100": 3.35e12}


def peak_bandwidth(device_name: str):
    """Peak bandwidth of a card named ``device_name`` (None when not in the table)."""
    return next((bw for key, bw in BANDWIDTH.items() if key in device_name), None)


def time_ms(fn, reps: int = 20, warmup: int = 3) -> float:
    """Mean milliseconds of ``fn()`` over ``reps`` calls, by CUDA events, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main(run, name: str) -> None:
    """Run ``run(results)``, print the JSON and write it: to OUT when it ends in
    ``.json``, else to ``OUT/gpu_<name>.json`` (OUT: argv[1], or $OUT)."""
    results = {}
    run(results)
    text = json.dumps(results, indent=1, default=str)
    print(text)
    out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT")
    if not out:
        return
    if not out.endswith(".json"):
        os.makedirs(out, exist_ok=True)
        out = os.path.join(out, f"gpu_{name}.json")
    with open(out, "w") as fh:
        fh.write(text)
