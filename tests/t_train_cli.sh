#!/usr/bin/env bash
# `vxm train`'s command line on tiny 2-D volumes written here with shell tools (float32 .npy):
#  1. usage errors (exit 2) and bad input (one line "vxm: <file>: <problem>", exit 1) that are found before
#     the training engine runs: lists, volumes, the --load-weights file, the model directory;
#  2. with the engine (SKIP while `vxm train` says it is unavailable / not implemented): checkpoint files and
#     timing (train.py: D/<initial>.h5, every --save-freq epochs, the last epoch), progress lines,
#     --save-gradients, --check, resuming, the input-size multiple, NaN stop, reproducibility, every data mode,
#     and that `vxm register` reads the checkpoints.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
T=tests/out/train_cli
MODEL2D=${VXM_SHARED:-../shared}/data/train/int0_2d_model.h5   # a 2-D VxmDense (4 levels: multiples of 16)
rm -rf "$T"; mkdir -p "$T"
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

. tests/train_npy.sh   # npy2d
npy2d "$T/a.npy" 16 16 sq0; npy2d "$T/b.npy" 16 16 sq1; npy2d "$T/c.npy" 16 12 sq0; npy2d "$T/n.npy" 16 16 nan
npy2d "$T/s12a.npy" 12 12 sq0; npy2d "$T/s12b.npy" 12 12 sq1
echo "not a volume" >"$T/bad.npy"
echo "not a model" >"$T/x.h5"
echo "a file" >"$T/afile"
printf '# moving fixed\na b\n\n  b\ta  \n' >"$T/pairs.txt"          # names: --img-prefix $T/ --img-suffix .npy
printf 'a.npy\nb.npy\na.npy\n' >"$T/scans.txt"                        # --img-prefix $T/
printf 'a b\nb\n' >"$T/one_name.txt"
printf 'a.npy b.npy\n' >"$T/two_names.txt"
printf '# nothing\n\n' >"$T/empty.txt"
printf 'a b\nb nothere\n' >"$T/missing.txt"
printf 'a b\nb bad\n' >"$T/unreadable.txt"
printf 'a b\nb c\n' >"$T/shapes.txt"
printf 'a b\nn a\n' >"$T/nan.txt"
printf 's12a s12b\n' >"$T/s12.txt"
AFF=(--img-prefix "$T/" --img-suffix .npy)
SMALL=(--enc 4 4 --dec 4 4 4 --device cpu)   # a 2-level U-Net: inputs must be multiples of 4

# expect NAME STATUS PATTERN -- vxm args...: exit STATUS, the last stderr line matches "^vxm: PATTERN"; status 1
# (bad input) must print exactly one stderr line.
expect() {
    local name=$1 want=$2 pattern=$3; shift 4
    "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$? lines last
    lines=$(wc -l <"$T/stderr"); last=$(tail -1 "$T/stderr")
    if [ $rc -ne "$want" ]; then fail "$name" "exit status $rc, expected $want ($(head -2 "$T/stderr" | tr '\n' '|'))"; return; fi
    if [ "$want" -eq 1 ] && [ "$lines" -ne 1 ]; then fail "$name" "$lines lines on stderr: $(head -3 "$T/stderr" | tr '\n' '|')"; return; fi
    if ! printf '%s\n' "$last" | grep -Eq "^vxm: $pattern"; then fail "$name" "message '$last' does not match '$pattern'"; return; fi
    pass "$name ($last)"
}
tr_pairs() { echo train --model-dir "$T/m_err" --pairs "$@"; }

# ---- 1. without the engine ---------------------------------------------------------------------------------
"$VXM" train --help >"$T/help" 2>"$T/help.err"; rc=$?
if [ $rc -eq 0 ] && [ ! -s "$T/help.err" ] && grep -q '^usage: vxm train' "$T/help" && grep -q -- '--seed S .*default 0' "$T/help"; then
    pass "train --help: usage on stdout (seed default stated), exit 0"
