#!/usr/bin/env bash
# make bench: timing table per device (CPU backend, then every OpenCL device), outputs checked against the
# golden files in the same run, plus the machine's measured FMA peak.  Timings live here, never in tests.
set -u
cd "$(dirname "$0")/.." || exit 1
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
export RUSTICL_ENABLE="${RUSTICL_ENABLE:-llvmpipe}"
if [ ! -f "$MODEL" ]; then echo "bench: $SHARED not found; nothing to time"; exit 0; fi
echo "# vxmcl benchmark ($(date -u +%F), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-))"
peak=$(build/bench/fma_peak "$THREADS" | awk -v t="$THREADS" '$1 == t {print $2}')
echo
echo "measured FP32 FMA peak: $(build/bench/fma_peak 1 | awk '$1 == 1 {print $2}') GFLOP/s on 1 thread, $peak GFLOP/s on $THREADS"
devices="cpu $(./vxm devices | awk '/^opencl:/ {print $1}')"
for d in $devices; do
    pair=pair1; golden=pair1_vxm_dense; runs=$RUNS
    # Mesa rusticl on llvmpipe runs convolutions at well under 1 GFLOP/s (a correctness platform): it is
    # timed on the 64^3 crop pair, once, unless BENCH_FULL=1.
    if ./vxm devices | grep "^$d " | grep -q rusticl && [ "${BENCH_FULL:-0}" != 1 ]; then
        pair=paircrop; golden=paircrop_vxm_dense; runs=1
        echo; echo "($d is Mesa rusticl: timed on the 64^3 crop pair)"
    fi
    fixed=$P/fixed.nii.gz; [ "$pair" = paircrop ] && fixed=$P/paircrop_fixed.nii.gz
    # An OpenCL device's conv rates are set against its own measured FP32 FMA peak (cl_peak), not the CPU's.
    dpeak=$peak
    if [ "$d" != cpu ]; then
        dpeak=$(build/bench/cl_peak --device "$d") || dpeak=""
        echo; echo "device FP32 peak: $(awk -v g="${dpeak:-0}" 'BEGIN { if (g >= 1000) printf "%.2f TFLOP/s", g / 1000
            else if (g > 0) printf "%.1f GFLOP/s", g; else printf "not measured (cl_peak failed)" }') ($d, cl_peak)"
    fi
    build/bench/vxm_bench --model "$MODEL" --moving "$P/${pair}_moving.nii.gz" --fixed "$fixed" \
        --golden-warp "$P/${golden}_warp.nii.gz" --golden-moved "$P/${golden}_moved.nii.gz" \
        --device "$d" --threads "$THREADS" --runs "$runs" ${dpeak:+--peak "$dpeak"} || echo "bench on $d failed"
done
echo
echo "== batch: vxm register --batch over pair1 and pair2 (model and device set up once, cpu)"
tmp=$(mktemp -d)
printf '%s %s %s\n%s %s %s\n' "$P/pair1_moving.nii.gz" "$P/fixed.nii.gz" "$tmp/m1.nii.gz" \
    "$P/pair2_moving.nii.gz" "$P/fixed.nii.gz" "$tmp/m2.nii.gz" >"$tmp/list"
./vxm register --model "$MODEL" --device cpu --threads "$THREADS" --batch "$tmp/list" | grep -E '^(registered|batch)'
rm -rf "$tmp"
echo
echo "== training step (forward + backward + Adam, batch 1, synthetic smooth volumes; median of $RUNS after a warm-up)"
echo "| device | architecture | shape | loss | step | device memory (buffers, peak) | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for d in $devices; do
    if ./vxm devices | grep "^$d " | grep -q rusticl; then continue; fi  # minutes per 3-D step there
    for shp in "64 64 64" "160 192 224"; do
        build/bench/train_bench --model "$MODEL" --shape $shp --device "$d" --threads "$THREADS" --runs "$RUNS" ||
            echo "| $d | published | $shp | mse | failed | |"
    done
