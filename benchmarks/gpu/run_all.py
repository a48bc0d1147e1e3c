"""One prepared GPU check: every GPU script in this folder, results to one JSON file.

Usage (on a CUDA machine, from the repo root after `pip install -e .`):
    python benchmarks/gpu/run_all.py OUT_DIR [name ...]
Each module's ``run(out)`` fills a dict; failures are recorded, not fatal, so
one broken check does not lose the others' numbers.
"""
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the scripts import _common, as when run directly
ORDER = ["topk", "uncertainty", "diversity", "autoal", "scale", "kmeans_breakdown"]


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "."))
    names = sys.argv[2:] or ORDER
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
               "torch": torch.__version__}
    for name in names:
        path = HERE / f"{name}.py"
        if not path.exists():
            results[name] = {"skipped": "no script"}
            continue
        t0 = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location(f"gpu_{name}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            mod.run(results)
        except Exception:  # noqa: BLE001 - record and go on to the next check
            results.setdefault(name, {})["error"] = traceback.format_exc()
        results.setdefault("wall_s", {})[name] = time.perf_counter() - t0
        (out_dir / "gpu_results.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"[{name}] done in {results['wall_s'][name]:.1f}s", flush=True)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
