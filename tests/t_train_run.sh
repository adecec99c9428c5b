#!/usr/bin/env bash
# A person's `vxm train` run on tiny 2-D volumes (CPU backend, seconds):
#  - --resume continues exactly: 4 steps == 2 steps + resume + 2 steps, byte-identical checkpoints (weights,
#    Adam state, step); the draws depend on (seed, step) only, so prefetching on/off and cached/streamed
#    volumes give the same checkpoints too; D/log.csv continues on resume;
#  - --resume errors (a Python model without optimizer state, another optimizer, with architecture flags);
#  - SIGINT/SIGTERM: a checkpoint of the current epoch, exit 130/143, and resuming from it;
#  - a checkpoint that cannot be written: one line naming the file, exit 1, earlier checkpoints intact;
#  - --plot / --plot-every write D/loss.png; the [0, 1] intensity warning; the live line on a terminal.
set -u
cd "$(dirname "$0")/.."
VXM=./vxm
T=tests/out/train_run
MODEL2D=${VXM_SHARED:-../shared}/data/train/int0_2d_model.h5
rm -rf "$T"; mkdir -p "$T"
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
. tests/train_npy.sh
npy2d "$T/a.npy" 16 16 sq0; npy2d "$T/b.npy" 16 16 sq1; npy2d "$T/h.npy" 16 16 hi
printf '%s\n' "$T/a.npy" "$T/b.npy" >"$T/scans.txt"
printf '%s %s\n' "$T/a.npy" "$T/h.npy" >"$T/hi.txt"
# scan-to-scan with batch 2: four draws per step exercise the sampler
DATA=(--img-list "$T/scans.txt" --device cpu --steps-per-epoch 2 --seed 5 --batch-size 2)
NEW=(--enc 4 4 --dec 4 4 4)
run() { local d=$1; shift; "$VXM" train --model-dir "$T/$d" "$@" >"$T/$d.out" 2>"$T/$d.err"; }
last_err() { tail -1 "$T/$1.err"; }

# ---- resume: exact continuation ----------------------------------------------------------------------------
run full "${DATA[@]}" "${NEW[@]}" --epochs 4; rc1=$?
run part "${DATA[@]}" "${NEW[@]}" --epochs 2; rc2=$?
mv "$T/part.out" "$T/part1.out"
run part "${DATA[@]}" --epochs 4 --resume "$T/part/0002.h5"; rc3=$?
if [ $rc1$rc2$rc3 = 000 ] && cmp -s "$T/full/0004.h5" "$T/part/0004.h5"; then
    pass "train 4 steps == train 2, --resume, train 2 more: checkpoints byte-identical"
else fail "resume exactly" "exit $rc1/$rc2/$rc3: $(last_err part)"; fi
if grep -q '^epoch 3/4 ' "$T/part.err" && ! grep -q '^epoch [12]/' "$T/part.err" && grep -q 'resuming .*: epoch 2, step 4' "$T/part.out"; then
    pass "--resume continues the epoch numbering from the checkpoint (epoch 2, step 4)"
else fail "--resume epoch numbering" "$(head -3 "$T/part.err" | tr '\n' '|') $(grep resuming "$T/part.out")"; fi
steps=$(cut -d, -f2 "$T/part/log.csv" | tr '\n' ' ')
if [ "$(head -1 "$T/part/log.csv")" = "epoch,step,mse,grad,total,seconds" ] && [ "$steps" = "step 1 2 3 4 5 6 7 8 " ] &&
   [ "$(cut -d, -f1-5 "$T/part/log.csv")" = "$(cut -d, -f1-5 "$T/full/log.csv")" ]; then
    pass "log.csv: one row per step, continued on resume, the same terms as the uninterrupted run"
else fail "log.csv" "steps '$steps'"; fi

run nopf "${DATA[@]}" "${NEW[@]}" --epochs 4 --no-prefetch; r1=$?
run stream "${DATA[@]}" "${NEW[@]}" --epochs 4 --cache-mb 0; r2=$?
run streamnopf "${DATA[@]}" "${NEW[@]}" --epochs 4 --cache-mb 0 --no-prefetch; r3=$?
if [ $r1$r2$r3 = 000 ] && cmp -s "$T/full/0004.h5" "$T/nopf/0004.h5" && cmp -s "$T/full/0004.h5" "$T/stream/0004.h5" &&
   cmp -s "$T/full/0004.h5" "$T/streamnopf/0004.h5"; then
    pass "prefetch on/off, cached/streamed volumes: byte-identical checkpoints"
