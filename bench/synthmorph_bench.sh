#!/usr/bin/env bash
# SynthMorph training step (issue 9): synthesis of the two images and one-hot maps on the device (labels_to_image,
# training doc §6.3) plus forward + backward + Adam of train_synthmorph.py's default model (enc 64x4, dec 64x6,
# half-resolution field, Dice + Grad), batch 1.  2-D: random shapes at 192x160 (26 labels); 3-D: the shared
# brain label map at 160x192x224 (its own labels).  Median of the per-step times in D/log.csv after the first.
# Called by bench/bench.sh; STEPS3D (default 3) steps in 3-D, 12 in 2-D.
set -u
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
THREADS=${THREADS:-2}
STEPS3D=${STEPS3D:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median_step() { # log.csv -> median of the seconds column, first step dropped
    awk -F, 'NR > 2 { print $NF }' "$1" | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "n/a" }'
}
echo "== SynthMorph step (synthesise 2 images + train step, train_synthmorph.py's model, batch 1)"
echo "| device | data | shape | step (s) | peak RSS (MB) |"
echo "| --- | --- | --- | --- | --- |"
devs="cpu $(./vxm devices 2>/dev/null | awk '$1 ~ /^opencl:/ { print $1 }')"
echo "$P/pair1_moving_seg.nii.gz" >"$tmp/maps.txt"
for d in $devs; do
    rm -rf "$tmp/m2"
    /usr/bin/time -f %M -o "$tmp/rss2" ./vxm train --synthmorph --shapes --inshape 192x160 --model-dir "$tmp/m2" \
        --epochs 1 --steps-per-epoch 12 --device "$d" --threads "$THREADS" >/dev/null 2>"$tmp/err" &&
        echo "| $d | shapes | 192x160 | $(median_step "$tmp/m2/log.csv") | $(($(cat "$tmp/rss2") / 1024)) |" ||
        echo "| $d | shapes | 192x160 | failed: $(tail -1 "$tmp/err") | |"
    [ -f "$P/pair1_moving_seg.nii.gz" ] || continue
    rm -rf "$tmp/m3"
    /usr/bin/time -f %M -o "$tmp/rss3" ./vxm train --synthmorph --label-maps "$tmp/maps.txt" --model-dir "$tmp/m3" \
        --epochs 1 --steps-per-epoch "$STEPS3D" --device "$d" --threads "$THREADS" >/dev/null 2>"$tmp/err" &&
        echo "| $d | brain labels | 160x192x224 | $(median_step "$tmp/m3/log.csv") | $(($(cat "$tmp/rss3") / 1024)) |" ||
        echo "| $d | brain labels | 160x192x224 | failed: $(tail -1 "$tmp/err") | |"
done