else
    fail "train --help" "exit $rc, stderr '$(head -1 "$T/help.err")'"
fi
if "$VXM" help | grep -q '^  train '; then pass "vxm help lists train"; else fail "vxm help lists train" "no 'train' line"; fi
expect "usage: no arguments" 2 "train: --model-dir and either --img-list or --pairs are required" -- train
expect "usage: no data" 2 "train: --model-dir and either" -- train --model-dir "$T/m"
expect "usage: unknown option" 2 "train: unknown option '--frobnicate'" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --frobnicate
expect "usage: --pairs and --img-list" 2 "train: give either --img-list or --pairs" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --img-list "$T/scans.txt"
expect "usage: --atlas with --pairs" 2 "train: --atlas goes with --img-list" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --atlas "$T/a.npy"
expect "usage: bad --epochs" 2 "--epochs: expected an integer" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --epochs many
expect "usage: bad --lr" 2 "--lr: expected a number" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --lr fast
expect "usage: bad --image-loss" 2 "train: --image-loss must be mse or ncc" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --image-loss l1
expect "usage: bad --optimizer" 2 "train: --optimizer must be adam or sgd" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --optimizer rmsprop
expect "usage: --enc without values" 2 "option --enc needs at least one value" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --enc --epochs 3
expect "usage: --enc with a non-integer" 2 "--enc: expected an integer" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --enc 16 x
expect "usage: --dec shorter than --enc" 2 "train: --dec needs at least as many values as --enc" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --enc 8 8 8 --dec 8 8
expect "usage: --initial-epoch beyond --epochs" 2 "train: --initial-epoch 5 is beyond --epochs 3" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --epochs 3 --initial-epoch 5
expect "usage: --enc with --load-weights" 2 "train: --enc/--dec/--int-steps/--int-downsize describe a new model" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --load-weights "$T/x.h5" --enc 8 8
expect "usage: --tolerance without --check" 2 "train: --tolerance goes with --check" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --tolerance 1e-2
expect "usage: --seed negative" 2 "--seed: expected a non-negative integer" -- train --model-dir "$T/m" --pairs "$T/pairs.txt" --seed -1

expect "missing pair list" 1 "$T/nope.txt: .*No such file" -- $(tr_pairs "$T/nope.txt" "${AFF[@]}")
expect "missing image list" 1 "$T/nope.txt: .*No such file" -- train --model-dir "$T/m_err" --img-list "$T/nope.txt"
expect "pair list: line with one name" 1 "$T/one_name.txt: line 2: expected two names \(moving fixed\), found 1" -- $(tr_pairs "$T/one_name.txt" "${AFF[@]}")
expect "image list: line with two names" 1 "$T/two_names.txt: line 1: expected one name \(a volume\), found 2" -- train --model-dir "$T/m_err" --img-list "$T/two_names.txt" --img-prefix "$T/"
expect "empty pair list" 1 "$T/empty.txt: no pairs in the list" -- $(tr_pairs "$T/empty.txt" "${AFF[@]}")
expect "prefix/suffix applied: missing volume" 1 "$T/nothere.npy: .*No such file" -- $(tr_pairs "$T/missing.txt" "${AFF[@]}")
expect "unreadable volume in the list" 1 "$T/bad.npy: " -- $(tr_pairs "$T/unreadable.txt" "${AFF[@]}")
expect "shapes differ within the list" 1 "$T/c.npy: shape 16x12 differs from $T/a.npy's 16x16" -- $(tr_pairs "$T/shapes.txt" "${AFF[@]}")
expect "NaN in a volume" 1 "$T/n.npy: contains NaN or Inf" -- $(tr_pairs "$T/nan.txt" "${AFF[@]}")
expect "missing atlas" 1 "$T/noatlas.npy: .*No such file" -- train --model-dir "$T/m_err" --img-list "$T/scans.txt" --img-prefix "$T/" --atlas "$T/noatlas.npy"
expect "atlas shape differs" 1 "$T/c.npy: shape 16x12 differs" -- train --model-dir "$T/m_err" --img-list "$T/scans.txt" --img-prefix "$T/" --atlas "$T/c.npy"
expect "--load-weights: a text file named .h5" 1 "$T/x.h5: " -- $(tr_pairs "$T/pairs.txt" "${AFF[@]}") --load-weights "$T/x.h5"
LEGACY=${VXM_SHARED:-../shared}/data/models/cvpr2018_vm2_cc.h5
if [ -f "$LEGACY" ]; then
    expect "--load-weights: a legacy (non-VxmDense) model" 1 "$LEGACY: is a legacy Keras graph; only VxmDense models can be trained" -- \
        train --model-dir "$T/m_err" --pairs "$T/pairs.txt" "${AFF[@]}" --load-weights "$LEGACY" --device cpu