else fail "prefetch on/off" "exit $r1/$r2/$r3: $(last_err stream)"; fi
if grep -q '^caching 2 volumes (0.0 MB)$' "$T/full.out" && grep -q '^streaming 2 volumes from disk' "$T/stream.out"; then
    pass "says once whether volumes are cached or streamed"
else fail "caching message" "$(head -1 "$T/full.out") / $(head -1 "$T/stream.out")"; fi

# ---- resume errors -----------------------------------------------------------------------------------------
run re1 "${DATA[@]}" --epochs 4 --resume "$T/full/0004.h5" --enc 4 4; rc=$?
if [ $rc -eq 2 ] && grep -q '^vxm: train: --resume continues .* no --load-weights/--enc' "$T/re1.err"; then pass "--resume with --enc: usage error"
else fail "--resume with --enc" "exit $rc: $(last_err re1)"; fi
run re2 "${DATA[@]}" --epochs 6 --resume "$T/full/0004.h5" --optimizer sgd; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/re2.err")" -eq 1 ] && grep -q "^vxm: $T/full/0004.h5: was trained with the adam optimizer, not sgd" "$T/re2.err"; then
    pass "--resume with another optimizer: $(last_err re2)"
else fail "--resume with another optimizer" "exit $rc: $(last_err re2)"; fi
run re3 "${DATA[@]}" --epochs 4 --resume "$T/full/0009.h5"; rc=$?
if [ $rc -eq 1 ] && grep -q "^vxm: $T/full/0009.h5: No such file" "$T/re3.err"; then pass "--resume of a missing file: $(last_err re3)"
else fail "--resume of a missing file" "exit $rc: $(last_err re3)"; fi
if [ -f "$MODEL2D" ]; then
    run re4 "${DATA[@]}" --epochs 4 --resume "$MODEL2D"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/re4.err")" -eq 1 ] && grep -q "^vxm: $MODEL2D: holds no optimizer state" "$T/re4.err"; then
        pass "--resume of a Python VoxelMorph model: $(last_err re4)"
    else fail "--resume of a Python model" "exit $rc: $(last_err re4)"; fi
else
    echo "SKIP --resume of a Python model: $MODEL2D not found (set VXM_SHARED)"
fi

# ---- signals -------------------------------------------------------------------------------------------------
# interrupt SIG DIR: a long epoch, the signal once a few steps are logged; sets rc
interrupt() {
    local sig=$1 d=$2 i
    "$VXM" train --model-dir "$T/$d" "${DATA[@]}" "${NEW[@]}" --epochs 3 --steps-per-epoch 1000000 >"$T/$d.out" 2>"$T/$d.err" &
    local pid=$!
    for ((i = 0; i < 300; i++)); do
        [ -f "$T/$d/log.csv" ] && [ "$(wc -l <"$T/$d/log.csv")" -gt 3 ] && break
        sleep 0.05
    done
    kill -"$sig" $pid; wait $pid; rc=$?
}
interrupt INT sigint
if [ $rc -eq 130 ] && [ -f "$T/sigint/0001.h5" ] && grep -q "^vxm: SIGINT: stopped after epoch 1 step [0-9]*; checkpoint $T/sigint/0001.h5 (epoch 1 incomplete: [0-9]* of 1000000 steps)" "$T/sigint.err"; then
    pass "SIGINT: checkpoint of the current epoch, exit 130 ($(last_err sigint))"
else fail "SIGINT" "exit $rc: $(last_err sigint), files $(ls "$T/sigint" 2>&1 | tr '\n' ' ')"; fi
interrupt TERM sigterm
if [ $rc -eq 143 ] && [ -f "$T/sigterm/0001.h5" ] && grep -q '^vxm: SIGTERM: stopped after epoch 1' "$T/sigterm.err"; then pass "SIGTERM: checkpoint, exit 143"
else fail "SIGTERM" "exit $rc: $(last_err sigterm)"; fi
n=$(($(wc -l <"$T/sigint/log.csv") - 1))
run sigres "${DATA[@]}" --epochs 2 --steps-per-epoch 1 --resume "$T/sigint/0001.h5" --model-dir "$T/sigint"; rc=$?
if [ $rc -eq 0 ] && [ -f "$T/sigint/0002.h5" ] && [ "$(tail -1 "$T/sigint/log.csv" | cut -d, -f1-2)" = "2,$((n + 1))" ]; then
    pass "resume after SIGINT: epoch 2 is step $((n + 1))"
