# Sourced by the cohort training tests (t_train_demo.sh, t_synthmorph_train.sh): the bench/make_cohort pairs in
# $T/c, held-out Dice of a model on them, and the two checks both tests make.
# cohort_make NAME MAKE_COHORT_ARGS...: 64x64 slices of the shared scan (factor 3, warps up to 9 mm, seed 1) plus
# the given arguments; exits the test with SKIP when ../shared is absent, returns 1 after a FAIL line.
cohort_make() {
    local name=$1 S=${VXM_SHARED:-../shared}/data/scans GEN=build/bench/make_cohort
    shift
    if [ ! -f "$S/test_scan.npz" ] || [ ! -f "$S/labels.npz" ]; then
        echo "SKIP $name: $S/test_scan.npz not found (set VXM_SHARED)"; exit 0
    fi
    [ -x "$GEN" ] || { echo "FAIL $name: $GEN not built (make tests builds it)"; return 1; }
    if ! "$GEN" --scan "$S/test_scan.npz" --labels "$S/labels.npz" --out "$T/c" --factor 3 --shape 64 64 --amp 9 \
        --seed 1 "$@" >"$T/gen.log" 2>&1; then
        echo "FAIL $name cohort: $(tail -1 "$T/gen.log")"; return 1
    fi
}
# cohort_dice NAME UNTRAINED TRAINED GAIN WHAT: runs vxm test with both models; PASS/FAIL lines "NAME untrained"
# (the untrained model, flow kernel ~ N(0, 1e-5), is the identity for Dice: within 0.005 of "before") and "NAME
# trained" (the trained model's mean Dice exceeds the untrained one's by >= GAIN; WHAT describes the training).
cohort_avg() { # MODEL -> "after before" mean Dice over $T/c/test_pairs.txt
    ./vxm test --model "$1" --pairs "$T/c/test_pairs.txt" --img-prefix "$T/c/" --img-suffix _img.nii.gz \
        --seg-prefix "$T/c/" --seg-suffix _seg.nii.gz --device cpu --threads 2 >"$T/test_$(basename "$1" .h5).log" 2>&1 &&
    awk '/^Avg Dice:/ { print $3, $8 }' "$T/test_$(basename "$1" .h5).log"
}
cohort_dice() {
    local name=$1 d0 d1 before
    read -r d0 before <<<"$(cohort_avg "$2")"
    read -r d1 _ <<<"$(cohort_avg "$3")"
    if [ -z "${d0:-}" ] || [ -z "${d1:-}" ]; then
        echo "FAIL $name dice: vxm test failed ($(tail -1 "$T"/test_*.log | tr '\n' ' '))"; return 1
    fi
    if awk -v a="$d0" -v b="$before" 'BEGIN { d = a - b; exit !(d <= 0.005 && d >= -0.005) }'; then
        echo "PASS $name untrained: mean Dice $d0 = before registration $before"
    else
        echo "FAIL $name untrained: mean Dice $d0, before registration $before (want within 0.005)"
    fi
    if awk -v a="$d0" -v b="$d1" -v g="$4" 'BEGIN { exit !(b - a >= g) }'; then
        echo "PASS $name trained: $5: mean Dice $d0 (untrained) -> $d1 (want >= +$4)"
    else
        echo "FAIL $name trained: $5: mean Dice $d0 (untrained) -> $d1 (want >= +$4)"
    fi
}
