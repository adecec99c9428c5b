#!/usr/bin/env bash
# Memory check of `vxm train` with the AddressSanitizer build (build/asan/vxm): a fine-tuning run from a TF
# `model.save` file with --check and --save-gradients, a new model with every workflow at once (bidirectional,
# probabilistic, semi-supervised, batch 2), and an exact resume.  Leak detection on the CPU backend (OpenCL runtimes
# keep allocations of their own); any leak, out-of-bounds access or use-after-free fails the check.
set -u
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
D=$SHARED/data/train
T=tests/out/asan_train; rm -rf "$T"; mkdir -p "$T"
if [ ! -x build/asan/vxm ]; then echo "FAIL asan train: build/asan/vxm missing (make tests builds it)"; exit 1; fi
. tests/train_npy.sh
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
run() {
    local name=$1; shift
    if build/asan/vxm "$@" >"$T/log" 2>&1; then
        echo "PASS $name"
    else
        echo "FAIL $name: $(grep -m3 -E 'ERROR|SUMMARY|vxm:' "$T/log" | tr '\n' ' ')"
    fi
}
if [ -f "$D/int0_2d_model.h5" ]; then
    echo "$D/int0_2d_moving.nii.gz $D/int0_2d_fixed.nii.gz" >"$T/pairs.txt"
    run "asan train: fine-tune a TF model.save file, --check, --save-gradients" train --model-dir "$T/ft" \
        --pairs "$T/pairs.txt" --load-weights "$D/int0_2d_model.h5" --epochs 1 --steps-per-epoch 2 --device cpu \
        --check --save-gradients "$T/g.h5"
else
    echo "SKIP asan train fine-tune: ../shared not found"
fi
npy2d "$T/a.npy" 16 16 sq0; npy2d "$T/b.npy" 16 16 sq1; npy2d "$T/as.npy" 16 16 lab0; npy2d "$T/bs.npy" 16 16 lab1
npy1d "$T/labels.npy" 2
printf '%s %s %s %s\n%s %s %s %s\n' "$T/a.npy" "$T/b.npy" "$T/as.npy" "$T/bs.npy" "$T/b.npy" "$T/a.npy" "$T/bs.npy" \
    "$T/as.npy" >"$T/semi.txt"
ARGS=(--pairs "$T/semi.txt" --labels "$T/labels.npy" --bidir --use-probs --batch-size 2 --enc 4 4 --dec 4 4 4
      --steps-per-epoch 2 --device cpu)
run "asan train: bidirectional + probabilistic + semi-supervised, batch 2" train --model-dir "$T/all" "${ARGS[@]}" \
    --epochs 2
run "asan train: resume" train --model-dir "$T/all" --resume "$T/all/0002.h5" --pairs "$T/semi.txt" \
    --labels "$T/labels.npy" --batch-size 2 --steps-per-epoch 2 --device cpu --epochs 3
