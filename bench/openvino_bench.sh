#!/usr/bin/env bash
# make bench (bench/bench.sh): the OpenVINO reference row of issue 12.  Optional and never used by make test:
# it runs when bench/.venv exists or BENCH_OPENVINO=1 (which creates it: python3 -m venv, then
# pip install openvino onnx numpy h5py from PyPI).  OpenVINO runs the ONNX export of the published model's U-Net
# part (bench/export_onnx.py, from the .h5 weights), checked against the golden SVF of the crop pair, then timed
# on pair1 (bench/openvino_run.py); vxm's CPU compute time for the whole registration is measured right after,
# in the same run, with the same thread count.
#   bash bench/openvino_bench.sh MODEL.h5 PAIRS_DIR     (THREADS, default 2; RUNS, default 3)
set -u
MODEL=$(realpath "$1") P=$(realpath "$2") THREADS=${THREADS:-2} RUNS=${RUNS:-3} VENV=bench/.venv
cd "$(dirname "$0")/.." || exit 1
if [ ! -d "$VENV" ] && [ "${BENCH_OPENVINO:-0}" != 1 ]; then
    echo "(no OpenVINO reference: run with BENCH_OPENVINO=1 to install it from PyPI into $VENV)"
    exit 0
fi
if ! "$VENV/bin/python" -c 'import openvino, onnx, h5py, numpy' 2>/dev/null; then
    echo "openvino bench: installing openvino onnx numpy h5py from PyPI into $VENV"
    { [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"; } &&
        "$VENV/bin/pip" install -q openvino onnx numpy h5py ||
        { echo "openvino bench: could not install OpenVINO into $VENV"; exit 0; }
fi
echo
echo "== OpenVINO reference: U-Net part (ONNX export of the same weights, f32), $THREADS threads, same run"
ovout=$(cd bench && THREADS=$THREADS RUNS=$RUNS .venv/bin/python openvino_run.py "$MODEL" "$P" 2>&1) ||
    { printf '%s\n' "$ovout" | tail -5; echo "openvino bench: OpenVINO run failed"; exit 0; }
printf '%s\n' "$ovout" | grep '^check:'
read -r _ ovver ovtime ovgflop <<<"$(printf '%s\n' "$ovout" | grep '^OV ')"
vout=$(build/bench/vxm_bench --model "$MODEL" --moving "$P/pair1_moving.nii.gz" --fixed "$P/fixed.nii.gz" \
    --device cpu --threads "$THREADS" --runs "$RUNS") || { echo "openvino bench: vxm_bench failed"; exit 0; }
# "compute (unprofiled, median): X s; ..." and "convolutions: G GFLOP in T s = R GFLOP/s..."
vtime=$(printf '%s\n' "$vout" | awk '/^compute \(unprofiled/ {print $4}')
read -r vgflop vconvt <<<"$(printf '%s\n' "$vout" | awk '/^convolutions:/ {print $2, $5}')"
echo "| engine | what it ran | time | conv GFLOP/s |"
echo "| --- | --- | ---: | ---: |"
awk -v v="$ovver" -v t="$ovtime" -v g="$ovgflop" -v th="$THREADS" 'BEGIN {
    printf "| OpenVINO %s (PyPI, f32, %s threads) | U-Net part (%.0f GFLOP) | %.3f s | %.1f |\n", v, th, g, t, g / t }'
awk -v t="$vtime" -v g="$vgflop" -v ct="$vconvt" -v th="$THREADS" 'BEGIN {
    printf "| vxmcl CPU backend (%s threads) | whole registration compute (U-Net, integration, transform) | %.3f s | %.1f |\n",
           th, t, g / ct }'
awk -v t="$vtime" -v ct="$vconvt" -v o="$ovtime" 'BEGIN {
    printf "ratio: vxm whole registration / OpenVINO U-Net part = %.3f s / %.3f s = %.2f;  vxm convolutions alone / OpenVINO = %.3f s / %.3f s = %.2f\n",
           t, o, t / o, ct, o, ct / o }'
