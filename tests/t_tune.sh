#!/usr/bin/env bash
# vxm tune (issue 10, src/backend_opencl/cl_tune.c, cl_tile.h) on the first PoCL device (the fastest CPU OpenCL
# device here; a GPU would take the same path): a quick tuning run prints one row per kernel and layer class, writes
# the tuned file (VXM_TUNE_FILE), which --show then reports as the source of the tiles; the environment overrides
# it; bad requests fail with one line and write nothing.
set -u
cd "$(dirname "$0")/.." || exit 1
T=tests/out/tune VXM=./vxm
rm -rf "$T" && mkdir -p "$T"
export RUSTICL_ENABLE="${RUSTICL_ENABLE:-llvmpipe}" VXM_TUNE_FILE="$T/tune.json"
unset VXM_OPENCL_CONV_TILE VXM_OPENCL_FILTER_TILE
dev=$("$VXM" devices 2>/dev/null | awk '$1 ~ /^opencl:/ && /Portable Computing Language/ { print $1; exit }')
if [ -z "$dev" ]; then
    echo "SKIP tune: no PoCL device"
    exit 0
fi
pass() { echo "PASS tune $1"; }
fail() { echo "FAIL tune $1"; }

if "$VXM" tune --device "$dev" --quick --reps 1 --max-candidates 2 >"$T/out" 2>"$T/err"; then
    rows=$(grep -cE '^(conv|filter) ' "$T/out")
    if [ "$rows" = 6 ] && grep -q "^tuned tiles: $T/tune.json" "$T/out"; then pass "$dev: 6 rows, file written"
    else fail "$dev: $rows rows: $(tr '\n' '|' <"$T/out")"; fi
else
    fail "$dev: exit status $?: $(cat "$T/err")"
fi
if python3 -c "import json,sys; t=json.load(open('$T/tune.json'))['tiles']; sys.exit(0 if set(t)=={'conv','filter'} and all(set(v)=={'cout16','cout32','wide'} for v in t.values()) else 1)" 2>/dev/null; then
    pass "tuned file holds every kernel and class"
else fail "tuned file: $(cat "$T/tune.json" 2>/dev/null | tr '\n' ' ')"; fi
if "$VXM" tune --device "$dev" --show | grep -q "(tuned)"; then pass "--show reads the tuned file"
else fail "--show: $("$VXM" tune --device "$dev" --show 2>&1)"; fi
if VXM_OPENCL_CONV_TILE=32x16x8x4x4 "$VXM" tune --device "$dev" --show | grep -q "conv 32x16x8x4x4 32x16x8x4x4 32x16x8x4x4.*(environment)"; then
    pass "environment overrides the tuned file"
else fail "environment: $(VXM_OPENCL_CONV_TILE=32x16x8x4x4 "$VXM" tune --device "$dev" --show 2>&1)"; fi

# bad requests
EXPECT_PREFIX=tune EXPECT_OUTPUTS="$T/nodir/tune.json"
. tests/expect_error.sh
expect "no device" "tune: --device opencl" -- tune
expect "cpu device" "tune: --device opencl" -- tune --device cpu
VXM_TUNE_FILE="$T/nodir/tune.json" expect "unwritable file" "$T/nodir/tune.json: " -- tune --device "$dev" --quick \
    --reps 1 --max-candidates 1
