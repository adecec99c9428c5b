#!/usr/bin/env bash
# One portable binary (issue 12; src/backend_cpu/cpu_isa.h):
#  - the build for the x86-64 baseline runs the best CPU kernel variant this CPU supports by default, and the one
#    VXM_CPU_ISA names when told (`vxm devices`, `vxm register`); a variant the CPU lacks or an unknown name is
#    refused with a one-line error and no output;
#  - the library and CLI objects outside the avx2/avx512 variants hold no instruction beyond x86-64 (SSE2), so the
#    binary starts and runs on any 64-bit PC;
#  - op agreement with OpenCL (test_ops_agree, test_grad_ops, on PoCL: rusticl is covered by the suite's own run)
#    and the fused ops' bitwise equality (test_fuse) hold on every variant this CPU supports.
# The crop pair's golden check and thread determinism per variant are in tests/test_cpu_isa.c.
set -u
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
T=tests/out/cpu_isa; rm -rf "$T"; mkdir -p "$T"
ok() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1: $3"; fi; }

if [ "$(uname -m)" != x86_64 ]; then echo "SKIP cpu isa: not an x86-64 machine (baseline kernels only)"; exit 0; fi

# What this CPU runs, found without the library: glibc's loader lists the x86-64 levels it supports
# (glibc-hwcaps); else the /proc/cpuinfo flags of those levels.
levels=$(/lib64/ld-linux-x86-64.so.2 --help 2>/dev/null | awk '/x86-64-v[34] \(supported/ {print $1}')
if [ -z "$levels" ] && ! /lib64/ld-linux-x86-64.so.2 --help 2>/dev/null | grep -q 'x86-64-v2'; then
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    has() { for f; do case "$flags" in *" $f "*) ;; *) return 1 ;; esac; done; }
    has avx avx2 fma bmi1 bmi2 f16c movbe abm && levels="x86-64-v3"
    [ -n "$levels" ] && has avx512f avx512bw avx512cd avx512dq avx512vl && levels="$levels x86-64-v4"
fi
supported=baseline; lacking=""
for v in avx2 avx512; do
    lv=x86-64-v3; [ $v = avx512 ] && lv=x86-64-v4
    case " $(echo $levels) " in *" $lv "*) supported="$supported $v" ;; *) lacking="$lacking $v" ;; esac