fi
expect "--load-weights: missing model" 1 "$T/nomodel.h5: .*No such file" -- $(tr_pairs "$T/pairs.txt" "${AFF[@]}") --load-weights "$T/nomodel.h5"
expect "size not a multiple of 2^(encoder levels)" 1 "$T/s12a.npy: shape 12x12: size 12 along axis 0 is not a multiple of 8" -- \
    train --model-dir "$T/m12" --pairs "$T/s12.txt" "${AFF[@]}" --enc 4 4 4 --dec 4 4 4 --device cpu
if [ -f "$MODEL2D" ]; then
    expect "--load-weights: size not a multiple of the model's" 1 "$T/s12a.npy: shape 12x12: size 12 along axis 0 is not a multiple of 16" -- \
        train --model-dir "$T/m12" --pairs "$T/s12.txt" "${AFF[@]}" --load-weights "$MODEL2D" --device cpu
else
    echo "SKIP train --load-weights: size not a multiple: $MODEL2D not found (set VXM_SHARED)"
fi
expect "--model-dir is a file" 1 "$T/afile: Not a directory" -- train --model-dir "$T/afile" --pairs "$T/pairs.txt" "${AFF[@]}"
if ls "$T"/m_err "$T"/m12 >/dev/null 2>&1; then fail "bad input creates no model directory" "$(ls -d "$T"/m_err "$T"/m12 2>&1)"; else pass "bad input creates no model directory"; fi

# ---- 2. with the engine ------------------------------------------------------------------------------------
"$VXM" train --model-dir "$T/probe" --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 1 --steps-per-epoch 1 \
    >"$T/probe.out" 2>"$T/probe.err"
rc=$?
if [ $rc -ne 0 ] && grep -Eqi 'not implemented|unavailable|unsupported' "$T/probe.err"; then
    why=$(tail -1 "$T/probe.err")
    for c in "checkpoints 0000 and 0003 for --epochs 3" "--save-freq 1" "progress lines" "--save-gradients" \
             "--check on the cpu backend" "--check on OpenCL" "resume with --load-weights --initial-epoch" \
             "NaN stops training" "same seed, same model" "--img-list modes" \
             "vxm register reads a checkpoint"; do
        echo "SKIP train: $c: engine unavailable ($why)"
    done
    exit 0
fi
if [ $rc -ne 0 ]; then fail "train runs (1 epoch, 1 step)" "exit $rc: $(tail -2 "$T/probe.err" | tr '\n' '|')"; exit 0; fi
pass "train runs (1 epoch, 1 step)"

# files DIR: the checkpoint names, space separated (not log.csv / loss.png)
files() { (cd "$1" 2>/dev/null && ls -- *.h5 2>/dev/null | tr '\n' ' '); }
run() { local d=$1; shift; "$VXM" train --model-dir "$T/$d" "$@" >"$T/$d.out" 2>"$T/$d.err"; }

