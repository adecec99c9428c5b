#!/usr/bin/env bash
# `vxm test` (VoxelMorph's test.py) with the published model on the CPU backend:
#  - pairs form on pair1 + pair2 with the 30 labels of scans/labels.npz: mean Dice within 0.002 of the
#    goldens' 0.931 / 0.910 (shared pairs/README.md), the summary lines, the per-label table, --csv content;
#  - det J figures: pair1 registered again with `vxm register --warp`, its det J computed by the independent
#    implementation in tests/test_eval.c (`test_eval --jacobian`), compared with what `vxm test` printed;
#  - the README's --atlas/--scans form on npz files holding 'vol' and 'seg': the atlas is scans/test_scan.npz
#    (= fixed + fixed_seg), the scan is built here from pair1's NIfTI files with shell tools (the library
#    writes single-array npz only): the raw float32 NIfTI data as a Fortran-order .npy, zipped;
#  - bad input: one line "vxm: <file>: <problem>" on stderr, non-zero exit, no CSV (or temp file) left;
#  - the AddressSanitizer build on the crop pair (leaks, bad accesses), when built.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
S=$SHARED/data/scans
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
T=tests/out/cli_test
rm -rf "$T"; mkdir -p "$T"

if [ ! -f "$P/fixed.nii.gz" ] || [ ! -f "$MODEL" ] || [ ! -f "$S/labels.npz" ]; then
    echo "SKIP vxm test: ../shared not found (set VXM_SHARED)"; exit 0
fi

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
# near A B TOL: |A - B| <= TOL
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= t) }'; }
# field after "Dice:" on the "Pair N" line of a log
pair_dice() { awk -v n="$2" '$1 == "Pair" && $2 == n { for (i = 1; i < NF; i++) if ($i == "Dice:") print $(i + 1) }' "$1"; }
# "COUNT PERCENT MIN" of the det J figures on the "Pair N" line
pair_jac() { grep -E "^Pair $2 " "$1" | sed -n 's/.*det J <= 0: \([0-9]*\) voxels (\([0-9.]*\)%), min det J \([-0-9.]*\).*/\1 \2 \3/p'; }

IMG=(--img-prefix "$P/" --img-suffix .nii.gz --seg-prefix "$P/" --seg-suffix _seg.nii.gz)

# ---- 1. pairs form: pair1 and pair2 -------------------------------------------------------------------------
printf '# moving fixed\npair1_moving fixed\n\n   pair2_moving\t fixed   \n' >"$T/pairs.txt"
"$VXM" test --model "$MODEL" --device cpu --pairs "$T/pairs.txt" "${IMG[@]}" --labels "$S/labels.npz" \
    --csv "$T/pairs.csv" >"$T/pairs.log" 2>"$T/pairs.err"
rc=$?
cat "$T/pairs.log"
if [ $rc -ne 0 ] || [ -s "$T/pairs.err" ]; then
    fail "vxm test pairs form runs" "exit $rc: $(head -3 "$T/pairs.err" | tr '\n' '|')"
else
    pass "vxm test pairs form runs"
fi
d1=$(pair_dice "$T/pairs.log" 1); d2=$(pair_dice "$T/pairs.log" 2)
if near "$d1" 0.931 0.002; then pass "vxm test pair1 mean Dice $d1 within 0.002 of 0.931"
else fail "vxm test pair1 mean Dice" "got '$d1', expected 0.931 +/- 0.002"; fi
if near "$d2" 0.910 0.002; then pass "vxm test pair2 mean Dice $d2 within 0.002 of 0.910"
else fail "vxm test pair2 mean Dice" "got '$d2', expected 0.910 +/- 0.002"; fi
avg=$(awk '/^Avg Dice:/ { print $3 }' "$T/pairs.log")
rt=$(awk '/^Avg Reg Time:/ { print $4 }' "$T/pairs.log")
nlab=$(awk '/^Dice per label/ { on = 1; next } on && $1 ~ /^[0-9]+$/ && $4 == 2 { n++ } END { print n + 0 }' "$T/pairs.log")
if [ -n "$d1" ] && [ -n "$d2" ] && near "$avg" "$(awk -v a="$d1" -v b="$d2" 'BEGIN { print (a + b) / 2 }')" 0.00011 \
    && grep -q "skipping first prediction" "$T/pairs.log" && near "$rt" 0 1000 && [ "$nlab" = 30 ]; then
    pass "vxm test summary: Avg Dice $avg = mean of the pairs, Avg Reg Time $rt, 30 labels in the per-label table"
