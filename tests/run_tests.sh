#!/usr/bin/env bash
# Runs every test program (build/tests/test_*) and shell test (tests/t_*.sh) from the repository root and
# ends with one line "N passed, N failed[, N skipped]".  Exit status is non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
mkdir -p tests/out
export RUSTICL_ENABLE="${RUSTICL_ENABLE:-llvmpipe}"
pass=0; fail=0; skip=0
log=tests/out/test.log; : > "$log"
run_one() {
    local name=$1; shift
    local out rc t0=$SECONDS
    out=$("$@" 2>&1); rc=$?
    echo "== $name took $((SECONDS - t0)) s" >>"$log"
    printf '%s\n' "$out" | tee -a "$log" | grep -E '^(PASS|FAIL|SKIP) '
    local p f s
    p=$(printf '%s\n' "$out" | grep -c '^PASS ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    s=$(printf '%s\n' "$out" | grep -c '^SKIP ')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited with status $rc"; printf '%s\n' "$out" | tail -5; f=1
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
}
for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    run_one "$(basename "$t")" "$t"
done
for t in tests/t_*.sh; do
    [ -f "$t" ] || continue
    echo "== $(basename "$t")"
    run_one "$(basename "$t")" bash "$t"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