done
best=${supported##* }
echo "# this CPU: variants $supported${lacking:+ (lacks$lacking)}"

# ---- run-time choice -------------------------------------------------------------------------------------------
./vxm devices >"$T/devices" 2>&1
ok "vxm devices: the best variant by default ($best)" "head -1 $T/devices | grep -q '; $best kernels)'" \
   "$(head -1 "$T/devices")"
for v in $supported; do
    VXM_CPU_ISA=$v ./vxm devices >"$T/devices_$v" 2>&1
    ok "vxm devices with VXM_CPU_ISA=$v" "head -1 $T/devices_$v | grep -q '; $v kernels)'" "$(head -1 "$T/devices_$v")"
done

if [ -f "$MODEL" ]; then
    reg() { ./vxm register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" \
                --moved "$T/moved.nii.gz" --device cpu "$@"; }
    reg >"$T/reg_default" 2>&1
    ok "vxm register runs the $best kernels by default" "grep -q '^device: cpu (.*$best kernels)' $T/reg_default" \
       "$(head -2 "$T/reg_default" | tr '\n' '|')"
    VXM_CPU_ISA=baseline reg >"$T/reg_baseline" 2>&1
    ok "vxm register runs the baseline kernels when told" \
       "grep -q '^device: cpu (.*baseline kernels)' $T/reg_baseline" "$(head -2 "$T/reg_baseline" | tr '\n' '|')"
    # shellcheck source=tests/expect_error.sh
    . tests/expect_error.sh
    VXM=./vxm; EXPECT_PREFIX="cpu isa"; EXPECT_OUTPUTS="$T/moved.nii.gz"
    args=(register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz"
          --moved "$T/moved.nii.gz" --device cpu)
    VXM_CPU_ISA=sse9 expect "unknown VXM_CPU_ISA refused" "VXM_CPU_ISA: unknown kernel variant 'sse9'" -- "${args[@]}"
    if [ -z "$lacking" ]; then
        echo "SKIP cpu isa: a variant the CPU lacks is refused: this CPU runs every variant"
    fi
    for v in $lacking; do
        VXM_CPU_ISA=$v expect "VXM_CPU_ISA=$v refused on a CPU without it" "VXM_CPU_ISA: $v needs .*lacks" -- "${args[@]}"
    done
else
    echo "SKIP cpu isa: vxm register per variant: $SHARED not found (set VXM_SHARED)"
fi

# ---- on older CPUs, emulated (optional: Debian's qemu-user) ------------------------------------------------------
# qemu64 is an x86-64 (v1) CPU without AVX, Haswell one with AVX2 + FMA but no AVX-512: the binary must start there,
# pick the variant that CPU has, and refuse a better one.  (A -march=native build dies with SIGILL on qemu64.)
if command -v qemu-x86_64 >/dev/null; then
    qemu-x86_64 -cpu qemu64 ./vxm devices >"$T/q64" 2>"$T/q64.err"
    ok "on an emulated x86-64 v1 CPU (qemu64): runs, baseline kernels" "head -1 $T/q64 | grep -q '; baseline kernels)'" \
       "$(head -1 "$T/q64") $(grep -v 'warning:' "$T/q64.err" | head -2 | tr '\n' '|')"
    VXM_CPU_ISA=avx2 qemu-x86_64 -cpu qemu64 ./vxm devices >"$T/q64f" 2>&1
    ok "on qemu64: VXM_CPU_ISA=avx2 refused" "head -1 $T/q64f | grep -q 'VXM_CPU_ISA: avx2 needs .*lacks'" \
       "$(head -1 "$T/q64f")"
    qemu-x86_64 -cpu Haswell-noTSX ./vxm devices >"$T/qhsw" 2>/dev/null
    ok "on an emulated Haswell: avx2 kernels" "head -1 $T/qhsw | grep -q '; avx2 kernels)'" "$(head -1 "$T/qhsw")"
    if [ -f "$MODEL" ]; then
        VXM_CPU_ISA=avx512 qemu-x86_64 -cpu Haswell-noTSX ./vxm register --model "$MODEL" \
            --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/qmoved.nii.gz" \
            --device cpu >/dev/null 2>"$T/qhsw.err"
        grep -v '^qemu-x86_64: warning' "$T/qhsw.err" >"$T/qhsw.err1"
        ok "on Haswell: vxm register with VXM_CPU_ISA=avx512 fails with one line, no output" \
           "[ \$(wc -l <$T/qhsw.err1) -eq 1 ] && grep -q '^vxm: VXM_CPU_ISA: avx512 needs' $T/qhsw.err1 && [ ! -e $T/qmoved.nii.gz ]" \
           "$(head -2 "$T/qhsw.err1" | tr '\n' '|')"
    fi
else
    echo "SKIP cpu isa: emulated older CPUs: qemu-x86_64 not installed (Debian package qemu-user)"
fi

# ---- the baseline objects --------------------------------------------------------------------------------------
# Any VEX/EVEX instruction (mnemonic v..., or a ymm/zmm operand), BMI/LZCNT/MOVBE/POPCNT or SSE3..SSE4.2
# instruction outside build/cpu_isa_avx2.o and build/cpu_isa_avx512.o would fault on an x86-64 (v1) CPU.  (tzcnt is
# listed by objdump for the rep bsf gcc emits for the baseline, which older CPUs run as bsf.)
if ! command -v objdump >/dev/null; then
    echo "SKIP cpu isa: baseline objects: objdump not installed"
else
    beyond='^(v[a-z0-9]+|andn|bextr|blsi|blsr|blsmsk|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|movbe|popcnt|'
    beyond+='pshufb|palignr|phadd[a-z]*|phsub[a-z]*|pabs[bwd]|psign[bwd]|pmaddubsw|pmulhrsw|haddp[sd]|hsubp[sd]|'
    beyond+='addsubp[sd]|movs[hl]dup|movddup|lddqu|ptest|pblendvb|pblendw|blendv?p[sd]|rounds[sd]|roundp[sd]|'
    beyond+='dpp[sd]|insertps|extractps|pextr[bdq]|pinsr[bdq]|pmuldq|pmulld|pmin[su][bwd]|pmax[su][bwd]|packusdw|'
    beyond+='pmov[sz]x[a-z]*|pcmpeqq|pcmpgtq|pcmp[ei]str[im]|crc32[a-z]*)$'
    objdump -d --no-show-raw-insn libvxm.a build/src/cli/*.o 2>/dev/null | awk -v beyond="$beyond" '
        /file format/ { obj = $1; sub(/:$/, "", obj); next }
        /^ +[0-9a-f]+:\t/ {
            split($0, f, "\t"); m = f[2]; sub(/ .*/, "", m)
            if (obj ~ /^cpu_isa_avx(2|512)\.o$/) { if (f[2] ~ /%zmm/) zmm[obj]++; if (f[2] ~ /%ymm/) ymm[obj]++; next }
            if (m ~ beyond || f[2] ~ /%[yz]mm/) { bad[obj]++; if (!(obj in ex)) ex[obj] = f[2] }
        }
        END {
            for (o in bad) print "bad", o, bad[o], ex[o]
            print "ymm_avx2", ymm["cpu_isa_avx2.o"] + 0; print "zmm_avx512", zmm["cpu_isa_avx512.o"] + 0
        }' >"$T/objdump"
    ok "objects outside the avx2/avx512 variants use the x86-64 baseline only" "! grep -q '^bad ' $T/objdump" \
       "$(grep '^bad ' "$T/objdump" | head -3 | tr '\n' '|')"
    ok "the avx2 and avx512 variants are linked in (ymm / zmm code)" \
       "[ \$(awk '/^ymm_avx2/ {print \$2}' $T/objdump) -gt 0 ] && [ \$(awk '/^zmm_avx512/ {print \$2}' $T/objdump) -gt 0 ]" \
       "$(grep -E '^(ymm|zmm)' "$T/objdump" | tr '\n' ' ')"
fi

# ---- op agreement per variant ----------------------------------------------------------------------------------
for t in test_ops_agree test_grad_ops test_fuse; do
    if [ ! -x "build/tests/$t" ]; then echo "SKIP cpu isa: $t per variant: build/tests/$t missing (make tests)"; continue; fi
    for v in $supported; do
        env -u RUSTICL_ENABLE VXM_CPU_ISA=$v "build/tests/$t" >"$T/${t}_$v" 2>&1; rc=$?
        np=$(grep -c '^PASS ' "$T/${t}_$v"); nf=$(grep -c '^FAIL ' "$T/${t}_$v")
        ok "$t under VXM_CPU_ISA=$v ($np checks)" "[ $rc -eq 0 ] && [ $nf -eq 0 ] && [ $np -gt 0 ]" \
           "exit $rc, $nf failed: $(grep -m2 '^FAIL ' "$T/${t}_$v" | tr '\n' '|')"
    done
done
exit 0
