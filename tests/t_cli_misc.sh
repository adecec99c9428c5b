#!/usr/bin/env bash
# The command line beyond registration errors: devices, info, --help on every command, auto device choice,
# the --gpu alias, and --check against the CPU backend on each OpenCL device.
set -u
cd "$(dirname "$0")/.."
SHARED=${VXM_SHARED:-../shared}
P=$SHARED/data/pairs
MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5
T=tests/out/cli_misc; rm -rf "$T"; mkdir -p "$T"
ok() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1: $3"; fi; }

./vxm devices >"$T/devices" 2>&1
ok "devices lists the cpu backend" "grep -q '^cpu ' $T/devices" "$(head -3 "$T/devices" | tr '\n' '|')"
ncl=$(grep -c '^opencl:' "$T/devices")
nicd=$(ls /etc/OpenCL/vendors/*.icd 2>/dev/null | wc -l)
ok "devices lists OpenCL devices when an ICD is installed" "[ $nicd -eq 0 ] || [ $ncl -ge 1 ]" "no opencl line with $nicd ICDs"
for c in register warp dice devices info; do
    ok "$c --help" "./vxm $c --help >$T/help 2>&1 && grep -qi usage $T/help" "no usage text"
done
ok "unknown command fails" "! ./vxm frobnicate >/dev/null 2>&1" "exit 0"
[ -f "$MODEL" ] || { echo "SKIP cli misc with model: ../shared not found"; exit 0; }

./vxm info --model "$MODEL" >"$T/info" 2>&1
ok "info reports 236.42 GFLOP and 313507 parameters" "grep -q 'GFLOP at 160x192x224: 236.42' $T/info && grep -q 'parameters: 313507' $T/info" "$(tail -2 "$T/info" | tr '\n' '|')"
./vxm info --model "$MODEL" --shape 64x64x64 >"$T/info64" 2>&1
ok "info at another shape" "grep -q 'at 64x64x64' $T/info64" "$(tail -1 "$T/info64")"

reg() { ./vxm register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/moved.nii.gz" "$@"; }
if grep -q '\[GPU,' "$T/devices"; then
    echo "SKIP auto picks the cpu backend: this machine has an OpenCL GPU"
else
    reg --device auto >"$T/auto" 2>&1
    ok "auto picks the cpu backend without a GPU" "grep -q '^device: cpu' $T/auto" "$(cat "$T/auto" | tr '\n' '|')"
    reg --gpu 0 >"$T/gpu" 2>"$T/gpu.err"
    ok "--gpu 0 without a GPU: one-line error" "[ \$(wc -l <$T/gpu.err) -eq 1 ] && grep -q '^vxm: gpu:0: ' $T/gpu.err" "$(cat "$T/gpu.err")"
fi
reg --device cpu --threads 1 >"$T/t1" 2>&1
ok "--threads 1" "grep -q '1 thread' $T/t1" "$(head -1 "$T/t1")"
for d in $(awk '/^opencl:/ {print $1}' "$T/devices"); do
    reg --device "$d" --check >"$T/check" 2>&1
    rc=$?
    ok "--check $d agrees with the cpu backend" "[ $rc -eq 0 ] && grep -q 'check: worst relative difference' $T/check" "rc $rc: $(tail -2 "$T/check" | tr '\n' '|')"
    grep 'check: worst' "$T/check" | sed 's/^/  /'
done
# an impossible tolerance must make --check fail
d=$(awk '/^opencl:/ {print $1; exit}' "$T/devices")
if [ -n "$d" ]; then
    reg --device "$d" --check --tolerance 0 >"$T/check0" 2>"$T/check0.err"
    ok "--check fails above its tolerance" "[ $? -ne 0 ] && grep -q 'differ from the CPU backend' $T/check0.err" "$(cat "$T/check0.err")"
fi

# --batch: the model is loaded once for a list of pairs
printf '# moving fixed moved [warp]\n%s %s %s\n\n%s %s %s %s\n' \
    "$P/paircrop_moving.nii.gz" "$P/paircrop_fixed.nii.gz" "$T/b1.nii.gz" \
    "$P/paircrop_fixed.nii.gz" "$P/paircrop_moving.nii.gz" "$T/b2.nii.gz" "$T/b2_warp.nii.gz" >"$T/batch.txt"
./vxm register --model "$MODEL" --device cpu --batch "$T/batch.txt" >"$T/batch.out" 2>&1
ok "--batch registers every listed pair" "[ \$(grep -c '^registered' $T/batch.out) -eq 2 ] && grep -q '^batch: 2 pair' $T/batch.out && [ -s $T/b1.nii.gz ] && [ -s $T/b2_warp.nii.gz ]" "$(tail -3 "$T/batch.out" | tr '\n' '|')"
printf '%s %s\n' "$P/paircrop_moving.nii.gz" "$P/paircrop_fixed.nii.gz" >"$T/badbatch.txt"
./vxm register --model "$MODEL" --device cpu --batch "$T/badbatch.txt" >/dev/null 2>"$T/badbatch.err"
ok "--batch names a malformed line" "[ $? -ne 0 ] && grep -q 'badbatch.txt: line 1: expected' $T/badbatch.err" "$(cat "$T/badbatch.err")"

# CPU backend results are bitwise identical from run to run and for any thread count (compressed outputs too:
# gzip members are cut at fixed offsets)
for pair in paircrop pair1; do
    fixed=$P/fixed.nii.gz; [ $pair = paircrop ] && fixed=$P/paircrop_fixed.nii.gz
    for t in 1 2 2b 3; do
        n=${t%b}
        OMP_NUM_THREADS=7 ./vxm register --model "$MODEL" --moving "$P/${pair}_moving.nii.gz" --fixed "$fixed" \
            --moved "$T/det_${pair}_$t.nii.gz" --warp "$T/det_${pair}_w$t.nii.gz" --device cpu --threads "$n" >/dev/null 2>&1
    done
    ok "$pair: cpu output bitwise identical for 1, 2 (twice) and 3 threads" \
        "cmp -s $T/det_${pair}_1.nii.gz $T/det_${pair}_2.nii.gz && cmp -s $T/det_${pair}_2.nii.gz $T/det_${pair}_2b.nii.gz && cmp -s $T/det_${pair}_1.nii.gz $T/det_${pair}_3.nii.gz && cmp -s $T/det_${pair}_w1.nii.gz $T/det_${pair}_w2.nii.gz && cmp -s $T/det_${pair}_w2.nii.gz $T/det_${pair}_w2b.nii.gz && cmp -s $T/det_${pair}_w1.nii.gz $T/det_${pair}_w3.nii.gz" \
        "outputs differ"
done
# OMP_NUM_THREADS and SLURM_CPUS_PER_TASK set the default thread count; --threads overrides both
OMP_NUM_THREADS=1 ./vxm register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/e.nii.gz" --device cpu >"$T/omp" 2>&1
ok "OMP_NUM_THREADS=1 is respected" "grep -q '(1 thread' $T/omp" "$(head -1 "$T/omp")"
env -u OMP_NUM_THREADS SLURM_CPUS_PER_TASK=3 ./vxm register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/e.nii.gz" --device cpu >"$T/slurm" 2>&1
ok "SLURM_CPUS_PER_TASK=3 is respected" "grep -q '(3 threads' $T/slurm" "$(head -1 "$T/slurm")"
OMP_NUM_THREADS=1 ./vxm register --model "$MODEL" --moving "$P/paircrop_moving.nii.gz" --fixed "$P/paircrop_fixed.nii.gz" --moved "$T/e.nii.gz" --device cpu --threads 2 >"$T/thr" 2>&1
ok "--threads overrides OMP_NUM_THREADS" "grep -q '(2 threads' $T/thr" "$(head -1 "$T/thr")"
