#!/usr/bin/env bash
# `vxm template` (train_template.py, training doc §4.1) on two tiny 2-D scans (tests/train_npy.sh):
#  1. usage errors (exit 2) and bad input (one line "vxm: ...", exit 1);
#  2. a short run: checkpoints D/0000.h5 .. and D/template.nii.gz (finite, different from the initial mean
#     image, the NCC to the scans improves over training), D/log.csv;
#  3. round trips: `vxm register --model D/NNNN.h5 --moving D/template.nii.gz --fixed scan` works; --resume is
#     exact (2 + 2 epochs == 4 epochs, byte-identical template: weights, Adam, MeanStream mean/count restored);
#     a --meanstream graph checkpoint resumes only in graph mode; --load-weights of a plain VxmDense file.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
T=tests/out/template
rm -rf "$T"; mkdir -p "$T"
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

. tests/train_npy.sh   # npy2d
npy2d "$T/a.npy" 16 16 sq0; npy2d "$T/b.npy" 16 16 sq1; npy2d "$T/c.npy" 16 12 sq0
printf 'a\nb\n' >"$T/scans.txt"
printf 'a\nc\n' >"$T/shapes.txt"
printf 'a b\nb a\n' >"$T/pairs.txt"
AFF=(--img-prefix "$T/" --img-suffix .npy)
SMALL=(--enc 4 4 --dec 4 4 4 --int-steps 3 --device cpu --lr 1e-2 --seed 3)

expect() {
    local name=$1 want=$2 pattern=$3; shift 4
    "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$? last
    last=$(tail -1 "$T/stderr")
    if [ $rc -ne "$want" ]; then fail "$name" "exit status $rc, expected $want ($(head -2 "$T/stderr" | tr '\n' '|'))"; return; fi
    if [ "$want" -eq 1 ] && [ "$(wc -l <"$T/stderr")" -ne 1 ]; then fail "$name" "more than one stderr line"; return; fi
    if ! printf '%s\n' "$last" | grep -Eq "^vxm: $pattern"; then fail "$name" "message '$last' does not match '$pattern'"; return; fi
    pass "$name ($last)"
}
# floats of a NIfTI-1 .nii.gz (352-byte header), one per line
nii_floats() { zcat "$1" | od -A n -t f4 -j 352 -v | tr -s ' ' '\n' | grep -v '^$'; }
# column of log.csv by name, rows FIRST..LAST (1-based data rows): mean
log_mean() {
    awk -F, -v col="$2" -v a="$3" -v b="$4" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        NR - 1 >= a && NR - 1 <= b { s += $c; n++ } END { printf "%.6f\n", s / n }' "$1"
}

# ---- 1. usage and input errors ------------------------------------------------------------------------------
"$VXM" template --help >"$T/help" 2>&1 && grep -q '^usage: vxm template' "$T/help" && pass "template --help" ||
    fail "template --help" "$(head -1 "$T/help")"
if "$VXM" help | grep -q '^  template '; then pass "vxm help lists template"; else fail "vxm help lists template" "no line"; fi
expect "usage: no arguments" 2 "template: --img-list and --model-dir are required" -- template
expect "usage: bad --meanstream" 2 "template: --meanstream must be streaming or graph" -- template --img-list "$T/scans.txt" --model-dir "$T/x" --meanstream eager
expect "usage: bad --image-loss" 2 "template: --image-loss must be ncc or mse" -- template --img-list "$T/scans.txt" --model-dir "$T/x" --image-loss l1
expect "usage: --image-loss-weight above 1" 2 "--image-loss-weight" -- template --img-list "$T/scans.txt" --model-dir "$T/x" --image-loss-weight 2
expect "usage: unknown option" 2 "template: unknown option --frobnicate" -- template --img-list "$T/scans.txt" --model-dir "$T/x" --frobnicate
expect "shapes differ" 1 "$T/c.npy: shape 16x12 differs" -- template --img-list "$T/shapes.txt" "${AFF[@]}" --model-dir "$T/x" "${SMALL[@]}"
expect "--atlas-init of another shape" 1 "$T/c.npy: the initial atlas must have the scans' shape" -- template --img-list "$T/scans.txt" "${AFF[@]}" --model-dir "$T/x" --atlas-init "$T/c.npy" "${SMALL[@]}"

