#!/usr/bin/env bash
# Bounded fuzzing (issue 11; tests/fuzz/README.md): builds the libFuzzer targets (make fuzz-build; SKIP without
# clang), replays every committed seed and every saved crash through its target, then fuzzes each target for
# FUZZ_TEST_SECONDS (default 3) from its seeds into a scratch corpus under tests/out/fuzz (tests/fuzz/run.sh; the
# committed seeds are never written).  One line per target: PASS (executions, inputs replayed) or FAIL with the
# sanitizer's summary; a new finding's input is left in tests/out/fuzz/.
set -u
cd "$(dirname "$0")/.."
secs="${FUZZ_TEST_SECONDS:-3}"
out=tests/out/fuzz
if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
    echo "SKIP fuzz: clang is not installed (make deps installs it); the libFuzzer targets were not run"
    exit 0
fi
mkdir -p "$out"
if ! make -s -j2 fuzz-build >"$out/build.log" 2>&1; then
    echo "FAIL fuzz: make fuzz-build failed (see $out/build.log)"
    tail -5 "$out/build.log"
    exit 1
fi
shopt -s nullglob
rc=0
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    bin=build/fuzz/$t
    files=(tests/fuzz/seeds/"$t"/* tests/fuzz/crashes/"$t"/*)
    log="$out/$t.log"
    if [ ${#files[@]} -eq 0 ]; then
        echo "FAIL $t: no seeds in tests/fuzz/seeds/$t"; rc=1; continue
    fi
    # Replay: with file arguments libFuzzer runs each file once and fails on the first crash or leak.
    if ! "$bin" -close_fd_mask=2 "${files[@]}" >"$log" 2>&1; then
        echo "FAIL $t: a seed or saved crash fails again: $(grep -m1 -E 'SUMMARY|ERROR' "$log")"
        rc=1; continue
    fi
    rm -rf "$out/corpus-$t"
    res=$(bash tests/fuzz/run.sh "$t" "$secs" "$out/corpus-$t" "$out")
    case $res in
        PASS*) echo "$res, ${#files[@]} seeds/crashes replayed" ;;
        *) echo "${res:-FAIL $t: tests/fuzz/run.sh printed nothing}"; rc=1 ;;
    esac
done
exit $rc
