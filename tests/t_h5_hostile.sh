#!/usr/bin/env bash
# Model files that make Debian's libhdf5 1.10 itself crash, loop forever or print at exit (issue 11; found by the
# fuzzing, kept in tests/fuzz/upstream/fuzz_h5model): vxm reads every model first in a child process
# (src/model/h5_isolate.c), so each gives one line "vxm: <file>: ...", a non-zero exit and no output -- no crash,
# no hang (a 3 s deadline here), nothing else on stderr.  A good model reads the same with the check on or off.
set -u
cd "$(dirname "$0")/.." || exit 1
T=tests/out/h5_hostile VXM=./vxm
rm -rf "$T" && mkdir -p "$T"
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
EXPECT_PREFIX=h5_hostile
# shellcheck source=tests/expect_error.sh
. tests/expect_error.sh
export VXM_H5_ISOLATE_SECONDS=3
for f in tests/fuzz/upstream/fuzz_h5model/*.h5; do
    name=$(basename "$f" .h5)
    EXPECT_OUTPUTS=""
    expect "vxm info $name" "${f//./\\.}: (corrupt HDF5 file|cannot open HDF5 file|not a Keras model)" -- info --model "$f"
    if [ -f "$P/paircrop_moving.nii.gz" ]; then
        EXPECT_OUTPUTS="$T/moved.nii.gz"
        expect "vxm register $name" "${f//./\\.}: " -- register --device cpu --model "$f" \
            --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz"
    fi
done
if [ -f "$MODEL" ]; then
    for iso in 1 0; do
        if VXM_H5_ISOLATE=$iso "$VXM" info --model "$MODEL" >"$T/info_$iso" 2>"$T/info_$iso.err" &&
            grep -q '^parameters: 313507' "$T/info_$iso" && [ ! -s "$T/info_$iso.err" ]; then
            echo "PASS h5_hostile the published model reads (VXM_H5_ISOLATE=$iso)"
        else echo "FAIL h5_hostile the published model (VXM_H5_ISOLATE=$iso): $(head -2 "$T/info_$iso.err")"; fi
    done
    cmp -s "$T/info_1" "$T/info_0" && echo "PASS h5_hostile same model either way" ||
        echo "FAIL h5_hostile the model reads differently with the child check"
else
    echo "SKIP h5_hostile published model: $SHARED not found"
fi