# ---- 2. a short run -----------------------------------------------------------------------------------------
"$VXM" template --img-list "$T/scans.txt" "${AFF[@]}" --model-dir "$T/init" --epochs 0 "${SMALL[@]}" >"$T/init.log" 2>&1
"$VXM" template --img-list "$T/scans.txt" "${AFF[@]}" --model-dir "$T/m" --epochs 6 --steps-per-epoch 10 --save-freq 3 \
    "${SMALL[@]}" >"$T/m.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -f "$T/m/0000.h5" ] && [ -f "$T/m/0003.h5" ] && [ -f "$T/m/0006.h5" ] && [ -f "$T/m/template.nii.gz" ]; then
    pass "template run: 0000.h5, 0003.h5, 0006.h5, template.nii.gz"
else
    fail "template run" "exit $rc: $(tail -2 "$T/m.log" | tr '\n' '|')"
fi
nii_floats "$T/init/template.nii.gz" >"$T/init.txt"; nii_floats "$T/m/template.nii.gz" >"$T/final.txt"
nonfinite=$(grep -ciE 'nan|inf' "$T/final.txt"); n=$(wc -l <"$T/final.txt")
diff=$(paste "$T/init.txt" "$T/final.txt" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { print m + 0 }')
if [ "$n" -eq 256 ] && [ "$nonfinite" -eq 0 ] && awk -v d="$diff" 'BEGIN { exit !(d > 1e-3) }'; then
    pass "template finite (256 voxels), moved from the initial mean image (max |change| $diff)"
else
    fail "template finite and moved" "$n voxels, $nonfinite non-finite, max change $diff"
fi
first=$(log_mean "$T/m/log.csv" ncc 1 10); last=$(log_mean "$T/m/log.csv" ncc 51 60)
if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then
    pass "NCC loss of the template to the scans improves: first 10 steps $first, last 10 $last"
else
    fail "NCC loss improves" "first 10 steps $first, last 10 $last"
fi

# ---- 3. round trips -----------------------------------------------------------------------------------------
if "$VXM" register --model "$T/m/0003.h5" --moving "$T/m/template.nii.gz" --fixed "$T/a.npy" --moved "$T/moved.nii.gz" \
    --device cpu >"$T/reg.log" 2>&1 && [ -f "$T/moved.nii.gz" ]; then
    pass "vxm register --model D/0003.h5 --moving D/template.nii.gz --fixed scan"
else
    fail "vxm register with a template checkpoint" "$(tail -1 "$T/reg.log")"
fi
# resume_exact NAME DIR ARGS...: 4 epochs in DIR/full == 2 epochs + --resume 2 more in DIR/half (byte-identical
# template, identical log rows without the timing column)
resume_exact() {
    local name=$1 dir=$2 rc; shift 2
    "$VXM" template "$@" --model-dir "$dir/full" --epochs 4 >"$dir/full.log" 2>&1
    "$VXM" template "$@" --model-dir "$dir/half" --epochs 2 >"$dir/half.log" 2>&1
    "$VXM" template "$@" --model-dir "$dir/half" --epochs 4 --resume "$dir/half/0002.h5" >>"$dir/half.log" 2>&1; rc=$?
    if [ $rc -eq 0 ] && cmp -s <(zcat "$dir/full/template.nii.gz") <(zcat "$dir/half/template.nii.gz") &&
        cmp -s <(tail -n +2 "$dir/full/log.csv" | rev | cut -d, -f2- | rev) \
               <(tail -n +2 "$dir/half/log.csv" | rev | cut -d, -f2- | rev); then
        pass "$name is exact: 2 + 2 epochs == 4 epochs (byte-identical template and losses)"
    else
        fail "$name is exact" "exit $rc; templates or logs differ ($(tail -1 "$dir/half.log"))"
    fi
}
R=(--img-list "$T/scans.txt" "${AFF[@]}" --steps-per-epoch 3 --save-freq 1 "${SMALL[@]}")
resume_exact "--resume" "$T" "${R[@]}"
"$VXM" template "${R[@]}" --model-dir "$T/g" --epochs 1 --meanstream graph >"$T/g.log" 2>&1
expect "--resume keeps the MeanStream mode" 2 "template: $T/g/0001.h5 was trained with --meanstream graph" -- \
    template "${R[@]}" --model-dir "$T/g" --epochs 2 --resume "$T/g/0001.h5" --meanstream streaming
if "$VXM" template "${R[@]}" --model-dir "$T/g" --epochs 2 --resume "$T/g/0001.h5" 2>&1 | grep -q 'MeanStream graph'; then
    pass "--resume of a graph-mode checkpoint continues in graph mode"
else
    fail "--resume graph mode" "no 'MeanStream graph' line"
fi
"$VXM" train --pairs "$T/pairs.txt" "${AFF[@]}" --model-dir "$T/vd" --enc 4 4 --dec 4 4 4 --int-steps 3 --epochs 1 \
    --steps-per-epoch 1 --device cpu >"$T/vd.log" 2>&1
if "$VXM" template --img-list "$T/scans.txt" "${AFF[@]}" --model-dir "$T/lw" --load-weights "$T/vd/0001.h5" --epochs 1 \
    --steps-per-epoch 2 --device cpu >"$T/lw.log" 2>&1 && [ -f "$T/lw/0001.h5" ] && [ -f "$T/lw/template.nii.gz" ]; then
    pass "--load-weights of a plain VxmDense checkpoint"
else
    fail "--load-weights of a VxmDense file" "$(tail -1 "$T/lw.log")"
fi

# ---- 4. conditional templates (--pheno; ConditionalTemplateCreation, training doc §4.2) -----------------------
C="$T/cond"; mkdir -p "$C"
printf 'age,sex\n0.2,1\n0.8,0\n' >"$C/ph.csv"
printf '0.2,1\n0.8\n' >"$C/cols.csv"
printf 'age,sex\n0.2,1\n0.8,x\n' >"$C/nonnum.csv"
printf '0.2,1\n' >"$C/rows.csv"
CR=(--img-list "$T/scans.txt" "${AFF[@]}" "${SMALL[@]}")
expect "--pheno: wrong column count" 1 "$C/cols.csv: line 2: 1 values, expected 2" -- template "${CR[@]}" --model-dir "$C/x" --pheno "$C/cols.csv"
expect "--pheno: non-numeric field" 1 "$C/nonnum.csv: line 3: 'x' is not a finite number" -- template "${CR[@]}" --model-dir "$C/x" --pheno "$C/nonnum.csv"
expect "--pheno: rows != images" 1 "$C/rows.csv: 1 rows of attributes for 2 listed images" -- template "${CR[@]}" --model-dir "$C/x" --pheno "$C/rows.csv"
expect "--pheno: missing file" 1 "$C/none.csv: No such file" -- template "${CR[@]}" --model-dir "$C/x" --pheno "$C/none.csv"
# the Dense layer has P x prod(shape) x F weights: 1024 attributes x 256x260 x 4 > 2^28 is refused before any allocation
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (256, 260), }"   # zeros (npy2d's loop is slow at this size)
while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
{ printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(( (${#hdr} + 1) % 256 )))\\$(printf %03o $(( (${#hdr} + 1) / 256 )))"
  printf '%s\n' "$hdr"; head -c $((256 * 260 * 4)) /dev/zero; } >"$C/big.npy"
printf 'big\nbig\n' >"$C/big.txt"
awk 'BEGIN { for (r = 0; r < 2; r++) { s = "1"; for (i = 1; i < 1024; i++) s = s ",1"; print s } }' >"$C/wide.csv"
expect "--pheno: Dense layer too large" 1 "template: the conditional generator's Dense layer would have" -- \
    template --img-list "$C/big.txt" "${AFF[@]}" --img-prefix "$C/" --model-dir "$C/x" --pheno "$C/wide.csv" --enc 4 --dec 4 --device cpu
"$VXM" template "${CR[@]}" --model-dir "$C/m" --pheno "$C/ph.csv" --epochs 4 --steps-per-epoch 5 --save-freq 2 >"$C/m.log" 2>&1; rc=$?
nii_floats "$C/m/template.nii.gz" >"$C/t.txt" 2>/dev/null
if [ $rc -eq 0 ] && [ -f "$C/m/0004.h5" ] && [ -f "$C/m/atlas_input.nii.gz" ] && [ "$(wc -l <"$C/t.txt")" -eq 256 ] &&
    [ "$(grep -ciE 'nan|inf' "$C/t.txt")" -eq 0 ] && head -1 "$C/m/log.csv" | grep -q ',deform,'; then
    pass "conditional run: 0004.h5, atlas_input.nii.gz, finite template.nii.gz (256 voxels), log with the deform term"
else
    fail "conditional run" "exit $rc: $(tail -2 "$C/m.log" | tr '\n' '|')"
fi
G=(template-generate --model "$C/m/0004.h5" --device cpu)
"$VXM" "${G[@]}" --attributes "0.2,1" --out "$C/t0.nii.gz" >"$C/g.log" 2>&1 &&
    "$VXM" "${G[@]}" --attributes "0.8 0" --out "$C/t1.nii.gz" >>"$C/g.log" 2>&1; rc=$?
nii_floats "$C/t0.nii.gz" >"$C/t0.txt" 2>/dev/null; nii_floats "$C/t1.nii.gz" >"$C/t1.txt" 2>/dev/null
diff=$(paste "$C/t0.txt" "$C/t1.txt" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { print m + 0 }')
if [ $rc -eq 0 ] && [ "$(wc -l <"$C/t0.txt")" -eq 256 ] && [ "$(cat "$C/t0.txt" "$C/t1.txt" | grep -ciE 'nan|inf')" -eq 0 ] &&
    awk -v d="$diff" 'BEGIN { exit !(d > 1e-5) }'; then
    pass "template-generate: two attribute vectors give finite, different templates (max |difference| $diff)"
else
    fail "template-generate" "exit $rc, max difference $diff: $(tail -1 "$C/g.log")"
fi
expect "template-generate: attribute count" 1 "$C/m/0004.h5: the model takes 2 attributes, --attributes gives 3" -- "${G[@]}" --attributes "1,2,3" --out "$C/x.nii.gz"
expect "template-generate: not numbers" 2 "--attributes: 'a,b' is not a list of numbers" -- "${G[@]}" --attributes "a,b" --out "$C/x.nii.gz"
expect "template-generate: unconditional model" 1 "$T/m/0003.h5: is not a conditional template" -- template-generate --model "$T/m/0003.h5" --attributes 1 --out "$C/x.nii.gz"
expect "template-generate: no atlas input" 1 "$C/none.nii.gz" -- "${G[@]}" --attributes "1,2" --atlas-input "$C/none.nii.gz" --out "$C/x.nii.gz"
expect "template-generate: usage" 2 "template-generate: --model, --attributes and --out are required" -- template-generate --model "$C/m/0004.h5"
[ -e "$C/x.nii.gz" ] && fail "template-generate errors" "left an output file" || pass "template-generate errors leave no output file"
# round trips: --resume of a conditional checkpoint is exact; --load-weights of one continues from its generator
CR2=("${CR[@]}" --pheno "$C/ph.csv" --steps-per-epoch 3 --save-freq 1)
resume_exact "conditional --resume" "$C" "${CR2[@]}"
"$VXM" template "${CR2[@]}" --model-dir "$C/lw" --epochs 0 --load-weights "$C/m/0004.h5" >"$C/lw.log" 2>&1; rc=$?
"$VXM" template-generate --model "$C/lw/0000.h5" --device cpu --attributes "0.2,1" --out "$C/lw0.nii.gz" >>"$C/lw.log" 2>&1
if [ $rc -eq 0 ] && cmp -s <(zcat "$C/t0.nii.gz" | tail -c +353) <(zcat "$C/lw0.nii.gz" | tail -c +353); then
    pass "--load-weights of a conditional checkpoint: the reloaded model generates the identical template"
else
    fail "conditional --load-weights round trip" "exit $rc: $(tail -1 "$C/lw.log")"
fi
expect "conditional --load-weights with other attributes" 1 "$C/m/0004.h5: was made for 2 attributes" -- \
    template "${CR[@]}" --model-dir "$C/x" --pheno "$C/wide.csv" --load-weights "$C/m/0004.h5"
