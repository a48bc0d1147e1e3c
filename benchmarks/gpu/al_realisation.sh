#!/usr/bin/env bash
# One device session for issue 11: the AL benchmark's settings on the GPU, a realisation of the
# paired seeds of its own (CNN runs reproduce only within one machine flavour, and cuDNN's
# kernels are another), to be paired within itself. Results under OUT_DIR: the table
# (al_bench_gpu.{json,md}), each run folder's results.json (results_json.tar.gz), the log.
#
#   bash benchmarks/gpu/al_realisation.sh OUT_DIR
#
# Environment (defaults in brackets): AL_SETTINGS [c], AL_LABELS
# [margin,badge,autoal_defaults,autoal_prior], AL_DEVICE [cuda], AL_SEEDS [0-9], AL_JOBS [12] processes of
# AL_THREADS [1] torch threads each, AL_TIMEOUT [270] seconds for the runs (the jobs go seed by
# seed, so what is cut off is the last seeds), AUTOAL_FAST_FASHION_MNIST (the IDX folder; the
# lent machine has no Debian package: copy the files to runs/fmnist and carry that path),
# PYTHON [python3], AL_SKIP_BUILD (set: no pip install).
set -u
PY=${PYTHON:-python3}
OUT=${1:?usage: al_realisation.sh OUT_DIR}
mkdir -p "$OUT"
ROOT=${AL_ROOT:-/tmp/al_gpu}
export AUTOAL_FAST_FASHION_MNIST=${AUTOAL_FAST_FASHION_MNIST:-$PWD/runs/fmnist}
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" -c "import torch, triton, sys; print(sys.version.split()[0], torch.__version__, triton.__version__)" >> "$OUT/gpu.txt" 2>&1
[ -n "${AL_SKIP_BUILD:-}" ] || "$PY" -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "built in ${SECONDS}s"
t0=$SECONDS
timeout "${AL_TIMEOUT:-270}" "$PY" benchmarks/al_benchmark.py --settings "${AL_SETTINGS:-c}" \
    --labels "${AL_LABELS:-margin,badge,autoal_defaults,autoal_prior}" --seeds "${AL_SEEDS:-0-9}" \
    --jobs "${AL_JOBS:-12}" --threads "${AL_THREADS:-1}" --device "${AL_DEVICE:-cuda}" --root "$ROOT" > "$OUT/al.log" 2>&1
echo "runs rc=$? in $((SECONDS - t0))s"
pkill -f "multiprocessing.spawn" 2>/dev/null; sleep 1
"$PY" benchmarks/al_benchmark.py --settings "${AL_SETTINGS:-c}" --table --root "$ROOT" \
    --json "$OUT/al_bench_gpu.json" --md "$OUT/al_bench_gpu.md" > "$OUT/table.log" 2>&1
(cd "$ROOT" && find . -name results.json | tar -czf "$OUT/results_json.tar.gz" -T -)
grep -c ": [0-9]* s$" "$OUT/al.log"; grep -c "FAILED" "$OUT/al.log"; tail -3 "$OUT/al.log"
echo "session ${SECONDS}s"
