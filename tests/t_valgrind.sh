#!/usr/bin/env bash
# Valgrind memcheck of whole vxm runs on the CPU backend (issue 11): a registration of the 64^3 crop pair, reading
# a corrupt MGZ (the regression input of the fuzzing), and a refused model.  Valgrind does not emulate AVX-512, so
# the portable binary runs its AVX2 (x86-64-v3) or baseline kernels under it (the CPU reports no AVX-512 there).
# Any invalid access, use of uninitialised memory or definite leak fails the test.  OpenCL runtimes are not loaded
# (--device cpu): their own allocations are not ours to check.
set -u
cd "$(dirname "$0")/.." || exit 1
T=tests/out/valgrind VXM=./vxm
rm -rf "$T" && mkdir -p "$T"
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
if ! command -v valgrind >/dev/null; then echo "SKIP valgrind: valgrind not installed"; exit 0; fi
vg() { # vg NAME EXPECT_STATUS args...: memcheck one vxm run
    local name=$1 want=$2
    shift 2
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        --log-file="$T/$name.vg" "$VXM" "$@" >"$T/$name.out" 2>&1
    local rc=$?
    if [ "$rc" = 99 ] || [ -s "$T/$name.vg" ]; then echo "FAIL valgrind $name: $(grep -m3 -E '==[0-9]+== [A-Z]' "$T/$name.vg" | tr '\n' ' ')"
    elif [ "$want" = 0 ] && [ "$rc" != 0 ]; then echo "FAIL valgrind $name: exit status $rc: $(tail -1 "$T/$name.out")"
    elif [ "$want" != 0 ] && [ "$rc" = 0 ]; then echo "FAIL valgrind $name: exit status 0 on bad input"
    else echo "PASS valgrind $name (exit $rc)"; fi
}
crash=tests/fuzz/crashes/fuzz_mgh/issue11_width_7fff0000.mgz
[ -f "$crash" ] && vg "corrupt mgz" 1 warp --device cpu --moving "$crash" --warp "$crash" --moved "$T/x.nii.gz"
if [ ! -f "$MODEL" ]; then echo "SKIP valgrind register: $SHARED not found"; exit 0; fi
vg "register crop pair" 0 register --device cpu --threads 1 --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" \
    --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz" --warp "$T/warp.nii.gz"
vg "model given as image" 1 register --device cpu --threads 1 --model "$MODEL" --moving "$MODEL" \
    --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved2.nii.gz"
