#!/usr/bin/env bash
# Memory check of a whole `vxm register` of the crop pair with the AddressSanitizer build (build/asan/vxm,
# made by `make tests`): any leak, out-of-bounds access or use-after-free aborts with a non-zero status.
# OpenCL runtimes keep allocations of their own until exit, so leak detection runs on the CPU backend; the
# OpenCL run checks our accesses with leak detection off.
set -u
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
T=tests/out/asan; rm -rf "$T"; mkdir -p "$T"
if [ ! -f "$P/paircrop_fixed.nii.gz" ]; then echo "SKIP asan register: ../shared not found"; exit 0; fi
if [ ! -x build/asan/vxm ]; then echo "FAIL asan register: build/asan/vxm missing (make tests builds it)"; exit 1; fi
run() {
    local name=$1 opts=$2; shift 2
    if ASAN_OPTIONS="$opts" build/asan/vxm register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" \
        --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz" --warp "$T/warp.nii.gz" "$@" >"$T/log" 2>&1 \
        && [ -f "$T/moved.nii.gz" ]; then
        echo "PASS $name"
    else
        echo "FAIL $name: $(grep -m3 -E 'ERROR|SUMMARY|vxm:' "$T/log" | tr '\n' ' ')"
    fi
}
run "asan register crop pair, cpu (leaks + accesses)" "detect_leaks=1:abort_on_error=0" --device cpu
dev=$(./vxm devices | awk '/^opencl:/ {print $1; exit}')
if [ -n "$dev" ]; then
    run "asan register crop pair, $dev (accesses)" "detect_leaks=0:protect_shadow_gap=0" --device "$dev"
else
    echo "SKIP asan opencl: no OpenCL device"
fi
