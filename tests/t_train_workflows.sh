#!/usr/bin/env bash
# `vxm train` workflows of VoxelMorph's training scripts on tiny 2-D volumes (seconds on the CPU backend):
# bidirectional (train.py --bidir: two image terms weighted 0.5/0.5), probabilistic (--use-probs: KL replaces Grad,
# the model keeps its log-sigma head and registers in mean mode), semi-supervised (train_semisupervised_seg.py:
# --labels with 4-name pair lines or --seg-prefix/--seg-suffix, a Dice term), and their bad inputs.  The gradients
# of these losses are checked against finite differences in test_train_fd; here: the command line, the loss
# columns of D/log.csv, checkpoints that `vxm register` runs, and the errors.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
T=tests/out/train_workflows
rm -rf "$T"; mkdir -p "$T"
. tests/train_npy.sh
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
npy2d "$T/a.npy" 16 16 sq0; npy2d "$T/b.npy" 16 16 sq1
npy2d "$T/a_seg.npy" 16 16 lab0; npy2d "$T/b_seg.npy" 16 16 lab1
npy1d "$T/labels.npy" 2
printf '%s %s\n%s %s\n' "$T/a.npy" "$T/b.npy" "$T/b.npy" "$T/a.npy" >"$T/pairs.txt"
printf '%s %s %s %s\n%s %s %s %s\n' "$T/a.npy" "$T/b.npy" "$T/a_seg.npy" "$T/b_seg.npy" \
    "$T/b.npy" "$T/a.npy" "$T/b_seg.npy" "$T/a_seg.npy" >"$T/semi.txt"
printf 'a\nb\n' >"$T/scans.txt"
SMALL=(--enc 4 4 --dec 4 4 4 --epochs 2 --steps-per-epoch 2 --device cpu --threads 1 --lr 1e-3)

# run NAME COLUMNS -- args: trains, then checks the log's loss columns and that vxm register runs the checkpoint
run() {
    local name=$1 cols=$2 dir=$T/$1; shift 3
    if ! "$VXM" train --model-dir "$dir" "$@" "${SMALL[@]}" >"$dir.out" 2>"$dir.err"; then
        fail "$name" "training failed ($(tail -1 "$dir.err"))"; return
    fi
    local head; head=$(head -1 "$dir/log.csv" 2>/dev/null)
    if [ "$head" != "$cols" ]; then fail "$name" "log.csv columns '$head', expected '$cols'"; return; fi
    if ! "$VXM" register --model "$dir/0002.h5" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$dir/moved.npy" \
        --device cpu >/dev/null 2>"$dir.reg"; then
        fail "$name" "vxm register on the checkpoint: $(tail -1 "$dir.reg")"; return
    fi
    pass "$name (log: $cols)"
}
run "bidirectional" "epoch,step,mse,mse_neg,grad,total,seconds" -- --pairs "$T/pairs.txt" --bidir
run "probabilistic (KL)" "epoch,step,mse,kl,total,seconds" -- --pairs "$T/pairs.txt" --use-probs --image-sigma 0.1
run "semi-supervised, pair list" "epoch,step,mse,grad,dice,total,seconds" -- --pairs "$T/semi.txt" --labels "$T/labels.npy" --dice-weight 0.1
run "semi-supervised, image list + seg suffix" "epoch,step,ncc,grad,dice,total,seconds" -- --img-list "$T/scans.txt" \
    --img-prefix "$T/" --img-suffix .npy --seg-prefix "$T/" --seg-suffix _seg.npy --labels "$T/labels.npy" --image-loss ncc
run "bidirectional + probabilistic + semi-supervised" "epoch,step,mse,mse_neg,kl,dice,total,seconds" -- \
    --pairs "$T/semi.txt" --labels "$T/labels.npy" --bidir --use-probs

# multichannel 3-D volumes (X, Y, Z, 2): a 2-channel model, registered by vxm register --multichannel
npy4d "$T/m0.npy" 8 8 8 2; SHIFT=1 npy4d "$T/m1.npy" 8 8 8 2
printf '%s %s\n' "$T/m0.npy" "$T/m1.npy" >"$T/mc.txt"
if "$VXM" train --model-dir "$T/mc" --pairs "$T/mc.txt" --multichannel "${SMALL[@]}" >/dev/null 2>"$T/mc.err" &&
    "$VXM" info --model "$T/mc/0002.h5" 2>/dev/null | grep -q "src_feats 2" &&
    "$VXM" register --model "$T/mc/0002.h5" --moving "$T/m0.npy" --fixed "$T/m1.npy" --moved "$T/mc/moved.npy" \
        --multichannel --device cpu >/dev/null 2>&1; then
    pass "multichannel: a 2-channel model trains and registers"
else
    fail "multichannel: a 2-channel model trains and registers" "$(tail -1 "$T/mc.err")"