run e3 --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 3 --steps-per-epoch 1; rc=$?
got=$(files "$T/e3")
if [ $rc -eq 0 ] && [ "$got" = "0000.h5 0003.h5 " ]; then pass "checkpoints 0000 and 0003 for --epochs 3 --steps-per-epoch 1"
else fail "checkpoints for --epochs 3" "exit $rc, files '$got': $(tail -1 "$T/e3.err")"; fi
n=$(grep -cE '^epoch [1-3]/3  loss [0-9.e+-]+ \(mse [0-9.e+-]+, grad [0-9.e+-]+\)  [0-9.e+-]+ s/step  ETA [0-9]' "$T/e3.err")
if [ "$n" = 3 ] && [ "$(wc -l <"$T/e3.err")" -eq 3 ]; then pass "progress lines: one per epoch ($(head -1 "$T/e3.err"))"
else fail "progress lines" "$n matching of $(wc -l <"$T/e3.err"): $(head -2 "$T/e3.err" | tr '\n' '|')"; fi
# the last stdout line: the most device memory the step's buffers held (issue 10), a positive number
mem=$(tail -1 "$T/e3.out" | sed -nE 's/^device memory: at most ([0-9]+\.[0-9]) [MK]B of buffers on (cpu|opencl:[0-9]+:[0-9]+)$/\1/p')
if [ -n "$mem" ] && awk -v m="$mem" 'BEGIN { exit !(m > 0) }'; then pass "device memory line ($(tail -1 "$T/e3.out"))"
else fail "device memory line" "'$(tail -1 "$T/e3.out")'"; fi

run f1 --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 2 --steps-per-epoch 2 --save-freq 1 --save-gradients "$T/g.h5"; rc=$?
got=$(files "$T/f1")
if [ $rc -eq 0 ] && [ "$got" = "0000.h5 0001.h5 0002.h5 " ]; then pass "--save-freq 1: $got"
else fail "--save-freq 1" "exit $rc, files '$got'"; fi
if [ $rc -eq 0 ] && [ -s "$T/g.h5" ]; then pass "--save-gradients writes the first step's gradients"
else fail "--save-gradients" "exit $rc, $(ls -la "$T/g.h5" 2>&1)"; fi

run chk --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 1 --steps-per-epoch 1 --check; rc=$?
if [ $rc -eq 0 ] && grep -q '^check: max relative difference 0.000e+00' "$T/chk.out" && grep -q '^vxm_dense_flow/kernel ' "$T/chk.out"; then
    pass "--check on the cpu backend: per-weight lines, max 0"
else fail "--check on the cpu backend" "exit $rc: $(grep -m1 '^check: max' "$T/chk.out") $(tail -1 "$T/chk.err")"; fi
dev=$("$VXM" devices | awk '/^opencl:/ {print $1; exit}')
if [ -n "$dev" ]; then
    "$VXM" train --model-dir "$T/chkcl" --pairs "$T/pairs.txt" "${AFF[@]}" --enc 4 4 --dec 4 4 4 --device "$dev" \
        --epochs 1 --steps-per-epoch 1 --check >"$T/chkcl.out" 2>"$T/chkcl.err"; rc=$?
    if [ $rc -eq 0 ] && grep -q '^check: max relative difference .*OK' "$T/chkcl.out"; then pass "--check on OpenCL $dev: $(grep '^check: max' "$T/chkcl.out")"
    else fail "--check on OpenCL $dev" "exit $rc: $(grep '^check: max' "$T/chkcl.out") $(tail -1 "$T/chkcl.err")"; fi
    "$VXM" train --model-dir "$T/chkcl0" --pairs "$T/pairs.txt" "${AFF[@]}" --enc 4 4 --dec 4 4 4 --device "$dev" \
        --epochs 1 --steps-per-epoch 1 --check --tolerance 0 >"$T/chkcl0.out" 2>"$T/chkcl0.err"; rc=$?
    if grep -q '^check: max relative difference 0.000e+00' "$T/chkcl0.out"; then
        echo "SKIP --check --tolerance 0 fails: $dev matches the CPU bitwise"
    elif [ $rc -eq 1 ] && grep -q 'gradients differ from the CPU backend' "$T/chkcl0.err" && [ -z "$(files "$T/chkcl0")" ]; then
        pass "--check fails above its tolerance, before any checkpoint"
    else fail "--check --tolerance 0" "exit $rc: $(tail -1 "$T/chkcl0.err"), files '$(files "$T/chkcl0")'"; fi
