# Sourced by test scripts: the bad-input check every vxm command must pass (one stderr line "vxm: <file>:
# <problem>", a non-zero exit, no output file left behind).
#   EXPECT_PREFIX  the test group printed after PASS/FAIL ("refine", "synth")
#   EXPECT_OUTPUTS glob patterns of the outputs that must not exist afterwards (removed before the run)
#   T              the test's scratch directory (its temporary files .*tmp* must not remain either)
# expect NAME PATTERN -- vxm args...: runs $VXM with the args; PATTERN is a grep -E pattern after "^vxm: ".
expect() {
    local name=$1 pattern=$2 why=""
    shift 3
    # shellcheck disable=SC2086 # the globs are meant to expand
    rm -f $EXPECT_OUTPUTS
    if "$VXM" "$@" >"$T/stdout" 2>"$T/stderr"; then why="exit status 0"
    elif [ "$(wc -l <"$T/stderr")" -ne 1 ]; then why="stderr: $(head -3 "$T/stderr" | tr '\n' '|')"
    elif ! grep -Eq "^vxm: $pattern" "$T/stderr"; then why="'$(cat "$T/stderr")' does not match '$pattern'"
    # shellcheck disable=SC2086
    elif ls $EXPECT_OUTPUTS "$T"/.*tmp* >/dev/null 2>&1; then why="output file left behind"
    fi
    if [ -n "$why" ]; then echo "FAIL $EXPECT_PREFIX $name: $why"; else echo "PASS $EXPECT_PREFIX $name ($(cat "$T/stderr"))"; fi
}
