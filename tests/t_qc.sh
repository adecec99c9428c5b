#!/usr/bin/env bash
# QC pictures from the command line: `vxm register ... --qc OUT.png` on the crop pair and `vxm qc` (3-D with and
# without a warp, 2-D) write PNGs with the expected signature and IHDR size (layout in src/eval/eval.h; the
# full decode and content checks are in tests/test_eval.c); bad input gives one line "vxm: <file>: <problem>",
# a non-zero exit and no PNG; the AddressSanitizer build writes one without leaks.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
T=tests/out/qc
rm -rf "$T"; mkdir -p "$T"

if [ ! -f "$P/paircrop_fixed.nii.gz" ] || [ ! -f "$MODEL" ]; then
    echo "SKIP qc: ../shared not found (set VXM_SHARED)"; exit 0
fi

# png_size FILE: "WIDTH HEIGHT" when FILE starts with the PNG signature and an IHDR chunk, else nothing
png_size() {
    [ -f "$1" ] || return
    [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 89504e470d0a1a0a ] || return
    [ "$(od -An -c -j12 -N4 "$1" | tr -d ' \n')" = IHDR ] || return
    local b; b=($(od -An -tu1 -j16 -N8 "$1"))
    echo "$(( (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3] )) $(( (b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7] ))"
}
# check_png NAME FILE "W H"
check_png() {
    local got; got=$(png_size "$2")
    if [ "$got" = "$3" ]; then
        local desc=""; command -v file >/dev/null 2>&1 && desc=" ($(file -b "$2"))"
        echo "PASS $1: PNG $got$desc"
    else
        echo "FAIL $1: expected a PNG of $3, got '${got:-not a PNG}'"
    fi
}

CROP=(--fixed "$P/paircrop_fixed.nii.gz" --moving "$P/paircrop_moving.nii.gz")
# 64^3 crop: 128x128 cells (scale 2); with a warp 8 columns -> 1060 x 424, without 6 -> 796 x 411;
# 2-D pair 192x224: one row, 8 columns at scale 1 -> 1828 x 224
if "$VXM" register --model "$MODEL" --device cpu "${CROP[@]}" --moved "$T/moved.nii.gz" --qc "$T/register_qc.png" \
    >"$T/register.log" 2>&1; then
    check_png "vxm register --qc (crop pair)" "$T/register_qc.png" "1060 424"
else
    echo "FAIL vxm register --qc (crop pair): $(tail -2 "$T/register.log" | tr '\n' ' ')"
fi
"$VXM" qc "${CROP[@]}" --moved "$P/paircrop_vxm_dense_moved.nii.gz" --warp "$P/paircrop_vxm_dense_warp.nii.gz" \
    --out "$T/qc_warp.png" >/dev/null 2>"$T/err" || echo "FAIL vxm qc with warp: $(cat "$T/err")"
check_png "vxm qc crop pair with warp" "$T/qc_warp.png" "1060 424"
"$VXM" qc "${CROP[@]}" --moved "$P/paircrop_vxm_dense_moved.nii.gz" --out "$T/qc_nowarp.png" >/dev/null 2>"$T/err" \
    || echo "FAIL vxm qc without warp: $(cat "$T/err")"
check_png "vxm qc crop pair without warp" "$T/qc_nowarp.png" "796 411"
"$VXM" qc --fixed "$P/pair2d_fixed.nii.gz" --moving "$P/pair2d_moving.nii.gz" --moved "$P/pair2d_true_warp_moved.nii.gz" \
    --warp "$P/pair2d_true_warp.nii.gz" --out "$T/qc_2d.png" >/dev/null 2>"$T/err" || echo "FAIL vxm qc 2-D: $(cat "$T/err")"
check_png "vxm qc 2-D pair with its (H, W, 2) warp" "$T/qc_2d.png" "1828 224"

# expect NAME PATTERN -- vxm args...: one stderr line matching "^vxm: PATTERN", non-zero exit, no PNG
expect() {
    local name=$1 pattern=$2; shift 3
    rm -f "$T"/bad.png "$T"/moved_bad.nii.gz
    "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$? lines
    lines=$(wc -l <"$T/stderr")
    if [ $rc -eq 0 ]; then echo "FAIL $name: exit status 0"; return; fi
    if [ "$lines" -ne 1 ]; then echo "FAIL $name: $lines lines on stderr: $(head -3 "$T/stderr" | tr '\n' '|')"; return; fi
    if ! grep -Eq "^vxm: $pattern" "$T/stderr"; then echo "FAIL $name: message '$(cat "$T/stderr")' does not match '$pattern'"; return; fi
    if ls "$T"/bad.png "$T"/moved_bad.nii.gz "$T"/.*tmp* >/dev/null 2>&1; then echo "FAIL $name: output left behind"; return; fi
    echo "PASS $name ($(cat "$T/stderr"))"
}
M=$P/paircrop_vxm_dense_moved.nii.gz
expect "vxm qc: missing fixed image" "$T/nope.nii.gz: .*No such file" -- qc --fixed "$T/nope.nii.gz" --moving "$P/paircrop_moving.nii.gz" --moved "$M" --out "$T/bad.png"
expect "vxm qc: missing warp" "$T/nowarp.nii.gz: .*No such file" -- qc "${CROP[@]}" --moved "$M" --warp "$T/nowarp.nii.gz" --out "$T/bad.png"
expect "vxm qc: moving shape differs" "$P/fixed.nii.gz: .*does not match" -- qc --fixed "$P/paircrop_fixed.nii.gz" --moving "$P/fixed.nii.gz" --moved "$M" --out "$T/bad.png"
expect "vxm qc: warp is not a warp" "$P/paircrop_moving.nii.gz: .*channels" -- qc "${CROP[@]}" --moved "$M" --warp "$P/paircrop_moving.nii.gz" --out "$T/bad.png"
expect "vxm qc: output directory missing" "$T/nodir/bad.png: " -- qc "${CROP[@]}" --moved "$M" --out "$T/nodir/bad.png"
expect "vxm register --qc: QC directory missing, no outputs left" "$T/nodir/qc.png: " -- register --model "$MODEL" --device cpu "${CROP[@]}" --moved "$T/moved_bad.nii.gz" --qc "$T/nodir/qc.png"

if [ -x build/asan/vxm ]; then
    if ASAN_OPTIONS=detect_leaks=1 build/asan/vxm qc "${CROP[@]}" --moved "$M" --warp "$P/paircrop_vxm_dense_warp.nii.gz" \
        --out "$T/asan.png" >"$T/asan.log" 2>&1 && [ "$(png_size "$T/asan.png")" = "1060 424" ]; then
        echo "PASS vxm qc under AddressSanitizer (leaks + accesses)"
    else
        echo "FAIL vxm qc under AddressSanitizer: $(grep -m3 -E 'ERROR|SUMMARY|vxm:' "$T/asan.log" | tr '\n' ' ')"
    fi
else
    echo "SKIP vxm qc under AddressSanitizer: build/asan/vxm missing (make tests builds it)"
fi
