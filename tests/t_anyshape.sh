#!/usr/bin/env bash
# `vxm register` on a 150x180x200 pair (written by test_anyshape): succeeds, says once on stderr that it pads,
# and writes both outputs.
set -u
cd "$(dirname "$0")/.."
D=tests/out/anyshape
MODEL=${VXM_SHARED:-../shared}/data/models/vxm_dense_brain_T1_3D_mse.h5
if [ ! -f "$D/moving.nii.gz" ] || [ ! -f "$MODEL" ]; then echo "SKIP cli any shape: no shared data or test_anyshape did not run"; exit 0; fi
rm -f "$D/moved.nii.gz" "$D/warp.nii.gz"
./vxm register --model "$MODEL" --moving "$D/moving.nii.gz" --fixed "$D/fixed.nii.gz" --moved "$D/moved.nii.gz" \
    --warp "$D/warp.nii.gz" --device cpu >"$D/stdout" 2>"$D/stderr"
rc=$?
notes=$(grep -c 'note: .*not a multiple of 16.*160x192x208' "$D/stderr")
if [ $rc -eq 0 ] && [ "$notes" -eq 1 ] && [ "$(wc -l <"$D/stderr")" -eq 1 ] && [ -s "$D/moved.nii.gz" ] && [ -s "$D/warp.nii.gz" ]; then
    echo "PASS cli registers 150x180x200 with one padding note"
else
    echo "FAIL cli any shape: rc $rc, stderr: $(tr '\n' '|' <"$D/stderr")"
fi
