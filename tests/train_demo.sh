#!/usr/bin/env bash
# make train-demo: train a 2-D VoxelMorph model on a synthetic cohort made from the shared brain scan, then
# compare Dice on held-out pairs: identity (before registration), the untrained model (0000.h5, a near-zero
# field) and the trained one.  The published model is 3-D and cannot run on 2-D slices, so it is evaluated on
# 3-D held-out pairs made the same way from the whole volume.  Everything goes to demo_out/train/.
#   DEMO_EPOCHS (default 60, x 100 steps: ~3 min on 2 cores), THREADS (default 2), DEMO_OUT, VXM_SHARED
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
S=$SHARED/data/scans
MODEL3D=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
D=${DEMO_OUT:-demo_out}/train
EPOCHS=${DEMO_EPOCHS:-60}
THREADS=${THREADS:-2}
if [ ! -f "$S/test_scan.npz" ] || [ ! -f "$S/labels.npz" ]; then
    echo "train-demo: $S/test_scan.npz and labels.npz (VoxelMorph's example scan) are needed; not found"
    exit 0
fi
rm -rf "$D"; mkdir -p "$D"
IMG=(--img-prefix "$D/cohort/" --img-suffix _img.nii.gz)
SEG=(--seg-prefix "$D/cohort/" --seg-suffix _seg.nii.gz)

echo "== cohort: 40 training + 10 held-out pairs of 160x192 slices, each image its own random smooth warp of"
echo "   the middle slice (up to 6 mm), gamma and bias changes; labels warped with it (bench/make_cohort.c)"
build/bench/make_cohort --scan "$S/test_scan.npz" --labels "$S/labels.npz" --out "$D/cohort" \
    --train 40 --test 10 --factor 1 --amp 6 --seed 1

echo
echo "== train: ./vxm train (train.py's architecture and loss: enc 16 32 32 32, dec 32 32 32 32 32 16 16,"
echo "   MSE + 0.01 Grad; lr 1e-3 instead of train.py's 1e-4 so that a demo converges in minutes), $EPOCHS x 100 steps"
start=$(date +%s)
./vxm train --model-dir "$D/model" --pairs "$D/cohort/train_pairs.txt" "${IMG[@]}" --lr 1e-3 \
    --epochs "$EPOCHS" --steps-per-epoch 100 --save-freq 20 --device cpu --threads "$THREADS" 2>&1 |
    awk '!/^epoch/ || $2 ~ /^1\// || $2 ~ /^[0-9]*0\//'   # progress every 10 epochs
echo "training took $(($(date +%s) - start)) s"
last=$(printf '%s/model/%04d.h5' "$D" "$EPOCHS")

dice() { # MODEL LIST LOG: the "Avg Dice" line of vxm test, log kept
    ./vxm test --model "$1" --pairs "$2" "${IMG[@]}" "${SEG[@]}" --device cpu --threads "$THREADS" >"$3"
    grep '^Avg Dice' "$3"
}
echo
echo "== vxm test on the 10 held-out pairs (mean Dice over the anatomical labels present, +/- sd over pairs)"
untrained=$(dice "$D/model/0000.h5" "$D/cohort/test_pairs.txt" "$D/test_untrained.log")
trained=$(dice "$last" "$D/cohort/test_pairs.txt" "$D/test_trained.log")
before=$(echo "$trained" | sed 's/.*(before registration: \(.*\))/\1/')
printf '  %-32s %s\n' "identity (before registration):" "$before" \
    "untrained model (0000.h5):" "$(echo "$untrained" | awk '{print $3, $4, $5}')" \
    "trained model ($(basename "$last")):" "$(echo "$trained" | awk '{print $3, $4, $5}')"
echo "  (per pair and per label: $D/test_trained.log)"

echo
if [ -f "$MODEL3D" ]; then
    echo "== the published 3-D model (vxm_dense_brain_T1_3D_mse.h5) cannot run on 2-D slices; on 2 held-out 3-D"
    echo "   pairs made the same way from the whole 160x192x224 volume (its training resolution):"
    build/bench/make_cohort --scan "$S/test_scan.npz" --labels "$S/labels.npz" --out "$D/cohort3d" --3d \
        --train 0 --test 2 --factor 1 --amp 6 --seed 1 | tail -1
    p3=$(./vxm test --model "$MODEL3D" --pairs "$D/cohort3d/test_pairs.txt" --img-prefix "$D/cohort3d/" \
        --img-suffix _img.nii.gz --seg-prefix "$D/cohort3d/" --seg-suffix _seg.nii.gz --device cpu \
        --threads "$THREADS" | tee "$D/test_published3d.log" | grep '^Avg Dice')
    echo "  published model: $p3"
else
    echo "(published model $MODEL3D not found: no 3-D comparison)"
fi
echo
echo "outputs: $D/cohort (images, label maps, pair lists), $D/model (checkpoints), $D/*.log (vxm test)"
