#!/usr/bin/env bash
# OpenCL program binary cache (issue 10, src/backend_opencl/cl_cache.h): the first run stores one file, the next
# loads it (same inode: not rewritten) with identical output; a damaged file gives one warning line, the right
# output and a rewritten file; another key (VXM_CL_CACHE_SALT stands in for a kernel source or driver change)
# gives another file and leaves the old one alone; VXM_CL_CACHE=0 and an unwritable directory write nothing and
# say nothing.  Runs `vxm synth --shapes` (no data needed) on one OpenCL device: rusticl when present (a store
# costs 3 s there), else the first one, with PoCL's own kernel cache off (with it on, ours is not used).
set -u
cd "$(dirname "$0")/.." || exit 1
T=tests/out/cl_cache VXM=./vxm
rm -rf "$T" && mkdir -p "$T"
export RUSTICL_ENABLE="${RUSTICL_ENABLE:-llvmpipe}" POCL_KERNEL_CACHE=0 VXM_CL_CACHE_DIR="$T/cache"
unset VXM_CL_CACHE VXM_CL_CACHE_SALT VXM_CL_CACHE_DEBUG
pass() { echo "PASS cl_cache $1"; }
fail() { echo "FAIL cl_cache $1"; }
devs=$("$VXM" devices 2>/dev/null | awk '$1 ~ /^opencl:/')
dev=$(echo "$devs" | awk '/rusticl/ { print $1; exit }')
[ -n "$dev" ] || dev=$(echo "$devs" | awk 'NF { print $1; exit }')
if [ -z "$dev" ]; then
    echo "SKIP cl_cache: no OpenCL device"
    exit 0
fi
# run NAME [env...]: synth on $dev into $T/NAME.npy, stderr in $T/NAME.err; non-zero status on failure
run() {
    local name=$1
    shift
    env "$@" "$VXM" synth --shapes --inshape 16x16 --nb-labels 4 --seed 3 --out "$T/$name.npy" --device "$dev" \
        2>"$T/$name.err"
}
files() { ls "$T/cache" 2>/dev/null | grep -c '^program-.*\.bin$'; }
ident() { stat -c '%i %Y %s' "$1" 2>/dev/null; }

# (1) store, then load
run first VXM_CL_CACHE_DEBUG=1 || fail "first run on $dev: $(cat "$T/first.err")"
f=$(ls "$T"/cache/program-*.bin 2>/dev/null | head -1)
if [ "$(files)" = 1 ] && grep -q "cache stored" "$T/first.err"; then pass "$dev: first run stores one file"
else fail "$dev: first run: $(files) files, $(cat "$T/first.err")"; fi
id1=$(ident "$f")
run second VXM_CL_CACHE_DEBUG=1 || fail "second run on $dev: $(cat "$T/second.err")"
if grep -q "cache loaded" "$T/second.err" && [ "$(ident "$f")" = "$id1" ] && [ "$(files)" = 1 ]; then
    pass "$dev: second run loads the file, leaves it alone"
else fail "$dev: second run: $(cat "$T/second.err"), file $id1 -> $(ident "$f")"; fi
if cmp -s "$T/first.npy" "$T/second.npy"; then pass "$dev: cached program, same output"
else fail "$dev: outputs of the built and the cached program differ"; fi

# (2) damaged files: flipped bytes, a truncated file, garbage
damage() {
    case $1 in
    flip) printf '\377\377\377\377' | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") / 2)) conv=notrunc 2>/dev/null ;;
    truncate) truncate -s 100 "$f" ;;
    garbage) printf 'not a cache file' >"$f" ;;
    esac
}
for how in flip truncate garbage; do
    damage $how
    id0=$(ident "$f")
    run "$how" || fail "$how: run failed: $(cat "$T/$how.err")"
    if [ "$(wc -l <"$T/$how.err")" = 1 ] &&
        grep -q "^vxm: warning: $f: ignoring a corrupt OpenCL program cache (" "$T/$how.err"; then
        pass "$dev: $how file: one warning line"
    else fail "$dev: $how file: stderr '$(cat "$T/$how.err")'"; fi
    if cmp -s "$T/first.npy" "$T/$how.npy"; then pass "$dev: $how file: same output"
    else fail "$dev: $how file: output differs"; fi
    run "$how-again" VXM_CL_CACHE_DEBUG=1
    if [ "$(ident "$f")" != "$id0" ] && grep -q "cache loaded" "$T/$how-again.err"; then
        pass "$dev: $how file: rewritten, then loaded"
    else fail "$dev: $how file: not rewritten ($(cat "$T/$how-again.err"))"; fi
done

# (3) another key (source or driver change): another file, the old one neither used nor touched
id1=$(ident "$f")
run salted VXM_CL_CACHE_DEBUG=1 VXM_CL_CACHE_SALT=driver-2 || fail "salted run: $(cat "$T/salted.err")"
if [ "$(files)" = 2 ] && ! grep -q "$f" "$T/salted.err" && grep -q "cache stored" "$T/salted.err" &&
    [ "$(ident "$f")" = "$id1" ]; then pass "$dev: changed key: new file, old one unused"
else fail "$dev: changed key: $(files) files, $(cat "$T/salted.err")"; fi
cmp -s "$T/first.npy" "$T/salted.npy" || fail "$dev: changed key: output differs"

# (4) off, or not writable: nothing written, nothing said
rm -rf "$T/cache"
run off VXM_CL_CACHE=0
if [ ! -e "$T/cache" ] && [ ! -s "$T/off.err" ]; then pass "VXM_CL_CACHE=0 writes nothing"
else fail "VXM_CL_CACHE=0: $(ls "$T/cache" 2>&1) $(cat "$T/off.err")"; fi
: >"$T/plain"
if run ro VXM_CL_CACHE_DIR="$T/plain/cache" && [ ! -s "$T/ro.err" ] && cmp -s "$T/first.npy" "$T/ro.npy"; then
    pass "unwritable cache directory: silently skipped"
else fail "unwritable cache directory: $(cat "$T/ro.err")"; fi
