#!/usr/bin/env bash
# make bench (bench/bench.sh): the OpenVINO reference row of issue 12.  Optional and never used by make test:
# it runs when bench/.venv exists or BENCH_OPENVINO=1 (which creates it: python3 -m venv, then
# pip install openvino onnx numpy h5py from PyPI).  OpenVINO runs the ONNX export of the published model's U-Net
# part (bench/export_onnx.py, from the .h5 weights), checked against the golden SVF of the crop pair, then timed
# on pair1 (bench/openvino_run.py); vxm's CPU compute time for the whole registration is measured right after,
# in the same run, with the same thread count, once per instruction set the CPU has (AVX-512 and AVX2).
#   bash bench/openvino_bench.sh MODEL.h5 PAIRS_DIR     (THREADS, default 2; RUNS, default 3; ROUNDS, default 2)
set -u
MODEL=$(realpath "$1") P=$(realpath "$2") THREADS=${THREADS:-2} RUNS=${RUNS:-3} ROUNDS=${ROUNDS:-2} VENV=bench/.venv
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
# Each instruction set this CPU has is compared on its own: OpenVINO's CPU plugin limited with oneDNN's
# ONEDNN_MAX_CPU_ISA (its convolutions then run brgconv_avx2_f32 instead of brgconv_avx512_f32), vxm with
# VXM_CPU_ISA.  On an AVX-512 machine this gives the AVX2 row of a laptop-class CPU too, in the same run.
best=$(./vxm devices 2>/dev/null | sed -n 's/^cpu .*; \([a-z0-9]*\) kernels).*/\1/p')
case "$best" in
    avx512) isas="avx512:AVX512_CORE avx2:AVX2" ;;
    avx2) isas="avx2:AVX2" ;;
    *) isas="$best:DEFAULT" ;;
esac
echo
echo "== OpenVINO reference: U-Net part (ONNX export of the same weights, f32), $THREADS threads, same run"
echo "| engine | instruction set | what it ran | time | conv GFLOP/s |"
echo "| --- | --- | --- | ---: | ---: |"
ratios=""
# One vxm_bench run: "compute_s conv_GFLOP conv_s" (its "compute (unprofiled, median): X s" and "convolutions: G
# GFLOP in T s" lines), with extra environment settings in front.
vxm_run() {
    local out
    out=$(env "$@" build/bench/vxm_bench --model "$MODEL" --moving "$P/pair1_moving.nii.gz" \
        --fixed "$P/fixed.nii.gz" --device cpu --threads "$THREADS" --runs "$RUNS") || return 1
    printf '%s\n' "$out" | awk '/^compute \(unprofiled/ {t = $4} /^convolutions:/ {g = $2; c = $5} END {print t, g, c}'
}
# The smaller of two "time ..." records (by their first field).
best() {
    if [ -z "$1" ]; then echo "$2"; else
        awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); print (y[1] < x[1]) ? b : a }'; fi
}
for pair in $isas; do
    visa=${pair%%:*} oisa=${pair#*:}
    [ "$oisa" = DEFAULT ] && oisa=""
    # The VM's speed drifts by 10 % from minute to minute: the engines alternate over ROUNDS rounds and each
    # keeps its best round (each round is a median of RUNS).  The dense row turns vxm's exact shortcuts off --
    # the uniform background blocks and the folded upsampling (src/backend_cpu/cpu_conv*.c) -- so its GFLOP/s
    # are the kernels' own rate against the FMA peak.
    ov="" vx="" vd="" ok=1
    for r in $(seq "$ROUNDS"); do
        ovout=$(cd bench && ONEDNN_MAX_CPU_ISA=$oisa THREADS=$THREADS RUNS=$RUNS .venv/bin/python openvino_run.py "$MODEL" "$P" 2>&1) ||
            { printf '%s\n' "$ovout" | tail -5; echo "openvino bench: OpenVINO run failed"; ok=0; break; }
        check=$(printf '%s\n' "$ovout" | grep '^check:')
        read -r _ ovver ovtime ovgflop <<<"$(printf '%s\n' "$ovout" | grep '^OV ')"
        ov=$(best "$ov" "$ovtime $ovgflop")
        v=$(vxm_run VXM_CPU_ISA="$visa") && d=$(vxm_run VXM_CPU_ISA="$visa" VXM_CPU_UNIFORM=0 VXM_CPU_FOLD=0) ||
            { echo "openvino bench: vxm_bench failed"; ok=0; break; }
        vx=$(best "$vx" "$v")
        vd=$(best "$vd" "$d")
    done
    [ "$ok" = 1 ] || continue
    read -r ovtime ovgflop <<<"$ov"
    awk -v v="$ovver" -v t="$ovtime" -v g="$ovgflop" -v th="$THREADS" -v isa="${oisa:-default}" 'BEGIN {
        printf "| OpenVINO %s (PyPI, f32, %s threads) | %s | U-Net part (%.0f GFLOP) | %.3f s | %.1f |\n", v, th, isa, g, t, g / t }'
    for row in "$vx:whole registration compute (U-Net, integration, transform)" \
        "$vd:the same, dense kernels only (VXM_CPU_UNIFORM=0 VXM_CPU_FOLD=0)"; do
        read -r t g ct <<<"${row%%:*}"
        awk -v t="$t" -v g="$g" -v ct="$ct" -v th="$THREADS" -v isa="$visa" -v what="${row#*:}" 'BEGIN {
            printf "| vxmcl CPU backend (%s threads) | %s kernels | %s | %.3f s | %.1f |\n", th, isa, what, t, g / ct }'
    done
    read -r vtime _ vconvt <<<"$vx"
    read -r dtime _ dconvt <<<"$vd"
    ratios="$ratios$(awk -v t="$vtime" -v ct="$vconvt" -v d="$dtime" -v o="$ovtime" -v isa="$visa" 'BEGIN {
        printf "ratio (%s): vxm whole registration / OpenVINO U-Net part = %.3f s / %.3f s = %.2f (dense kernels only: %.2f);  vxm convolutions alone / OpenVINO = %.3f s / %.3f s = %.2f",
               isa, t, o, t / o, d / o, ct, o, ct / o }')
$check
"
done
printf '%s' "$ratios"
