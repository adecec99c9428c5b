#!/usr/bin/env bash
# Runs one libFuzzer target (tests/fuzz/README.md): tests/fuzz/run.sh TARGET SECONDS CORPUS ARTIFACTS
# Fuzzes for SECONDS from the committed seeds and saved crashes, adding new inputs to CORPUS, and prints one line
# "PASS TARGET: ..." or "FAIL TARGET: ..." (exit status 1).  fuzz_h5model runs in fork mode and goes on after a
# crash: a fault whose innermost frame is inside libhdf5 itself (Debian's 1.10, no bounds checks on some corrupt
# global heap and cache entries: crashes, endless loops, huge allocations and leaks on error paths) is an
# upstream bug that no check of ours can prevent; such inputs are counted and kept in ARTIFACTS as upstream-*,
# every other finding is a FAIL.
set -u
t=$1 secs=$2 corpus=$3 art=$4
bin=build/fuzz/$t
mkdir -p "$corpus" "$art"
dirs=("tests/fuzz/seeds/$t")
[ -n "$(ls -A "tests/fuzz/crashes/$t" 2>/dev/null)" ] && dirs+=("tests/fuzz/crashes/$t")
log=$art/$t.log
opts=(-max_total_time="$secs" -timeout=2 -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$art/$t-")
[ "$t" = fuzz_h5model ] && opts+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
rm -f "$art/$t"-crash-* "$art/$t"-leak-*
"$bin" "${opts[@]}" "$corpus" "${dirs[@]}" >"$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
[ -z "$execs" ] && execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
upstream=0 ours=""
shopt -s nullglob
# The innermost frame that is in our sources or in libhdf5 (sanitizer, libFuzzer, libc and allocator frames
# skipped) tells whose fault it is; for a bad access, the memory must not be ours either ("allocated by").
where() { grep -E '^ *#[0-9]+ ' "$1" | grep -m1 -E 'libhdf5|/src/|/tests/'; }
alloc_ours() { sed -n '/allocated by/,/^$/p' "$1" | grep -E '^ *#[0-9]+ ' | grep -m1 -E 'libhdf5|/src/|/tests/' |
               grep -qv libhdf5; }
for a in "$art/$t"-crash-* "$art/$t"-leak-* "$art/$t"-timeout-* "$art/$t"-oom-*; do
    if timeout 120 "$bin" -timeout=2 -close_fd_mask=2 "$a" >"$a.replay" 2>&1; then
        # Our code is deterministic; in fork mode a report that no single input reproduces (e.g. leaks counted
        # at the exit of a job that ran thousands of inputs) is libhdf5's state carried across inputs.
        if [ "$t" = fuzz_h5model ]; then
            upstream=$((upstream + 1)); mv "$a" "$art/upstream-$(basename "$a")"; rm -f "$a.replay"
        else
            ours="$ours $a(does not reproduce)"
        fi
    elif [ "$t" = fuzz_h5model ] && where "$a.replay" | grep -q 'libhdf5' && ! alloc_ours "$a.replay"; then
        upstream=$((upstream + 1)); mv "$a" "$art/upstream-$(basename "$a")"; mv "$a.replay" "$art/upstream-$(basename "$a").replay"
    else
        ours="$ours $a"
    fi
done
if [ -n "$ours" ] || { [ "$rc" -ne 0 ] && [ "$t" != fuzz_h5model ]; }; then
    echo "FAIL $t: finding(s):${ours:- see $log} -- $(grep -m1 -E 'SUMMARY|ERROR' "$log")"
    exit 1
fi
note=""
[ "$upstream" -gt 0 ] && note=", $upstream crash(es) inside libhdf5 (upstream, kept as $art/upstream-*)"
echo "PASS $t: ${execs:-?} executions in $secs s$note"
