#!/usr/bin/env bash
# make demo: register the shared pair1 to the fixed scan with the published VoxelMorph model, then report
# time, peak memory, Dice before/after and where the outputs went.
set -eu
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
P=$SHARED/data/pairs
OUT=${DEMO_OUT:-demo_out}
DEVICE=${DEVICE:-auto}
export RUSTICL_ENABLE="${RUSTICL_ENABLE:-llvmpipe}"

if [ ! -f "$MODEL" ] || [ ! -f "$P/pair1_moving.nii.gz" ]; then
    cat <<MSG
The shared data ($SHARED) is not here, so there is nothing to register.
Get the published model "vxm_dense_brain_T1_3D_mse.h5" (dense-brain-T1-3d-mse-32feat) from the
VoxelMorph project's README (github.com/voxelmorph/voxelmorph, "Pre-trained models"), then run:

  ./vxm register --model vxm_dense_brain_T1_3D_mse.h5 --moving moving.nii.gz --fixed fixed.nii.gz \\
                 --moved moved.nii.gz --warp warp.nii.gz [--device cpu|opencl:P:D|auto]

Inputs: affinely aligned T1 scans scaled to [0, 1], 160x192x224 (any size divisible by 16).
See ./vxm devices for the devices on this machine.
MSG
    exit 0
fi

mkdir -p "$OUT"
echo "== devices"
./vxm devices
echo
echo "== register pair1 (device: $DEVICE)"
start=$(date +%s.%N)
./vxm register --model "$MODEL" --moving "$P/pair1_moving.nii.gz" --fixed "$P/fixed.nii.gz" \
      --moved "$OUT/pair1_moved.nii.gz" --warp "$OUT/pair1_warp.nii.gz" --device "$DEVICE"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "whole process (read, register, write .nii.gz): %.2f s\n", b - a }'
./vxm warp --moving "$P/pair1_moving_seg.nii.gz" --warp "$OUT/pair1_warp.nii.gz" --interp nearest \
      --moved "$OUT/pair1_moved_seg.nii.gz"
before=$(./vxm dice "$P/pair1_moving_seg.nii.gz" "$P/fixed_seg.nii.gz" --labels "$SHARED/data/scans/labels.npz" | tail -1)
after=$(./vxm dice "$OUT/pair1_moved_seg.nii.gz" "$P/fixed_seg.nii.gz" --labels "$SHARED/data/scans/labels.npz" | tail -1)
echo
echo "Dice before registration: $before"
echo "Dice after registration:  $after   (TF VoxelMorph reference: 0.931)"
echo
echo "outputs: $OUT/pair1_moved.nii.gz (moved image), $OUT/pair1_warp.nii.gz (warp),"
echo "         $OUT/pair1_moved_seg.nii.gz (moving segmentation warped with nearest)"
