#!/usr/bin/env bash
# vxm refine (train_instance.py without a network) and vxm register --refine N: outputs, the loss report on stderr,
# and bad input (one line "vxm: <file>: <problem>", non-zero exit, no output file left behind).
set -u
cd "$(dirname "$0")/.." || exit 1
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5 T=tests/out/refine VXM=./vxm
[ -f "$P/paircrop_fixed.nii.gz" ] || { echo "SKIP refine: ../shared not found (set VXM_SHARED)"; exit 0; }
rm -rf "$T" && mkdir -p "$T"

EXPECT_PREFIX=refine EXPECT_OUTPUTS="$T/moved* $T/warp*"
. tests/expect_error.sh
ref() { echo refine --device cpu --steps 3 --moved "$T/moved.nii.gz" --warp "$T/warp.nii.gz" "$@"; }

gunzip -c "$P/pair2d_fixed.nii.gz" >"$T/fixed2d.nii"
cp "$T/fixed2d.nii" "$T/nan.nii"
printf '\x00\x00\xc0\x7f' | dd of="$T/nan.nii" bs=1 seek=1000 conv=notrunc status=none # a NaN voxel
gunzip -c "$P/paircrop_fixed.nii.gz" >"$T/nan3d.nii"
printf '\x00\x00\xc0\x7f' | dd of="$T/nan3d.nii" bs=1 seek=1000 conv=notrunc status=none

expect "missing moving file" "$T/nope.nii.gz: .*No such file" -- $(ref --moving "$T/nope.nii.gz" --fixed "$P/pair2d_fixed.nii.gz")
expect "shape mismatch" "$P/paircrop_fixed.nii.gz: .*does not match" -- $(ref --moving "$P/pair2d_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz")
expect "NaN in input" "$T/nan.nii: .*NaN" -- $(ref --moving "$P/pair2d_moving.nii.gz" --fixed "$T/nan.nii")
expect "bad image loss" "--image-loss must be mse or ncc" -- $(ref --moving "$P/pair2d_moving.nii.gz" --fixed "$P/pair2d_fixed.nii.gz" --image-loss l1)
expect "bad --init" "refine: --init must be" -- $(ref --moving "$P/pair2d_moving.nii.gz" --fixed "$P/pair2d_fixed.nii.gz" --init ones)
expect "register --refine NaN" "$T/nan3d.nii: .*NaN" -- register --model "$MODEL" --device cpu --refine 2 --moved "$T/moved.nii.gz" --moving "$T/nan3d.nii" --fixed "$P/paircrop_fixed.nii.gz"

# dice_mean SEG_A SEG_B: the mean Dice printed by vxm dice
dice_mean() { "$VXM" dice "$1" "$2" | sed -n 's/^mean dice \([0-9.]*\).*/\1/p'; }

# 2-D pair from the identity (--init zero), 60 steps: the loss falls and the warped segmentation overlaps better.
if "$VXM" refine --device cpu --moving "$P/pair2d_moving.nii.gz" --fixed "$P/pair2d_fixed.nii.gz" --init zero \
    --steps 60 --moved "$T/m2.nii.gz" --warp "$T/w2.nii.gz" >"$T/stdout" 2>"$T/stderr" &&
    "$VXM" warp --moving "$P/pair2d_moving_seg.nii.gz" --warp "$T/w2.nii.gz" --moved "$T/s2.nii.gz" --interp nearest >/dev/null; then
    line=$(grep '^refine: loss before' "$T/stderr")
    before=$(echo "$line" | sed -n 's/.*loss before \([^ ]*\) .*/\1/p')
    after=$(echo "$line" | sed -n 's/.*step(s) \([^ ]*\) .*/\1/p')
    d0=$(dice_mean "$P/pair2d_moving_seg.nii.gz" "$P/pair2d_fixed_seg.nii.gz")
    d1=$(dice_mean "$T/s2.nii.gz" "$P/pair2d_fixed_seg.nii.gz")
    if awk -v b="$before" -v a="$after" -v d0="$d0" -v d1="$d1" 'BEGIN { exit !(a < 0.5 * b && d1 > d0 + 0.1) }'; then
        echo "PASS refine 2-D pair from zero: loss $before -> $after, Dice $d0 -> $d1"
    else
        echo "FAIL refine 2-D pair from zero: loss $before -> $after, Dice $d0 -> $d1"
    fi
else
    echo "FAIL refine 2-D pair from zero: $(tr '\n' '|' <"$T/stderr")"
fi

# register --refine: the network's result refined (outputs written, loss report on stderr); a legacy model says
# that it starts from zero.
if "$VXM" register --model "$MODEL" --device cpu --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" \
    --moved "$T/m3.nii.gz" --warp "$T/w3.nii.gz" --refine 3 --refine-lr 1e-4 >"$T/stdout" 2>"$T/stderr" &&
    [ -s "$T/m3.nii.gz" ] && [ -s "$T/w3.nii.gz" ] && grep -q '^refine: loss before .* after 3 step' "$T/stderr"; then
    echo "PASS refine register --refine 3 ($(cat "$T/stderr"))"
else
    echo "FAIL refine register --refine 3: $(tr '\n' '|' <"$T/stderr")"
fi
if "$VXM" register --model "$SHARED/data/models/cvpr2018_vm2_cc.h5" --device cpu --moving "$P/paircrop_moving.nii.gz" \
    --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/m4.nii.gz" --refine 1 >"$T/stdout" 2>"$T/stderr" &&
    grep -q 'legacy Keras-graph model; refining from a zero field' "$T/stderr"; then
    echo "PASS refine register --refine with a legacy model starts from zero (says so)"
else
    echo "FAIL refine register --refine with a legacy model: $(tr '\n' '|' <"$T/stderr")"
fi

# register --model none: refinement alone from the identity (train_instance.py's setting); Dice of the nearest-
# warped label maps must improve clearly on the 2-D pair (measured 0.70 -> 0.95 with 60 steps)
if "$VXM" register --model none --moving "$P/pair2d_moving.nii.gz" --fixed "$P/pair2d_fixed.nii.gz" \
    --moved "$T/none_moved.nii.gz" --warp "$T/none_warp.nii.gz" --refine 60 --device cpu >/dev/null 2>"$T/none.err" &&
    "$VXM" warp --moving "$P/pair2d_moving_seg.nii.gz" --warp "$T/none_warp.nii.gz" --moved "$T/none_seg.nii.gz" \
        --interp nearest >/dev/null 2>&1; then
    before=$("$VXM" dice "$P/pair2d_moving_seg.nii.gz" "$P/pair2d_fixed_seg.nii.gz" | awk '/^mean dice/ {print $3}')
    after=$("$VXM" dice "$T/none_seg.nii.gz" "$P/pair2d_fixed_seg.nii.gz" | awk '/^mean dice/ {print $3}')
    if awk -v a="$before" -v b="$after" 'BEGIN {exit !(b > a + 0.1)}'; then
        echo "PASS refine register --model none --refine 60: mean Dice $before -> $after"
    else
        echo "FAIL refine register --model none --refine 60: mean Dice $before -> $after"
    fi
else
    echo "FAIL refine register --model none --refine 60: $(tail -1 "$T/none.err")"
fi
expect "register --model none without --refine" "register: --model none registers by refinement alone" -- \
    register --model none --moving "$P/pair2d_moving.nii.gz" --fixed "$P/pair2d_fixed.nii.gz" --moved "$T/moved.nii.gz"