else
    fail "vxm test summary" "Avg Dice '$avg' (pairs $d1 $d2), Avg Reg Time '$rt', per-label rows $nlab"
fi
# CSV: header + 2 pairs x 30 labels; every value parses; the per-pair mean of the rows is the printed Dice
if [ -f "$T/pairs.csv" ] && awk -F, -v d1="$d1" -v d2="$d2" '
    NR == 1 { ok = ($0 == "moving,fixed,label,dice"); next }
    NF != 4 || $3 !~ /^[0-9]+$/ || $4 !~ /^[0-9]\.[0-9]+$/ || $4 + 0 > 1 { ok = 0 }
    { s[$1] += $4; n[$1]++; if ($2 != "fixed") ok = 0 }
    END {
        if (NR != 61 || n["pair1_moving"] != 30 || n["pair2_moving"] != 30) ok = 0
        m1 = s["pair1_moving"] / 30 - d1; m2 = s["pair2_moving"] / 30 - d2
        if (m1 < -6e-5 || m1 > 6e-5 || m2 < -6e-5 || m2 > 6e-5) ok = 0
        exit !ok }' "$T/pairs.csv"; then
    pass "vxm test --csv: header + 60 rows (2 pairs x 30 labels), values parse, per-pair means match"
else
    fail "vxm test --csv" "$(wc -l <"$T/pairs.csv" 2>/dev/null) lines; head: $(head -2 "$T/pairs.csv" 2>/dev/null | tr '\n' '|')"
fi
if ls -a "$T" | grep -q tmp; then fail "vxm test leaves no temp files" "$(ls -a "$T" | grep tmp)"; else pass "vxm test leaves no temp files"; fi

# ---- 2. det J of pair1: vxm test vs the independent implementation of test_eval.c -----------------------
if [ ! -x build/tests/test_eval ]; then
    echo "SKIP vxm test det J cross-check: build/tests/test_eval missing (make tests)"
else
    "$VXM" register --model "$MODEL" --device cpu --moving "$P/pair1_moving.nii.gz" --fixed "$P/fixed.nii.gz" \
        --moved "$T/pair1_moved.nii.gz" --warp "$T/pair1_warp.nii.gz" >/dev/null 2>"$T/reg.err"
    ref=$(build/tests/test_eval --jacobian "$T/pair1_warp.nii.gz")   # "nonpositive N voxels M min X"
    read -r got_n got_pct got_min <<<"$(pair_jac "$T/pairs.log" 1)"
    ref_n=$(echo "$ref" | awk '{ print $2 }'); ref_m=$(echo "$ref" | awk '{ print $4 }'); ref_min=$(echo "$ref" | awk '{ print $6 }')
    ref_pct=$(awk -v n="$ref_n" -v m="$ref_m" 'BEGIN { if (m > 0) printf "%.4f", 100 * n / m }')
    if [ -n "$ref_n" ] && [ "$got_n" = "$ref_n" ] && [ "$got_pct" = "$ref_pct" ] && near "$got_min" "$ref_min" 1e-5; then
        pass "vxm test pair1 det J <= 0: $got_n voxels ($got_pct%), min det J $got_min = independent computation"
    else
        fail "vxm test pair1 det J figures" "vxm test '$got_n $got_pct $got_min', independent '$ref' ($(cat "$T/reg.err"))"
    fi
fi

