#!/usr/bin/env bash
# The whole test suite, every package under the race detector.
#
# Integration suites that need a real server (NATS, and later PostgreSQL,
# MySQL, Redis) read its URL from SECKILL_TEST_* and skip when it is absent;
# this script lists what was skipped at the end. Under CI=true an absent
# server fails its suite instead. Extra arguments go to `go test`.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
go test -race -count=1 -v "$@" ./... >"$log" 2>&1
status=$?

# Package results.
grep -E '^(ok|FAIL|\?)[[:space:]]' "$log"
if [ $status -ne 0 ]; then
  echo
  echo "=== failures (test output without passing tests) ==="
  grep -vE '^(=== (RUN|PAUSE|CONT|NAME)|[[:space:]]*--- PASS)' "$log" | grep -vE '^(ok|\?)[[:space:]]' | tail -n 400
fi

# Skipped suites, with the reason each gave.
# go test -v prints a test's skip message before its "--- SKIP" line.
skips=$(awk '/^=== RUN/ {msg=""; next}
  /^[[:space:]]+[^[:space:]]+_test\.go:[0-9]+:/ {msg=$0; sub(/^[[:space:]]+/, "", msg); next}
  /--- SKIP:/ {print "  " $3 ": " msg}' "$log")
if [ -n "$skips" ]; then
  echo
  echo "skipped:"
  echo "$skips"
fi

passed=$(grep -cE '^[[:space:]]*--- PASS' "$log")
failed=$(grep -cE '^[[:space:]]*--- FAIL' "$log")
skipped=$(grep -cE '^[[:space:]]*--- SKIP' "$log")
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
