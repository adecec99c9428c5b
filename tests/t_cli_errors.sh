#!/usr/bin/env bash
# Bad input to `vxm register`: each case must print exactly one line "vxm: <file or device>: <problem>" on
# stderr, exit non-zero, and leave no output file behind.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
T=tests/out/cli_errors
rm -rf "$T"; mkdir -p "$T"

if [ ! -f "$P/paircrop_fixed.nii.gz" ]; then
    echo "SKIP cli errors: ../shared not found (set VXM_SHARED)"; exit 0
fi

# expect NAME PATTERN -- vxm args...: the single stderr line must match PATTERN (grep -E)
expect() {
    local name=$1 pattern=$2; shift 3
    rm -f "$T/moved.nii.gz" "$T/warp.nii.gz"
    if [ -n "${LIMIT_KB:-}" ]; then
        (ulimit -v "$LIMIT_KB"; exec "$VXM" "$@") >"$T/stdout" 2>"$T/stderr"
    else
        "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"
    fi
    local rc=$? lines
    lines=$(wc -l <"$T/stderr")
    if [ $rc -eq 0 ]; then echo "FAIL $name: exit status 0"; return; fi
    if [ "$lines" -ne 1 ]; then echo "FAIL $name: $lines lines on stderr: $(head -3 "$T/stderr" | tr '\n' '|')"; return; fi
    if ! grep -Eq "^vxm: $pattern" "$T/stderr"; then echo "FAIL $name: message '$(cat "$T/stderr")' does not match '$pattern'"; return; fi
    if ls "$T"/moved* "$T"/warp* "$T"/.*tmp* >/dev/null 2>&1; then echo "FAIL $name: output file left behind"; return; fi
    echo "PASS $name ($(cat "$T/stderr"))"
}

reg() { echo register --model "$MODEL" --device "${DEV:-cpu}" --moved "$T/moved.nii.gz" --warp "$T/warp.nii.gz" "$@"; }

# Fixtures made from the shared crop pair with shell tools only: an uncompressed copy whose header or data
# bytes are patched (NIfTI-1: dim[] at byte 40, datatype at 70, data at vox_offset 352).
gunzip -c "$P/paircrop_fixed.nii.gz" >"$T/fixed.nii"
patch_bytes() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
cp "$T/fixed.nii" "$T/complex.nii"; patch_bytes "$T/complex.nii" 70 '\x20\x00'        # DT_COMPLEX64
cp "$T/fixed.nii" "$T/nan.nii";     patch_bytes "$T/nan.nii" 1000 '\x00\x00\xc0\x7f'  # a NaN voxel
head -c 200 "$T/fixed.nii" >"$T/short_header.nii"
head -c 100000 "$P/paircrop_fixed.nii.gz" >"$T/truncated.nii.gz"
head -c 300000 "$MODEL" >"$T/truncated.h5"
echo "not a model" >"$T/text.h5"

expect "missing moving file" "$T/nope.nii.gz: .*No such file" -- $(reg --moving "$T/nope.nii.gz" --fixed "$P/paircrop_fixed.nii.gz")
expect "missing model" "$T/nomodel.h5: .*No such file" -- register --model "$T/nomodel.h5" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "truncated header" "$T/short_header.nii: " -- $(reg --moving "$P/paircrop_moving.nii.gz" --fixed "$T/short_header.nii")
expect "truncated gzip data" "$T/truncated.nii.gz: " -- $(reg --moving "$T/truncated.nii.gz" --fixed "$P/paircrop_fixed.nii.gz")
expect "unsupported dtype" "$T/complex.nii: .*(type|dtype)" -- $(reg --moving "$P/paircrop_moving.nii.gz" --fixed "$T/complex.nii")
expect "2-D images with a 3-D model" "$MODEL: .*3-D but the images are 2-D" -- $(reg --moving "$P/pair2d_moving.nii.gz" --fixed "$P/pair2d_fixed.nii.gz")
expect "moving/fixed shape mismatch" "$P/fixed.nii.gz: .*does not match" -- $(reg --moving "$P/paircrop_moving.nii.gz" --fixed "$P/fixed.nii.gz")
expect "NaN in input" "$T/nan.nii: .*NaN" -- $(reg --moving "$T/nan.nii" --fixed "$P/paircrop_fixed.nii.gz")
expect "model is not HDF5" "$T/text.h5: .*not an HDF5" -- register --model "$T/text.h5" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "truncated model" "$T/truncated.h5: " -- register --model "$T/truncated.h5" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "image given as model" "$P/paircrop_fixed.nii.gz: .*not an HDF5" -- register --model "$P/paircrop_fixed.nii.gz" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "no such OpenCL device" "opencl:9:9: " -- register --model "$MODEL" --device opencl:9:9 --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "unknown device name" "tpu: .*unknown device" -- register --model "$MODEL" --device tpu --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "output directory missing" "$T/nodir/moved.nii.gz: " -- register --model "$MODEL" --device cpu --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/nodir/moved.nii.gz"
# warp cannot be written: the moved image written before it must be removed again
expect "warp not writable" "$T/nodir/warp.nii.gz: " -- register --model "$MODEL" --device cpu --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz" --warp "$T/nodir/warp.nii.gz"
# host out of memory: full-size registration under a 300 MB address-space limit (it needs about 450 MB)
LIMIT_KB=300000 expect "host out of memory" ".*(out of memory|cannot allocate)" -- $(reg --moving "$P/pair1_moving.nii.gz" --fixed "$P/fixed.nii.gz")

# vxm warp: bad input
expect "warp: missing warp file" "$T/nowarp.nii.gz: .*No such file" -- warp --moving "$P/paircrop_moving.nii.gz" --warp "$T/nowarp.nii.gz" --moved "$T/moved.nii.gz"
expect "warp: an image given as warp" "$P/paircrop_fixed.nii.gz: .*channels" -- warp --moving "$P/paircrop_moving.nii.gz" --warp "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
expect "warp: unknown interpolation" "warp: --interp must be linear or nearest" -- warp --moving "$P/paircrop_moving.nii.gz" --warp "$P/paircrop_true_warp.nii.gz" --moved "$T/moved.nii.gz" --interp cubic
expect "warp: truncated image" "$T/truncated.nii.gz: " -- warp --moving "$T/truncated.nii.gz" --warp "$P/paircrop_true_warp.nii.gz" --moved "$T/moved.nii.gz"
expect "warp: output directory missing" "$T/nodir/moved.nii.gz: " -- warp --moving "$P/paircrop_moving.nii.gz" --warp "$P/paircrop_true_warp.nii.gz" --moved "$T/nodir/moved.nii.gz"