# ---- 3. --atlas/--scans form -------------------------------------------------------------------------------
# npy_from_nifti OUT.npy IN.nii.gz: float32 NIfTI-1 data (vox_offset 352, checked) as a Fortran-order .npy
npy_from_nifti() {
    local out=$1 in=$2 hdr
    gunzip -c "$in" >"$T/raw.nii" || return 1
    [ "$(od -An -tf4 -j108 -N4 "$T/raw.nii" | tr -d ' ')" = 352 ] || return 1          # vox_offset
    [ "$(od -An -td2 -j70 -N2 "$T/raw.nii" | tr -d ' ')" = 16 ] || return 1            # DT_FLOAT32
    local dims; dims=$(od -An -td2 -j42 -N6 "$T/raw.nii" | awk '{ printf "%d, %d, %d", $1, $2, $3 }')
    hdr="{'descr': '<f4', 'fortran_order': True, 'shape': ($dims), }"
    while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
    { printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(( (${#hdr} + 1) % 256 )))\\$(printf %03o $(( (${#hdr} + 1) / 256 )))"
      printf '%s\n' "$hdr"; tail -c +353 "$T/raw.nii"; } >"$out"
    rm -f "$T/raw.nii"
}
if ! command -v zip >/dev/null 2>&1; then
    echo "SKIP vxm test --atlas/--scans: no zip tool to build an npz with 'vol' and 'seg'"
elif ! npy_from_nifti "$T/vol.npy" "$P/pair1_moving.nii.gz" || ! npy_from_nifti "$T/seg.npy" "$P/pair1_moving_seg.nii.gz" \
    || ! (cd "$T" && zip -q pair1.npz vol.npy seg.npy); then
    fail "vxm test --atlas/--scans" "could not build $T/pair1.npz"
else
    "$VXM" test --model "$MODEL" --device cpu --atlas "$S/test_scan.npz" --scans "$T/pair1.npz" \
        --labels "$S/labels.npz" --csv "$T/atlas.csv" >"$T/atlas.log" 2>"$T/atlas.err"
    rc=$?
    da=$(pair_dice "$T/atlas.log" 1)
    lines=$(wc -l <"$T/atlas.csv" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$da" = "$d1" ] && [ "$lines" = 31 ] && grep -q "^Pair 1 .*$T/pair1.npz -> $S/test_scan.npz" "$T/atlas.log"; then
        pass "vxm test --atlas test_scan.npz --scans pair1.npz: Dice $da = pairs form, csv 31 lines"
    else
        fail "vxm test --atlas/--scans" "exit $rc, Dice '$da' (pairs form '$d1'), csv $lines lines: $(head -2 "$T/atlas.err" | tr '\n' '|')"
    fi
fi

# ---- 4. bad input ------------------------------------------------------------------------------------------
# expect NAME PATTERN -- vxm args...: one stderr line matching "^vxm: PATTERN", non-zero exit, no CSV left
expect() {
    local name=$1 pattern=$2; shift 3
    rm -f "$T/bad.csv"
    "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$? lines
    lines=$(wc -l <"$T/stderr")
    if [ $rc -eq 0 ]; then fail "$name" "exit status 0"; return; fi
    if [ "$lines" -ne 1 ]; then fail "$name" "$lines lines on stderr: $(head -3 "$T/stderr" | tr '\n' '|')"; return; fi
    if ! grep -Eq "^vxm: $pattern" "$T/stderr"; then fail "$name" "message '$(cat "$T/stderr")' does not match '$pattern'"; return; fi
    if ls "$T"/bad.csv "$T"/.bad.csv.tmp* >/dev/null 2>&1; then fail "$name" "CSV left behind"; return; fi
    pass "$name ($(cat "$T/stderr"))"
}
t() { echo test --model "$MODEL" --device cpu --csv "$T/bad.csv" "$@"; }
printf 'pair1_moving nothere\n' >"$T/missing_img.txt"
printf '# nothing here\n\n' >"$T/empty.txt"
printf 'pair1_moving fixed\npair2_moving fixed extra\n' >"$T/three.txt"
printf 'paircrop_moving fixed\n' >"$T/mismatch.txt"
printf 'paircrop_moving paircrop_fixed\n' >"$T/crop.txt"
echo "not a label list" >"$T/bad_labels.npy"
mkdir -p "$T/img" "$T/seg"   # crop images whose label maps are the full-size ones
ln -sf "$(cd "$P" && pwd)/paircrop_moving.nii.gz" "$T/img/a.nii.gz"; ln -sf "$(cd "$P" && pwd)/paircrop_fixed.nii.gz" "$T/img/b.nii.gz"
ln -sf "$(cd "$P" && pwd)/pair1_moving_seg.nii.gz" "$T/seg/a.nii.gz"; ln -sf "$(cd "$P" && pwd)/fixed_seg.nii.gz" "$T/seg/b.nii.gz"
printf 'a b\n' >"$T/ab.txt"

expect "vxm test: missing pair list" "$T/nope.txt: .*No such file" -- $(t --pairs "$T/nope.txt" "${IMG[@]}")
expect "vxm test: missing image named in the list" "$P/nothere.nii.gz: .*No such file" -- $(t --pairs "$T/missing_img.txt" "${IMG[@]}")
expect "vxm test: missing label map" "$P/pair1_moving_nope.nii.gz: .*No such file" -- $(t --pairs "$T/pairs.txt" --img-prefix "$P/" --img-suffix .nii.gz --seg-prefix "$P/" --seg-suffix _nope.nii.gz)
expect "vxm test: unreadable labels" "$T/bad_labels.npy: " -- $(t --pairs "$T/pairs.txt" "${IMG[@]}" --labels "$T/bad_labels.npy")
expect "vxm test: missing labels file" "$T/nolabels.npz: .*No such file" -- $(t --pairs "$T/pairs.txt" "${IMG[@]}" --labels "$T/nolabels.npz")
expect "vxm test: empty pair list" "$T/empty.txt: .*no pairs" -- $(t --pairs "$T/empty.txt" "${IMG[@]}")
expect "vxm test: three names on a line" "$T/three.txt: line 2: expected two names" -- $(t --pairs "$T/three.txt" "${IMG[@]}")
expect "vxm test: moving/fixed shape mismatch" "$P/fixed.nii.gz: .*does not match" -- $(t --pairs "$T/mismatch.txt" "${IMG[@]}")
expect "vxm test: label map/image shape mismatch" "$T/seg/a.nii.gz: .*does not match" -- $(t --pairs "$T/ab.txt" --img-prefix "$T/img/" --img-suffix .nii.gz --seg-prefix "$T/seg/" --seg-suffix .nii.gz)
expect "vxm test: missing model" "$T/nomodel.h5: .*No such file" -- test --model "$T/nomodel.h5" --pairs "$T/pairs.txt" "${IMG[@]}" --csv "$T/bad.csv"
expect "vxm test: CSV directory missing" "$T/nodir/out.csv: " -- test --model "$MODEL" --device cpu --pairs "$T/crop.txt" "${IMG[@]}" --csv "$T/nodir/out.csv"
expect "vxm test: images and label maps not told apart" "test: .*differing prefix" -- $(t --pairs "$T/pairs.txt" --img-prefix "$P/" --seg-prefix "$P/" --img-suffix .nii.gz --seg-suffix .nii.gz)
expect "vxm test: missing scan" "$T/noscan.npz: .*No such file" -- $(t --atlas "$S/test_scan.npz" --scans "$T/noscan.npz")

# ---- 5. AddressSanitizer build on the crop pair (labels present in the maps, CSV) ------------------------
if [ -x build/asan/vxm ]; then
    if ASAN_OPTIONS=detect_leaks=1 build/asan/vxm test --model "$MODEL" --device cpu --pairs "$T/crop.txt" "${IMG[@]}" \
        --csv "$T/crop.csv" >"$T/asan.log" 2>&1 && grep -q "^Pair 1 " "$T/asan.log" && [ -s "$T/crop.csv" ]; then
        pass "vxm test under AddressSanitizer (crop pair, leaks + accesses): Dice $(pair_dice "$T/asan.log" 1)"
    else
        fail "vxm test under AddressSanitizer" "$(grep -m3 -E 'ERROR|SUMMARY|vxm:' "$T/asan.log" | tr '\n' ' ')"
    fi
else
    echo "SKIP vxm test under AddressSanitizer: build/asan/vxm missing (make tests builds it)"
fi