else fail "resume after SIGINT" "exit $rc: $(last_err sigres) / $(tail -1 "$T/sigint/log.csv")"; fi

# ---- a checkpoint that cannot be written ---------------------------------------------------------------------
mkdir -p "$T/nowrite/0002.h5"   # a directory where the epoch-2 checkpoint goes: the rename fails (even as root)
run nowrite "${DATA[@]}" "${NEW[@]}" --epochs 3 --save-freq 1; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/nowrite.err")" -eq 3 ] && grep -q "^vxm: $T/nowrite/0002.h5: " "$T/nowrite.err" &&
   "$VXM" info --model "$T/nowrite/0001.h5" >/dev/null 2>&1 && [ -z "$(ls -A "$T/nowrite" | grep -v '^000[01].h5$\|^0002.h5$\|^log.csv$')" ]; then
    pass "unwritable checkpoint: one line, exit 1, earlier checkpoints intact, no temporary files ($(last_err nowrite))"
else fail "unwritable checkpoint" "exit $rc: $(last_err nowrite); $(ls -A "$T/nowrite" | tr '\n' ' ')"; fi

# ---- plots, warnings, the live line ---------------------------------------------------------------------------
png_ok() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
"$VXM" train --plot "$T/part" >"$T/plot.out" 2>"$T/plot.err"; rc=$?
if [ $rc -eq 0 ] && png_ok "$T/part/loss.png"; then pass "--plot D writes D/loss.png"
else fail "--plot" "exit $rc: $(tail -1 "$T/plot.err")"; fi
"$VXM" train --plot "$T/nolog" >"$T/plot2.out" 2>"$T/plot2.err"; rc=$?
if [ $rc -eq 1 ] && grep -q "^vxm: $T/nolog/log.csv: " "$T/plot2.err"; then pass "--plot without a log: $(tail -1 "$T/plot2.err")"
else fail "--plot without a log" "exit $rc: $(tail -1 "$T/plot2.err")"; fi
run pe "${DATA[@]}" "${NEW[@]}" --epochs 2 --plot-every 1; rc=$?
if [ $rc -eq 0 ] && png_ok "$T/pe/loss.png" && [ "$(grep -c '^plotted' "$T/pe.out")" -eq 2 ]; then pass "--plot-every 1: loss.png after every epoch"
else fail "--plot-every" "exit $rc: $(last_err pe)"; fi

run hi --pairs "$T/hi.txt" --device cpu "${NEW[@]}" --epochs 1 --steps-per-epoch 1; rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c 'warning' "$T/hi.err")" -eq 1 ] &&
   grep -q "^vxm: warning: $T/h.npy: intensities span \[0, 2\], VoxelMorph expects \[0, 1\]$" "$T/hi.err"; then
    pass "intensities outside [0, 1]: one warning, training goes on"
else fail "intensity warning" "exit $rc: $(head -2 "$T/hi.err" | tr '\n' '|')"; fi
run histream --pairs "$T/hi.txt" --device cpu "${NEW[@]}" --epochs 1 --steps-per-epoch 3 --cache-mb 0; rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c 'warning: .*h.npy: intensities span' "$T/histream.err")" -eq 1 ]; then
    pass "intensity warning once when streaming"
else fail "intensity warning (streaming)" "exit $rc: $(head -2 "$T/histream.err" | tr '\n' '|')"; fi

if command -v script >/dev/null 2>&1; then
    script -qec "$VXM train --model-dir $T/tty ${DATA[*]} ${NEW[*]} --epochs 1" "$T/tty.typescript" >/dev/null 2>&1; rc=$?
    if [ $rc -eq 0 ] && grep -aq $'\r.*epoch 1/1 step 2/2  loss [0-9.e+-]* (mse [^)]*)  [0-9.e+-]* s/step  ETA [0-9]*s  cpu' "$T/tty.typescript"; then
        pass "live line per step on a terminal (epoch, step, terms, s/step, ETA, device)"
    else fail "live line on a terminal" "exit $rc: $(tr '\r' '\n' <"$T/tty.typescript" | grep -a step | head -2 | tr '\n' '|')"; fi
else
    echo "SKIP live line on a terminal: no 'script' command"
fi
