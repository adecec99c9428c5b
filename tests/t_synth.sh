#!/usr/bin/env bash
# vxm synth and vxm train --synthmorph (SynthMorph, training doc §6): outputs, reproducibility across runs and
# devices, 5-digit checkpoints, exact resume, and bad input (one line "vxm: ...", non-zero exit, no output left).
set -u
cd "$(dirname "$0")/.." || exit 1
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs T=tests/out/synth VXM=./vxm
rm -rf "$T" && mkdir -p "$T"
pass() { echo "PASS synth $1"; }
fail() { echo "FAIL synth $1"; }

EXPECT_PREFIX=synth EXPECT_OUTPUTS="$T/img* $T/lab*"
. tests/expect_error.sh

# shapes on the CPU and on every OpenCL device: the same label map, bitwise
"$VXM" synth --shapes --inshape 48x64 --nb-labels 10 --seed 4 --out "$T/s_cpu.npy" --out-labels "$T/sl_cpu.npy" \
    --device cpu 2>"$T/err" || fail "shapes cpu: $(cat "$T/err")"
"$VXM" synth --shapes --inshape 48x64 --nb-labels 10 --seed 4 --out "$T/s_cpu2.npy" --out-labels "$T/sl_cpu2.npy" \
    --device cpu 2>"$T/err" || fail "shapes cpu again: $(cat "$T/err")"
if cmp -s "$T/s_cpu.npy" "$T/s_cpu2.npy" && cmp -s "$T/sl_cpu.npy" "$T/sl_cpu2.npy"; then
    pass "shapes: same seed, same files"
else fail "shapes: same seed gave different files"; fi
"$VXM" synth --shapes --inshape 48x64 --nb-labels 10 --seed 5 --out "$T/s_5.npy" --device cpu 2>/dev/null
if cmp -s "$T/s_cpu.npy" "$T/s_5.npy"; then fail "shapes: another seed gave the same image"; else pass "shapes: another seed, another image"; fi
for dev in $("$VXM" devices 2>/dev/null | awk '$1 ~ /^opencl:/ { print $1 }'); do
    if "$VXM" synth --shapes --inshape 48x64 --nb-labels 10 --seed 4 --out "$T/s_cl.npy" --out-labels "$T/sl_cl.npy" \
        --device "$dev" 2>"$T/err" && cmp -s "$T/sl_cpu.npy" "$T/sl_cl.npy"; then
        pass "shapes on $dev: label map bitwise equal to the CPU's"
    else fail "shapes on $dev: $(cat "$T/err") labels differ from the CPU's"; fi
done
# a QC picture of two synthetic images
"$VXM" synth --shapes --inshape 48x64 --nb-labels 10 --seed 4 --vel-std 2 --out "$T/s_b.npy" --device cpu 2>/dev/null
if "$VXM" qc --fixed "$T/s_cpu.npy" --moving "$T/s_b.npy" --moved "$T/s_b.npy" --out "$T/qc.png" >/dev/null 2>&1 &&
    [ -s "$T/qc.png" ]; then pass "vxm qc shows synthetic images"; else fail "vxm qc on synthetic images"; fi

if [ -f "$P/pair2d_fixed_seg.nii.gz" ]; then
    if "$VXM" synth --labels-in "$P/pair2d_fixed_seg.nii.gz" --seed 1 --out "$T/b.nii.gz" --out-labels "$T/bl.nii.gz" \
        --device cpu 2>"$T/err" && [ -s "$T/b.nii.gz" ] && [ -s "$T/bl.nii.gz" ]; then
        pass "brain label map -> image and labels (NIfTI, header of the map)"
    else fail "brain label map: $(cat "$T/err")"; fi
    # an intensity image is not a label map
    expect "not a label map" "$P/pair2d_fixed.nii.gz: label .* is not an integer" -- synth --labels-in "$P/pair2d_fixed.nii.gz" --out "$T/img.nii.gz"
