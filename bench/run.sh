#!/usr/bin/env bash
# bench/run.sh — measure seckill (embedded backends) against a hello-world Go
# HTTP server on the same machine with the same generator (`seckill bench`),
# alternating the two, ROUNDS times each, and print every seckill figure as a
# ratio to the hello-world figure of the same round, with medians.
#
#   bash bench/run.sh                       # defaults below
#   ROUNDS=3 CONNS=64 USERS=20000 bash bench/run.sh
#
# Knobs (environment): ROUNDS (5), CONNS (256), USERS (50000), STOCK (5000),
# TRIES (2), HELLO_SECONDS (5), OUT (a temp dir: per-round JSON and logs).
# Everything runs on loopback and is bounded in time (ROUND_TIMEOUT per
# command, default 300 s). Needs go and jq.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-256}
USERS=${USERS:-50000}
STOCK=${STOCK:-5000}
TRIES=${TRIES:-2}
HELLO_SECONDS=${HELLO_SECONDS:-5}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-300}
OUT=${OUT:-$(mktemp -d /tmp/seckill-bench.XXXXXX)}
HELLO_PORT=${HELLO_PORT:-18090}
SECKILL_PORT=${SECKILL_PORT:-18080}
ADMIN_PHONE=19900000000
ADMIN_PASSWORD=bench-admin-password

command -v jq >/dev/null || { echo "bench/run.sh needs jq (apt-get install jq)" >&2; exit 1; }
cd "$(dirname "$0")/.."
mkdir -p "$OUT/bin"
go build -o "$OUT/bin/seckill" ./cmd/seckill
go build -o "$OUT/bin/hello" ./bench/hello
SECKILL=$OUT/bin/seckill

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# wait_http URL: until it answers 200, at most 30 s.
wait_http() {
	for _ in $(seq 300); do
		curl -fs -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "no answer from $1" >&2
	return 1
}

# stop PID: SIGTERM, then wait (bounded) for it to exit.
stop() {
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
}

run_hello() { # round
	"$OUT/bin/hello" --addr "127.0.0.1:$HELLO_PORT" >"$OUT/hello-$1.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_http "http://127.0.0.1:$HELLO_PORT/"
	timeout "$ROUND_TIMEOUT" "$SECKILL" bench --url-only "http://127.0.0.1:$HELLO_PORT/" \
		--conns "$CONNS" --duration "${HELLO_SECONDS}s" --json --quiet >"$OUT/hello-$1.json"
	stop "$pid"
}

run_seckill() { # round
	local data="$OUT/data-$1"
	SECKILL_ADMIN_PHONE=$ADMIN_PHONE SECKILL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
		"$SECKILL" serve --addr "127.0.0.1:$SECKILL_PORT" --data "$data" \
		--bench-provisioning --ip-rate 0 --log-level warn >"$OUT/seckill-$1.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_http "http://127.0.0.1:$SECKILL_PORT/readyz"
	timeout "$ROUND_TIMEOUT" "$SECKILL" bench --target "http://127.0.0.1:$SECKILL_PORT" \
		--admin-phone "$ADMIN_PHONE" --admin-password "$ADMIN_PASSWORD" \
		--users "$USERS" --stock "$STOCK" --tries "$TRIES" --conns "$CONNS" \
		--json --quiet >"$OUT/seckill-$1.json"
	stop "$pid"
	rm -rf "$data"
}

echo "seckill bench: $ROUNDS rounds, conns $CONNS, users $USERS, stock $STOCK, tries $TRIES; output in $OUT" >&2
for r in $(seq "$ROUNDS"); do
	# Alternate which goes first, so drift in the machine's state (heat,
	# other tenants) does not favour one side.
	if (( r % 2 )); then run_hello "$r"; run_seckill "$r"; else run_seckill "$r"; run_hello "$r"; fi
	echo "round $r: hello $(jq -r '"\(.requests_per_second|floor)/s p99 \(.latency.p99_ms)ms"' "$OUT/hello-$r.json")" \
		"| seckill $(jq -r '"\(.requests_per_second|floor)/s p99 \(.latency.p99_ms)ms, settled \(.settle_seconds)s, ok \(.ok)"' "$OUT/seckill-$r.json")" >&2
done

# median of the numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

figure() { # name jq-expression-on-seckill jq-expression-on-hello
	local ratios=() s h
	for r in $(seq "$ROUNDS"); do
		s=$(jq -r "$2" "$OUT/seckill-$r.json")
		h=$(jq -r "$3" "$OUT/hello-$r.json")
		ratios+=("$(awk -v s="$s" -v h="$h" 'BEGIN {printf "%.3f", s/h}')")
	done
	local sm hm
	sm=$(for r in $(seq "$ROUNDS"); do jq -r "$2" "$OUT/seckill-$r.json"; done | median)
	hm=$(for r in $(seq "$ROUNDS"); do jq -r "$3" "$OUT/hello-$r.json"; done | median)
	printf "%-24s seckill %10.2f  hello %10.2f  ratio median %6.3f   (rounds: %s)\n" \
		"$1" "$sm" "$hm" "$(printf '%s\n' "${ratios[@]}" | median)" "${ratios[*]}"
}

echo
echo "medians of $ROUNDS rounds (ratio = seckill / hello-world of the same round)"
figure "requests/s"  .requests_per_second .requests_per_second
figure "p50 ms"      .latency.p50_ms      .latency.p50_ms
figure "p90 ms"      .latency.p90_ms      .latency.p90_ms
figure "p99 ms"      .latency.p99_ms      .latency.p99_ms
figure "p99.9 ms"    .latency.p99_9_ms    .latency.p99_9_ms
figure "max ms"      .latency.max_ms      .latency.max_ms
echo
for r in $(seq "$ROUNDS"); do
	jq -r "\"round $r: 202 \(.outcomes[\"202\"]) 409 \(.outcomes[\"409\"]) 410 \(.outcomes[\"410\"]) 429 \(.outcomes[\"429\"]) 503 \(.outcomes[\"503\"]) other \(.outcomes.other) error \(.outcomes.error); provision \(.provision_seconds)s; settle \(.settle_seconds)s after the crowd, \(.settle_after_last_accept_seconds)s after the last 202; invariants ok: \(.ok)\"" "$OUT/seckill-$r.json"
done
fails=$(jq -s '[.[] | select(.ok != true)] | length' "$OUT"/seckill-*.json)
[ "$fails" = 0 ] || { echo "$fails seckill round(s) failed an invariant" >&2; exit 1; }