else
    echo "SKIP train --check on OpenCL: no OpenCL device"
fi

run res --pairs "$T/pairs.txt" "${AFF[@]}" --device cpu --load-weights "$T/e3/0003.h5" --initial-epoch 3 --epochs 7 --save-freq 2 --steps-per-epoch 1; rc=$?
got=$(files "$T/res")
if [ $rc -eq 0 ] && [ "$got" = "0003.h5 0005.h5 0007.h5 " ] && grep -q '^epoch 4/7 ' "$T/res.err"; then pass "resume with --load-weights --initial-epoch 3 --epochs 7 --save-freq 2: $got"
else fail "resume with --load-weights --initial-epoch" "exit $rc, files '$got': $(tail -1 "$T/res.err")"; fi

run nan --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 5 --steps-per-epoch 1 --save-freq 1 --lr 1e30; rc=$?
last=$(tail -1 "$T/nan.err")
ck=$(printf '%s\n' "$last" | sed -n 's/.*; last checkpoint \(.*\)$/\1/p')
ep=$(printf '%s\n' "$last" | sed -n 's/^vxm: training stopped at epoch \([0-9]*\) step 1: .*/\1/p')
if [ $rc -eq 1 ] && [ -n "$ep" ] && [ -f "$ck" ] && [ "$ck" = "$T/nan/$(printf %04d $((ep - 1))).h5" ] && [ ! -f "$T/nan/$(printf %04d "$ep").h5" ]; then
    pass "NaN stops training, last checkpoint kept ($last)"
else fail "NaN stops training" "exit $rc: '$last', files '$(files "$T/nan")'"; fi

run s1 --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 2 --steps-per-epoch 2 --seed 7
run s2 --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 2 --steps-per-epoch 2 --seed 7
run s3 --pairs "$T/pairs.txt" "${AFF[@]}" "${SMALL[@]}" --epochs 2 --steps-per-epoch 2 --seed 8
for s in s1 s2 s3; do
    "$VXM" register --model "$T/$s/0002.h5" --moving "$T/a.npy" --fixed "$T/b.npy" --moved "$T/$s.nii.gz" --warp "$T/${s}_w.nii.gz" --device cpu >"$T/reg_$s.out" 2>&1
done
if [ -s "$T/s1_w.nii.gz" ]; then pass "vxm register reads a checkpoint of a 2-D model"
else fail "vxm register reads a checkpoint" "$(tail -1 "$T/reg_s1.out")"; fi
if [ -s "$T/s1_w.nii.gz" ] && cmp -s "$T/s1_w.nii.gz" "$T/s2_w.nii.gz" && ! cmp -s "$T/s1_w.nii.gz" "$T/s3_w.nii.gz"; then
    pass "same seed, same model (warps identical); another seed, another model"
else fail "same seed, same model" "warps of seeds 7/7/8: $(ls -la "$T"/s?_w.nii.gz 2>&1 | awk '{print $5}' | tr '\n' ' ')"; fi

run ss --img-list "$T/scans.txt" --img-prefix "$T/" "${SMALL[@]}" --epochs 1 --steps-per-epoch 2; rc1=$?
run sa --img-list "$T/scans.txt" --img-prefix "$T/" --atlas "$T/b.npy" "${SMALL[@]}" --epochs 1 --steps-per-epoch 2; rc2=$?
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && grep -q '3 scans (2 files' "$T/ss.out" && [ "$(files "$T/sa")" = "0000.h5 0001.h5 " ]; then
    pass "--img-list modes: scan-to-scan and scan-to-atlas train (repeated files loaded once)"
else fail "--img-list modes" "exit $rc1/$rc2: $(head -1 "$T/ss.out") $(tail -1 "$T/ss.err") $(tail -1 "$T/sa.err")"; fi