else
    echo "SKIP synth brain label map: ../shared not found (set VXM_SHARED)"
fi
expect "missing label map" "$T/nope.nii.gz: .*No such file" -- synth --labels-in "$T/nope.nii.gz" --out "$T/img.nii.gz"
expect "odd size" "--inshape: SynthMorph needs even sizes" -- synth --shapes --inshape 47x64 --out "$T/img.npy"
expect "no label source" "give exactly one of --shapes" -- synth --out "$T/img.npy"
expect "bad inshape" "--inshape: expected XxY" -- synth --shapes --inshape 64 --out "$T/img.npy"
expect "shapes without inshape" "--shapes needs --inshape" -- synth --shapes --out "$T/img.npy"
expect "bad vel-res" "--vel-res" -- synth --shapes --inshape 32x32 --vel-res 0 --out "$T/img.npy"
expect "labels not writable, image removed" "$T/nodir/lab.npy: " -- synth --shapes --inshape 32x32 --out "$T/img.npy" --out-labels "$T/nodir/lab.npy"

# vxm train --synthmorph on shapes: 5-digit checkpoints, loadable by register; resume is exact
M=$T/m
arch=(--enc 8 16 16 --dec 16 16 16 8 8 --device cpu --threads 2)
if "$VXM" train --synthmorph --shapes --inshape 32x32 --nb-labels 6 --model-dir "$M" --epochs 4 --steps-per-epoch 2 \
    --save-freq 2 --lr 1e-3 --seed 3 "${arch[@]}" >"$T/train.log" 2>&1 && [ -f "$M/00000.h5" ] && [ -f "$M/00004.h5" ] &&
    grep -q "dice" "$M/log.csv"; then
    pass "train --synthmorph: checkpoints 00000.h5 .. 00004.h5, log with the Dice term"
else fail "train --synthmorph: $(tail -2 "$T/train.log" | tr '\n' ' ')"; fi
"$VXM" synth --shapes --inshape 32x32 --nb-labels 6 --seed 1 --out "$T/r1.npy" --device cpu 2>/dev/null
"$VXM" synth --shapes --inshape 32x32 --nb-labels 6 --seed 2 --out "$T/r2.npy" --device cpu 2>/dev/null
if "$VXM" register --model "$M/00004.h5" --moving "$T/r1.npy" --fixed "$T/r2.npy" --moved "$T/r_moved.npy" \
    --device cpu >"$T/reg.log" 2>&1 && [ -s "$T/r_moved.npy" ]; then
    pass "a --synthmorph checkpoint registers with vxm register"
else fail "register with a --synthmorph checkpoint: $(tail -1 "$T/reg.log")"; fi
"$VXM" train --synthmorph --shapes --inshape 32x32 --nb-labels 6 --model-dir "$T/r" --epochs 2 --steps-per-epoch 2 \
    --save-freq 2 --lr 1e-3 --seed 3 "${arch[@]}" >/dev/null 2>&1
"$VXM" train --synthmorph --shapes --inshape 32x32 --nb-labels 6 --model-dir "$T/r" --epochs 4 --steps-per-epoch 2 \
    --save-freq 2 --seed 3 --resume "$T/r/00002.h5" --device cpu --threads 2 >"$T/resume.log" 2>&1
if cmp -s "$M/00004.h5" "$T/r/00004.h5"; then pass "train --synthmorph: 2 + resume + 2 epochs == 4 epochs (bitwise)"
else fail "train --synthmorph resume: checkpoints differ ($(tail -1 "$T/resume.log"))"; fi
expect "synthmorph with images" "train: --synthmorph synthesises its images" -- train --synthmorph --shapes --inshape 32x32 --model-dir "$T/x" --img-list "$T/list.txt"
expect "synthesis option without --synthmorph" "train: label-map and synthesis options go with --synthmorph" -- train --model-dir "$T/x" --img-list "$T/list.txt" --vel-std 1
