#!/usr/bin/env bash
# HyperMorph from the command line (training doc §5) on tiny 2-D volumes, CPU backend, one thread (seconds;
# results are identical for any thread count):
#  - `vxm train --hypermorph`: a HyperVxmDense; no checkpoint before training; the warps it makes for one pair get
#    smoother as lambda grows (Grad 'l2' of the warp at --hyper 0 > 0.5 > 1; image sigma 0.5 so that both terms
#    matter at this size);
#  - --resume continues exactly (the per-sample lambdas depend on (seed, step, sample) only);
#  - round trip: a model saved after one step reloads: `vxm register --hyper`, `vxm test --hyper`, `vxm info`;
#  - one-line errors: a HyperMorph model without --hyper, --hyper on a VxmDense, lambda outside [0, 1], --hypermorph
#    with --lambda / --bidir.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
T=tests/out/hyper
rm -rf "$T"; mkdir -p "$T"
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
. tests/train_npy.sh
npy2d "$T/a.npy" 16 16 sq0; npy2d "$T/b.npy" 16 16 sq1; npy2d "$T/lab_a.npy" 16 16 lab0; npy2d "$T/lab_b.npy" 16 16 lab1
printf '%s %s\n' "$T/a.npy" "$T/b.npy" "$T/b.npy" "$T/a.npy" >"$T/pairs.txt"
printf 'a b\nb a\n' >"$T/names.txt"
NEW=(--hypermorph --pairs "$T/pairs.txt" --device cpu --threads 1 --enc 8 8 --dec 8 8 8 --int-steps 3 --seed 1)
run() { local d=$1; shift; "$VXM" train --model-dir "$T/$d" "$@" >"$T/$d.out" 2>"$T/$d.err"; }
last_err() { tail -1 "$T/$1.err"; }

# warp_grad W.npy H W C: Grad('l2') of a float32 (H, W, C) .npy warp: the mean over both axes of the mean squared
# forward difference
warp_grad() {
    local f=$1 h=$2 w=$3 c=$4 hl
    hl=$(od -A n -t u2 -j 8 -N 2 "$f" | tr -d ' ')
    od -A n -t f4 -v -j $((10 + hl)) "$f" | tr -s ' ' '\n' | grep -v '^$' |
        awk -v H="$h" -v W="$w" -v C="$c" '{ v[NR - 1] = $1 }
            END { s0 = 0; s1 = 0
                  for (i = 0; i < H; i++) for (j = 0; j < W; j++) for (k = 0; k < C; k++) {
                      x = v[(i * W + j) * C + k]
                      if (i + 1 < H) { d = v[((i + 1) * W + j) * C + k] - x; s0 += d * d }
                      if (j + 1 < W) { d = v[(i * W + j + 1) * C + k] - x; s1 += d * d } }
                  printf "%.9g\n", (s0 / ((H - 1) * W * C) + s1 / (H * (W - 1) * C)) / 2 }'
}

# ---- training: warps smoother as lambda grows ----------------------------------------------------------------
run hm "${NEW[@]}" --epochs 10 --steps-per-epoch 100 --lr 1e-3 --image-sigma 0.5; rc=$?
if [ $rc -eq 0 ] && [ -f "$T/hm/0010.h5" ] && [ ! -f "$T/hm/0000.h5" ] &&
   [ "$(head -1 "$T/hm/log.csv")" = "epoch,step,mse,grad,total,seconds" ]; then
    pass "train --hypermorph: final checkpoint, none before training (train_hypermorph.py), log columns mse, grad"
else fail "train --hypermorph" "exit $rc: $(last_err hm) $(ls "$T/hm" | tr '\n' ' ')"; fi
g=()
for l in 0 0.5 1; do
    "$VXM" register --model "$T/hm/0010.h5" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$T/moved$l.npy" \
        --warp "$T/warp$l.npy" --hyper $l --device cpu --threads 1 >"$T/reg$l.out" 2>&1 || echo "register --hyper $l failed"
    g+=("$(warp_grad "$T/warp$l.npy" 16 16 2)")
done
if awk -v a="${g[0]}" -v b="${g[1]}" -v c="${g[2]}" 'BEGIN { exit !(a > b && b > c && c < 0.5 * a && c > 0) }'; then
    pass "hypermorph warps get smoother as lambda grows: Grad ${g[0]} (0) > ${g[1]} (0.5) > ${g[2]} (1)"
else fail "hypermorph smoothness" "Grad of the warp at lambda 0, 0.5, 1: ${g[*]}"; fi

# ---- resume: the lambdas depend on (seed, step, sample) --------------------------------------------------------
run full "${NEW[@]}" --epochs 2 --steps-per-epoch 3 --save-freq 1; r1=$?
run part "${NEW[@]}" --epochs 1 --steps-per-epoch 3; r2=$?
run part --hypermorph --pairs "$T/pairs.txt" --device cpu --threads 1 --seed 1 --epochs 2 --steps-per-epoch 3 \
    --resume "$T/part/0001.h5"; r3=$?
