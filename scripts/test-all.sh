#!/bin/sh
# The README's test command (and CI's): installs what is missing, builds
# with -Werror and runs every test; runs make distcheck on the release
# tarball; builds again with ASan+UBSan (clang) and runs every test again;
# builds the libFuzzer targets and runs each for FUZZ_SECONDS. Ends with
# one summary line "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
sh scripts/install-deps.sh || exit 1
status=0

run_check() { # DIR [make args...]
    dir=$1
    shift
    (cd "$dir" && make -j2 check "$@") || status=1
}

echo "== build (gcc, -Werror) and make check"
sh scripts/build.sh build --enable-werror || exit 1
run_check build

# The release tarball: make distcheck builds it, then configures, builds,
# runs make check, installs and uninstalls it out of tree from a read-only
# copy. A plain build (no -Werror, no sanitizers); counts as one check.
echo "== make distcheck"
distcheck_pass=0
distcheck_fail=0
if (cd build && unset DISTCHECK_CONFIGURE_FLAGS; make -j2 distcheck) \
    >build/distcheck.log 2>&1; then
    distcheck_pass=1
    echo "PASS: make distcheck"
else
    distcheck_fail=1
    status=1
    echo "FAIL: make distcheck (log: build/distcheck.log)"
    # A failed make check inside distcheck leaves its test-suite.log behind.
    cat build/postern-*/_build/sub/test-suite.log 2>/dev/null | head -100
    tail -40 build/distcheck.log
fi

echo "== build (clang, ASan+UBSan) and make check again, daemons included"
CC=clang sh scripts/build.sh build-san --enable-werror --enable-sanitizers || exit 1
# Every process (posternd's workers too) writes its sanitizer report to a
# file, so a fault in a worker that no client notices still fails the run.
asan_dir=$(mktemp -d)
# posternd's workers and queue manager run as server.user (nobody) and open
# their report files only when they have something to report: they must be
# able to create them here, or the report is lost and the process just dies.
chmod 1777 "$asan_dir"
# Leaks inside Debian's libraries (each explained in the file) are suppressed.
LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export LSAN_OPTIONS
ASAN_OPTIONS="log_path=$asan_dir/asan" UBSAN_OPTIONS="log_path=$asan_dir/ubsan:print_stacktrace=1" \
    run_check build-san
san_reports=0
for f in "$asan_dir"/*; do
    [ -e "$f" ] || continue
    san_reports=$((san_reports + 1))
    echo "FAIL: sanitizer report $f"
    head -40 "$f"
done
rm -rf "$asan_dir"
[ "$san_reports" -eq 0 ] || status=1

echo "== libFuzzer targets, $FUZZ_SECONDS s each"
CC=clang sh scripts/build.sh build-fuzz --enable-fuzzers --enable-sanitizers || exit 1
fuzz_pass=0
fuzz_fail=0
for t in build-fuzz/tests/fuzz/fuzz-*; do
    name=${t##*/fuzz-}
    work=$(mktemp -d)
    if "$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 "$work" \
        "tests/fuzz/corpus/$name" >"$work.log" 2>&1; then
        fuzz_pass=$((fuzz_pass + 1))
        echo "PASS: fuzz-$name"
    else
        fuzz_fail=$((fuzz_fail + 1))
        status=1
        echo "FAIL: fuzz-$name"
        tail -40 "$work.log"
    fi
    rm -rf "$work" "$work.log"
done

# One closing line over every test run above.
sum() { cat build/test-suite.log build-san/test-suite.log 2>/dev/null |
        sed -n "s/^# $1: *//p" | awk '{s += $1} END {print s + 0}'; }
pass=$(( $(sum PASS) + fuzz_pass + distcheck_pass ))
fail=$(( $(sum FAIL) + $(sum ERROR) + fuzz_fail + san_reports + distcheck_fail ))
skip=$(sum SKIP)
[ "$fail" -eq 0 ] || status=1
echo "$pass passed, $fail failed, $skip skipped"
exit $status
