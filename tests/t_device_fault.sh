#!/usr/bin/env bash
# Device failures through the CLI (issue 11): VXM_OPENCL_FAULT makes the N-th OpenCL allocation fail as
# out-of-memory or the N-th kernel launch fail as a lost device.  vxm register and vxm train --synthmorph on the
# first OpenCL device must then print one line "vxm: opencl:P:D: layer <name>: ...", exit non-zero, and leave no
# output or temporary file (train: the checkpoints completed before the failure stay, nothing partial).
set -u
cd "$(dirname "$0")/.." || exit 1
T=tests/out/device_fault VXM=./vxm
rm -rf "$T" && mkdir -p "$T"
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
export RUSTICL_ENABLE="${RUSTICL_ENABLE:-llvmpipe}"
dev=$("$VXM" devices 2>/dev/null | awk '$1 ~ /^opencl:/ { print $1; exit }')
if [ -z "$dev" ]; then
    echo "SKIP device_fault: no OpenCL device"
    exit 0
fi
EXPECT_PREFIX=device_fault
. tests/expect_error.sh
if [ -f "$MODEL" ]; then
    EXPECT_OUTPUTS="$T/m.nii.gz $T/w.nii.gz"
    for f in alloc:5 alloc:30 launch:3 launch:30; do
        VXM_OPENCL_FAULT=$f expect "register, $f" "$dev: layer [a-z0-9_]+( \\([a-z_]+ upload\\))?: (clEnqueueNDRangeKernel|clCreateBuffer)" \
            -- register --device "$dev" --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" \
            --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/m.nii.gz" --warp "$T/w.nii.gz"
    done
else
    echo "SKIP device_fault register: $SHARED not found"
fi
# training: a launch in the second epoch fails; the checkpoints completed before stay, nothing partial is written.
# (vxm train reports progress on stderr, so the error is its last line.)
M=$T/model
if VXM_OPENCL_FAULT=launch:1200 "$VXM" train --synthmorph --shapes --inshape 32x32 --nb-labels 6 --model-dir "$M" \
    --epochs 4 --steps-per-epoch 2 --enc 8 8 --dec 8 8 8 --device "$dev" --seed 1 >"$T/train.out" 2>"$T/train.err"; then
    echo "FAIL device_fault train: exit status 0"
elif ! tail -1 "$T/train.err" | grep -Eq "^vxm: $dev: layer [a-z0-9_/]+( \([a-z_]+ gradient\))?: clEnqueueNDRangeKernel"; then
    echo "FAIL device_fault train: last line '$(tail -1 "$T/train.err")'"
elif [ ! -f "$M/00000.h5" ] || [ -f "$M/00004.h5" ] || ls "$M"/.*tmp* >/dev/null 2>&1; then
    echo "FAIL device_fault train: $(ls -a "$M" 2>&1 | tr '\n' ' ')"
else
    echo "PASS device_fault train: one error line ($(tail -1 "$T/train.err")), earlier checkpoints kept, no partial file"
fi