if [ $r1$r2$r3 = 000 ] && cmp -s "$T/full/0002.h5" "$T/part/0002.h5"; then
    pass "train --hypermorph: 6 steps == 3 steps, --resume, 3 more (byte-identical checkpoints)"
else fail "hypermorph resume" "exit $r1/$r2/$r3: $(last_err part)"; fi

# ---- round trip: one step, save, reload -------------------------------------------------------------------------
run one "${NEW[@]}" --epochs 1 --steps-per-epoch 1; rc=$?
M="$T/one/0001.h5"
"$VXM" register --model "$M" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$T/m.npy" --hyper 0.3 --device cpu --threads 1 \
    >"$T/r.out" 2>"$T/r.err"; r1=$?
"$VXM" test --model "$M" --pairs "$T/names.txt" --img-prefix "$T/" --img-suffix .npy --seg-prefix "$T/lab_" \
    --seg-suffix .npy --hyper 0.3 --device cpu --threads 1 >"$T/test.out" 2>"$T/test.err"; r2=$?
"$VXM" info --model "$M" >"$T/info.out" 2>&1; r3=$?
if [ $rc$r1$r2$r3 = 0000 ] && [ -f "$T/m.npy" ] && grep -q 'class: HyperVxmDense' "$T/info.out" &&
   grep -q 'hypernetwork: 1 hyper-parameter(s), 6 Dense layers of 128 ReLU units' "$T/info.out"; then
    pass "a HyperMorph model saved after one step reloads: vxm register/test --hyper 0.3, vxm info"
else fail "hypermorph round trip" "exit $rc/$r1/$r2/$r3: $(tail -1 "$T/r.err") $(tail -1 "$T/test.err") $(head -3 "$T/info.out")"; fi

# ---- errors -------------------------------------------------------------------------------------------------------
"$VXM" register --model "$M" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$T/e1.npy" --device cpu --threads 1 \
    >/dev/null 2>"$T/e1.err"; r1=$?
"$VXM" train --model-dir "$T/plain" --pairs "$T/pairs.txt" --device cpu --threads 1 --enc 8 8 --dec 8 8 8 --epochs 1 \
    --steps-per-epoch 1 >/dev/null 2>&1
"$VXM" register --model "$T/plain/0001.h5" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$T/e2.npy" --hyper 0.5 \
    --device cpu --threads 1 >/dev/null 2>"$T/e2.err"; r2=$?
"$VXM" register --model "$M" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$T/e3.npy" --hyper 1.5 --device cpu --threads 1 \
    >/dev/null 2>"$T/e3.err"; r3=$?
"$VXM" test --model "$M" --pairs "$T/names.txt" --img-prefix "$T/" --img-suffix .npy --seg-prefix "$T/lab_" \
    --seg-suffix .npy --device cpu --threads 1 >/dev/null 2>"$T/e4.err"; r4=$?
if [ $r1 -eq 1 ] && [ "$(wc -l <"$T/e1.err")" -eq 1 ] && grep -q "^vxm: $M: is a HyperMorph model" "$T/e1.err" &&
   [ $r2 -eq 1 ] && [ "$(wc -l <"$T/e2.err")" -eq 1 ] && grep -q "is not a HyperMorph model" "$T/e2.err" &&
   [ $r3 -eq 2 ] && grep -q '^vxm: --hyper: expected a number in \[0, 1\]' "$T/e3.err" &&
   [ $r4 -eq 1 ] && grep -q "is a HyperMorph model" "$T/e4.err" && [ ! -e "$T/e1.npy" ] && [ ! -e "$T/e2.npy" ]; then
    pass "one-line errors: HyperMorph model without --hyper (register, test), --hyper on a VxmDense, lambda 1.5"
else fail "hyper errors" "exit $r1/$r2/$r3/$r4: $(cat "$T/e1.err" "$T/e2.err" "$T/e3.err" "$T/e4.err" | tr '\n' '|')"; fi
run u1 "${NEW[@]}" --epochs 1 --lambda 0.1; r1=$?
run u2 "${NEW[@]}" --epochs 1 --bidir; r2=$?
run u3 --pairs "$T/pairs.txt" --device cpu --threads 1 --epochs 1 --steps-per-epoch 1 --load-weights "$M"; r3=$?
if [ $r1 -eq 2 ] && grep -q '^vxm: train: --hypermorph draws lambda per sample' "$T/u1.err" && [ $r2 -eq 2 ] &&
   [ $r3 -eq 1 ] && grep -q "is a HyperVxmDense model: train it with HyperMorph" "$T/u3.err"; then
    pass "train: --hypermorph with --lambda / --bidir, and a HyperVxmDense without --hypermorph, are refused"
else fail "train --hypermorph errors" "exit $r1/$r2/$r3: $(last_err u1) $(last_err u3)"; fi