fi

# the Dice term decreases when it is the only sizeable one (train on the segmentations alone)
dir=$T/dice_only
if "$VXM" train --model-dir "$dir" --pairs "$T/semi.txt" --labels "$T/labels.npy" --dice-weight 1 --lambda 0 \
    --image-sigma 1000 --enc 4 4 --dec 4 4 4 --epochs 4 --steps-per-epoch 5 --lr 1e-2 --device cpu >/dev/null 2>&1; then
    first=$(awk -F, 'NR == 2 {print $5}' "$dir/log.csv"); last=$(awk -F, 'END {print $5}' "$dir/log.csv")
    if awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a - 0.01)}'; then
        pass "semi-supervised: the weighted Dice term falls ($first -> $last)"
    else
        fail "semi-supervised: the weighted Dice term falls" "$first -> $last"
    fi
else
    fail "semi-supervised: the weighted Dice term falls" "training failed"
fi

# expect NAME STATUS PATTERN -- args
expect() {
    local name=$1 want=$2 pattern=$3; shift 4
    "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$? last; last=$(tail -1 "$T/stderr")
    if [ $rc -ne "$want" ]; then fail "$name" "exit $rc, expected $want ($last)"; return; fi
    if ! printf '%s\n' "$last" | grep -Eq "^vxm: $pattern"; then fail "$name" "message '$last'"; return; fi
    pass "$name ($last)"
}
expect "multichannel input needs --multichannel" 1 "$T/m0.npy: has 2 channels; pass --multichannel" -- \
    train --model-dir "$T/e" --pairs "$T/mc.txt" "${SMALL[@]}"
expect "semi: pair line without segmentations" 1 "$T/pairs.txt: line 1: expected four names" -- \
    train --model-dir "$T/e" --pairs "$T/pairs.txt" --labels "$T/labels.npy" "${SMALL[@]}"
expect "semi: missing label file" 1 "$T/nolabels.npy: " -- \
    train --model-dir "$T/e" --pairs "$T/semi.txt" --labels "$T/nolabels.npy" "${SMALL[@]}"
npy1d "$T/label3.npy" 2 3
expect "semi: a label in no segmentation" 1 "$T/label3.npy: label 3 is in none of the listed segmentations" -- \
    train --model-dir "$T/e" --pairs "$T/semi.txt" --labels "$T/label3.npy" "${SMALL[@]}"
npy1d "$T/zero.npy" 0
expect "semi: labels without a non-zero label" 1 "$T/zero.npy: no non-zero labels" -- \
    train --model-dir "$T/e" --pairs "$T/semi.txt" --labels "$T/zero.npy" "${SMALL[@]}"
printf '%s %s %s %s\n' "$T/a.npy" "$T/b.npy" "$T/a_seg.npy" "$T/noseg.npy" >"$T/semi_missing.txt"
expect "semi: missing segmentation" 1 "$T/noseg.npy: .*No such file" -- \
    train --model-dir "$T/e" --pairs "$T/semi_missing.txt" --labels "$T/labels.npy" "${SMALL[@]}"
npy2d "$T/c_seg.npy" 16 12 lab0
printf '%s %s %s %s\n' "$T/a.npy" "$T/b.npy" "$T/a_seg.npy" "$T/c_seg.npy" >"$T/semi_shape.txt"
expect "semi: segmentation of another shape" 1 "$T/c_seg.npy: shape 16x12 differs" -- \
    train --model-dir "$T/e" --pairs "$T/semi_shape.txt" --labels "$T/labels.npy" "${SMALL[@]}"
expect "semi: --seg-suffix without --labels" 2 "train: --seg-prefix/--seg-suffix go with --labels" -- \
    train --model-dir "$T/e" --img-list "$T/scans.txt" --seg-suffix _seg.npy "${SMALL[@]}"
expect "semi: --labels with --img-list needs the segmentation names" 2 "train: with --labels and --img-list" -- \
    train --model-dir "$T/e" --img-list "$T/scans.txt" --img-prefix "$T/" --labels "$T/labels.npy" "${SMALL[@]}"
expect "semi: no atlas" 2 "train: semi-supervised training \(--labels\) pairs scans with scans" -- \
    train --model-dir "$T/e" --img-list "$T/scans.txt" --atlas "$T/a.npy" --seg-suffix _s --labels "$T/labels.npy"
MODEL2D=${VXM_SHARED:-../shared}/data/train/int0_2d_model.h5
if [ -f "$MODEL2D" ]; then
    expect "--use-probs with a model without a log-sigma head" 1 "$MODEL2D: --use-probs needs a probabilistic model" -- \
        train --model-dir "$T/e" --pairs "$T/pairs.txt" --load-weights "$MODEL2D" --use-probs --device cpu
fi
