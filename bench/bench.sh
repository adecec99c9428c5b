#!/usr/bin/env bash
# make bench: timing table per device (CPU backend, then every OpenCL device), outputs checked against the
# golden files in the same run, plus the machine's measured FMA peak.  Timings live here, never in tests.
set -u
cd "$(dirname "$0")/.."
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
    build/bench/vxm_bench --model "$MODEL" --moving "$P/pair1_moving.nii.gz" --fixed "$P/fixed.nii.gz" \
        --golden-warp "$P/pair1_vxm_dense_warp.nii.gz" --golden-moved "$P/pair1_vxm_dense_moved.nii.gz" \
        --device "$d" --threads "$THREADS" --runs "$RUNS" --peak "$peak" || echo "bench on $d failed"
done