done
build/bench/train_bench --new --shape 64 64 64 --device cpu --threads "$THREADS" --runs "$RUNS" || true
# the same full-size CPU step without recomputation and memory plan (graph/remat.c, graph/plan.c), same run
VXM_RECOMPUTE=0 VXM_PLAN=0 build/bench/train_bench --model "$MODEL" --shape 160 192 224 --device cpu \
    --threads "$THREADS" --runs "$RUNS" --note "VXM_RECOMPUTE=0 VXM_PLAN=0" || true
if [ -n "${TF_PYTHON:-}" ]; then  # the same step in TensorFlow VoxelMorph, same machine, same run
    for shp in "64 64 64" "160 192 224"; do THREADS=$THREADS "$TF_PYTHON" bench/tf_train_step.py $shp || true; done
fi
# PyTorch reference (bench/torch_train_step.py: the published architecture in PyTorch, same loss and optimiser):
# TORCH_PYTHON, else the first of python3 and Debian's /usr/bin/python3 (python3-torch) that imports torch.
# Its rows continue the table; the ratios compare with vxm CPU steps timed again here, in the same run.
TORCH_PY=${TORCH_PYTHON:-}
if [ -z "$TORCH_PY" ]; then
    for p in python3 /usr/bin/python3; do
        if "$p" -c 'import torch' 2>/dev/null; then TORCH_PY=$p; break; fi
    done
fi
if [ -n "$TORCH_PY" ]; then
    ratios=""
    for shp in "64 64 64" "160 192 224"; do
        trow=$(THREADS=$THREADS "$TORCH_PY" bench/torch_train_step.py $shp) || { echo "| PyTorch | published | $shp | mse | failed | |"; continue; }
        echo "$trow"
        vrow=$(build/bench/train_bench --model "$MODEL" --shape $shp --device cpu --threads "$THREADS" --runs "$RUNS") || continue
        # columns: | device | architecture | shape | loss | step | device memory | peak RSS |  ->  step "X s", RSS "Y MB"
        ratios="$ratios$(printf '%s\n%s\n' "$vrow" "$trow" | awk -F'|' '
            { gsub(/ s *$/, "", $6); gsub(/ MB *$/, "", $8); step[NR] = $6 + 0; rss[NR] = $8 + 0; shape = $4; gsub(/^ +| +$/, "", shape) }
            END { printf "%s: vxm CPU step / PyTorch step = %.3f s / %.3f s = %.2f;  RSS ratio = %.0f MB / %.0f MB = %.2f\n",
                         shape, step[1], step[2], step[1] / step[2], rss[1], rss[2], rss[1] / rss[2] }')
"
    done
    echo
    echo "== vxm CPU backend vs PyTorch ($("$TORCH_PY" -c 'import torch; print(torch.__version__)'), $THREADS threads; vxm steps re-timed in this run)"
    printf '%s' "$ratios"
else
    echo
    echo "(no Python with torch found: set TORCH_PYTHON, or apt-get install python3-torch, for the PyTorch reference)"
fi
echo
bash bench/synthmorph_bench.sh
# On a GPU: cl_peak, tuned vs built-in tiles, GPU training step, whole process, PyTorch + CUDA, issue 10's table.
if ./vxm devices | grep -q '^opencl:.*\[GPU,'; then
    echo
    bash bench/gpu_bench.sh
fi
echo; t=$(mktemp -d); ./vxm register --model "$MODEL" --moving "$P/pair1_moving.nii.gz" --fixed "$P/fixed.nii.gz" --moved "$t/moved.nii.gz" --warp "$t/warp.nii.gz" --device cpu --threads "$THREADS" >/dev/null && build/bench/gzip_bench "$P/pair1_vxm_dense_warp.nii.gz" "$t/warp.nii.gz" --runs "$RUNS" || echo "gzip bench failed"; rm -rf "$t"; THREADS=$THREADS RUNS=$RUNS bash bench/openvino_bench.sh "$MODEL" "$P"  # issue 12: gzip table (golden warp, warp vxm writes), OpenVINO row
