#!/usr/bin/env bash
# One device session: build, the GPU checks named in $@ (default: uncertainty
# kmeans_breakdown scale) through run_all.py, then the Triton kernel tests and the
# gpu-marked tests (tests/gpu) on the GPU.
# Results under OUT_DIR. Usage on the lent machine:
#   bash benchmarks/gpu/session.sh OUT_DIR [names...]
set -u
OUT=${1:?usage: session.sh OUT_DIR [names...]}; shift
[ $# -eq 0 ] && set -- uncertainty kmeans_breakdown scale
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "built in ${SECONDS}s"
timeout "${RUN_ALL_TIMEOUT:-330}" python3 benchmarks/gpu/run_all.py "$OUT" "$@" > "$OUT/run_all.log" 2>&1
grep -E "done in|Error" "$OUT/run_all.log" | head -20
timeout "${PYTEST_TIMEOUT:-120}" python3 -m pytest tests/kernels -q -x -p no:cacheprovider -k triton \
    -o addopts="" > "$OUT/pytest_kernels.txt" 2>&1
tail -3 "$OUT/pytest_kernels.txt"
timeout "${PYTEST_TIMEOUT:-120}" python3 -m pytest tests/gpu -q -p no:cacheprovider -m gpu \
    > "$OUT/pytest_gpu.txt" 2>&1
tail -3 "$OUT/pytest_gpu.txt"
echo "session ${SECONDS}s"
