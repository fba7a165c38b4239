#!/usr/bin/env bash
# The whole test suite, every package under the race detector.
#
# Integration suites that need a real server (NATS, and later PostgreSQL,
# MySQL, Redis) read its URL from SECKILL_TEST_* and skip when it is absent;
# this script lists what was skipped at the end. Under CI=true an absent
# server fails its suite instead. Extra arguments go to `go test`.
set -uo pipefail
cd "$(dirname "$0")/.."

log=test-output.log # the whole -v output; kept for reading failures
go test -race -count=1 -v "$@" ./... >"$log" 2>&1
status=$?

# Package results.
grep -E '^(ok|FAIL|\?)[[:space:]]' "$log"
if [ $status -ne 0 ]; then
  echo
  echo "=== failures: what the failing tests said (all output is in $log) ==="
  # Test files' own lines (not the servers' logs they relay), failures, panics.
  grep -E '^[[:space:]]*--- FAIL|^[[:space:]]+[A-Za-z0-9_]+_test\.go:[0-9]+: |^panic:|^FAIL' "$log" |
    grep -vE '_test\.go:[0-9]+: (server: |time=)' | tail -n 300
fi

# Skipped suites, with the reason each gave.
# go test -v prints a test's skip message under its "=== RUN" (or, when
# parallel tests interleave, "=== CONT"/"=== NAME") line, and subtests'
# "--- SKIP" lines together after their parent's result.
skips=$(awk '/^=== (RUN|CONT|NAME) / {cur=$3; next}
  /^[[:space:]]+[^[:space:]]+_test\.go:[0-9]+:/ {m=$0; sub(/^[[:space:]]+/, "", m); msg[cur]=m; next}
  /--- SKIP:/ {print "  " $3 ": " msg[$3]}' "$log")
if [ -n "$skips" ]; then
  echo
  echo "skipped:"
  echo "$skips"
fi
missing=$(grep -oE 'skipped: SECKILL_TEST_[A-Z_]+ is not set' "$log" | cut -d' ' -f2 | sort -u | paste -sd' ' -)
if [ -n "$missing" ]; then
  echo
  echo "integration servers not given, their suites skipped: $missing"
fi

passed=$(grep -cE '^[[:space:]]*--- PASS' "$log")
failed=$(grep -cE '^[[:space:]]*--- FAIL' "$log")
skipped=$(grep -cE '^[[:space:]]*--- SKIP' "$log")
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
