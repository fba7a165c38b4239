#!/usr/bin/env bash
# bench/run.sh — measure seckill against a hello-world Go HTTP server on the
# same machine with the same generator (`seckill bench`), alternating them,
# ROUNDS times each, and print every seckill figure as a ratio to the
# hello-world figure of the same round, with medians.
#
#   bash bench/run.sh                       # embedded backends, defaults below
#   ROUNDS=3 CONNS=64 USERS=20000 bash bench/run.sh
#   MODE=production bash bench/run.sh       # PostgreSQL + Redis + NATS
#   MODE=both bash bench/run.sh             # both, alternating with hello-world
#   MODE=lifecycle ROUNDS=3 bash bench/run.sh   # the order lifecycle (--pay-ratio)
#
# MODE: embedded (default: one `seckill serve` on SQLite, the in-process gate
# and embedded JetStream, a fresh data directory per round), production (one
# `seckill serve` on PostgreSQL + Redis + NATS: a fresh schema, Redis key
# prefix and queue prefix per round, dropped afterwards), or both; or
# lifecycle: one embedded `seckill serve --pay-window PAY_WINDOW` per round
# (its in-process sandbox provider, the default --sweep-every 1s) and
# `seckill bench --pay-ratio PAY_RATIO`: notifications handled per second as
# a ratio to hello-world's requests/s, and the seconds from pay deadline to
# unit back on sale. Its defaults are CONNS 64, USERS 10000, STOCK 1000.
#
# Knobs (environment): ROUNDS (5), CONNS (256), USERS (50000), STOCK (5000),
# TRIES (2), HELLO_SECONDS (5), PAY_WINDOW (10s), PAY_RATIO (0.5),
# OUT (a temp dir: per-round JSON and logs),
# SERVE_FLAGS (extra flags for `seckill serve`, e.g. --pprof: profiles are on
# the operations listener, http://127.0.0.1:$OPS_PORT/debug/pprof/),
# SECKILL_PORT (18080), OPS_PORT (18081), HELLO_PORT (18090).
# Production servers: SECKILL_BENCH_POSTGRES
# (postgres://postgres@127.0.0.1:5432/test?sslmode=disable; psql creates and
# drops the schema), SECKILL_BENCH_REDIS (redis://127.0.0.1:6379; one node),
# SECKILL_BENCH_NATS (nats://127.0.0.1:4222).
# Everything runs on loopback and is bounded in time (ROUND_TIMEOUT per
# command, default 300 s). Needs go and jq; production also psql and redis-cli.
set -euo pipefail

MODE=${MODE:-embedded}
if [ "$MODE" = lifecycle ]; then
	CONNS=${CONNS:-64}
	USERS=${USERS:-10000}
	STOCK=${STOCK:-1000}
fi
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-256}
USERS=${USERS:-50000}
STOCK=${STOCK:-5000}
PAY_WINDOW=${PAY_WINDOW:-10s}
PAY_RATIO=${PAY_RATIO:-0.5}
TRIES=${TRIES:-2}
HELLO_SECONDS=${HELLO_SECONDS:-5}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-300}
OUT=${OUT:-$(mktemp -d /tmp/seckill-bench.XXXXXX)}
HELLO_PORT=${HELLO_PORT:-18090}
SECKILL_PORT=${SECKILL_PORT:-18080}
OPS_PORT=${OPS_PORT:-18081}
ADMIN_PHONE=19900000000
ADMIN_PASSWORD=bench-admin-password
SERVE_FLAGS=${SERVE_FLAGS:-}
PG_URL=${SECKILL_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
REDIS_URL=${SECKILL_BENCH_REDIS:-redis://127.0.0.1:6379}
NATS_URL=${SECKILL_BENCH_NATS:-nats://127.0.0.1:4222}

case $MODE in
embedded) VARIANTS=(embedded) ;;
production) VARIANTS=(production) ;;
both) VARIANTS=(embedded production) ;;
lifecycle) VARIANTS=(lifecycle) ;;
*) echo "MODE must be embedded, production, both or lifecycle, not $MODE" >&2; exit 2 ;;
esac

command -v jq >/dev/null || { echo "bench/run.sh needs jq (apt-get install jq)" >&2; exit 1; }
if [ "$MODE" = production ] || [ "$MODE" = both ]; then
	for c in psql redis-cli; do
		command -v "$c" >/dev/null || { echo "MODE=$MODE needs $c" >&2; exit 1; }
	done
fi
cd "$(dirname "$0")/.."
mkdir -p "$OUT/bin"
go build -o "$OUT/bin/seckill" ./cmd/seckill
go build -o "$OUT/bin/hello" ./bench/hello
SECKILL=$OUT/bin/seckill

PIDS=()
TAG= # the production round in progress, if any
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	if [ -n "$TAG" ]; then sleep 1; forget_production "$TAG"; fi
}
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

# crowd variant round [bench flags]: the purchase crowd against the server
# on SECKILL_PORT.
crowd() {
	timeout "$ROUND_TIMEOUT" "$SECKILL" bench --target "http://127.0.0.1:$SECKILL_PORT" \
		--admin-phone "$ADMIN_PHONE" --admin-password "$ADMIN_PASSWORD" \
		--users "$USERS" --stock "$STOCK" --tries "$TRIES" --conns "$CONNS" \
		"${@:3}" --json --quiet >"$OUT/$1-$2.json"
}

# embedded variant round serve-flags [-- bench flags]: one embedded server
# on a fresh data directory, and the crowd.
embedded() {
	local variant=$1 round=$2 data="$OUT/data-$2" serve=() extra=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do serve+=("$1"); shift; done
	[ $# -gt 0 ] && { shift; extra=("$@"); }
	# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
	SECKILL_ADMIN_PHONE=$ADMIN_PHONE SECKILL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
		"$SECKILL" serve --addr "127.0.0.1:$SECKILL_PORT" --ops-addr "127.0.0.1:$OPS_PORT" --data "$data" \
		--bench-provisioning --ip-rate 0 --log-level warn "${serve[@]}" $SERVE_FLAGS >"$OUT/$variant-$round.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_http "http://127.0.0.1:$OPS_PORT/readyz"
	crowd "$variant" "$round" "${extra[@]}"
	stop "$pid"
	rm -rf "$data"
}

run_embedded() { embedded embedded "$1"; }

# The order lifecycle: the crowd, then PAY_RATIO of the winners pay on the
# sandbox's page, the rest lapse past PAY_WINDOW and are resold.
run_lifecycle() { embedded lifecycle "$1" --pay-window "$PAY_WINDOW" -- --pay-ratio "$PAY_RATIO"; }

# psql_admin SQL: run one statement on the PostgreSQL server, bounded.
psql_admin() {
	PGOPTIONS="-c client_min_messages=warning" PGCONNECT_TIMEOUT=5 timeout 60 psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 -c "$1" >/dev/null
}
drop_schema() { psql_admin "DROP SCHEMA IF EXISTS $1 CASCADE" || echo "could not drop schema $1" >&2; }

# redis_forget PREFIX: delete every key under PREFIX, bounded (one node only).
redis_forget() {
	timeout 120 bash -c 'redis-cli -u "$1" --scan --pattern "$2*" | xargs -r -n 1000 redis-cli -u "$1" del >/dev/null' _ "${REDIS_URL%%\?*}" "$1" ||
		echo "could not delete the Redis keys under $1" >&2
}

# nats_delete_stream NAME: ask JetStream to delete a stream, bounded, with
# the plain NATS protocol (no nats CLI needed); true if it answers success.
nats_delete_stream() {
	local hp=${NATS_URL#nats://}
	hp=${hp%%,*}
	timeout 10 bash -c '
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
		printf "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.benchdel 1\r\nPUB \$JS.API.STREAM.DELETE.%s _INBOX.benchdel 0\r\n\r\n" "$2" >&3
		while read -r line <&3; do
			case $line in
			PING*) printf "PONG\r\n" >&3 ;;
			MSG*) read -r line <&3; [[ $line == *\"success\":true* ]]; exit ;;
			esac
		done
		exit 1' _ "$hp" "$1" || echo "could not delete NATS stream $1" >&2
}

# forget_production TAG: drop what the production round TAG left on the
# servers: its schema, Redis keys and NATS stream.
forget_production() {
	drop_schema "seckill_bench_$1"
	redis_forget "sb_$1:"
	nats_delete_stream "$(tr '[:lower:]' '[:upper:]' <<<"SB_$1")_ORDERS"
}

run_production() { # round
	local tag schema url sep data="$OUT/pdata-$1"
	tag=$(printf 'b%s_%s_%s' "$$" "$1" "$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')")
	schema="seckill_bench_$tag"
	psql_admin "CREATE SCHEMA $schema"
	TAG=$tag
	sep='?'
	[[ $PG_URL == *\?* ]] && sep='&'
	url="$PG_URL${sep}search_path=$schema"
	# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
	SECKILL_ADMIN_PHONE=$ADMIN_PHONE SECKILL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
		"$SECKILL" serve --addr "127.0.0.1:$SECKILL_PORT" --ops-addr "127.0.0.1:$OPS_PORT" --data "$data" \
		--db "$url" --redis "$REDIS_URL" --redis-prefix "sb_$tag:" \
		--nats "$NATS_URL" --queue-prefix "SB_$tag" \
		--bench-provisioning --ip-rate 0 --log-level warn $SERVE_FLAGS >"$OUT/production-$1.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_http "http://127.0.0.1:$OPS_PORT/readyz"
	crowd production "$1"
	stop "$pid"
	forget_production "$tag"
	TAG=
	rm -rf "$data"
}

echo "seckill bench: mode $MODE, $ROUNDS rounds, conns $CONNS, users $USERS, stock $STOCK, tries $TRIES; output in $OUT" >&2
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
summary() { # variant round
	jq -r '"\(.requests_per_second|floor)/s p99 \(.latency.p99_ms)ms, settled \(.settle_seconds)s, ok \(.ok)" +
		if .lifecycle then ", \(.lifecycle.notifications_per_second|floor) notifications/s, units back \(.lifecycle.all_back_after_last_deadline_seconds)s after the last deadline" else "" end' "$OUT/$1-$2.json"
}
for r in $(seq "$ROUNDS"); do
	# Alternate the order, so drift in the machine's state (heat, other
	# tenants) does not favour one side.
	order=(hello "${VARIANTS[@]}")
	if (( r % 2 == 0 )); then order=("${VARIANTS[@]}" hello); fi
	for v in "${order[@]}"; do "run_$v" "$r"; done
	line="round $r: hello $(jq -r '"\(.requests_per_second|floor)/s p99 \(.latency.p99_ms)ms"' "$OUT/hello-$r.json")"
	for v in "${VARIANTS[@]}"; do line+=" | $v $(summary "$v" "$r")"; done
	echo "$line (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# median of the numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

figure() { # variant name jq-expression-on-seckill jq-expression-on-hello
	local ratios=() s h
	for r in $(seq "$ROUNDS"); do
		s=$(jq -r "$3" "$OUT/$1-$r.json")
		h=$(jq -r "$4" "$OUT/hello-$r.json")
		ratios+=("$(awk -v s="$s" -v h="$h" 'BEGIN {printf "%.4f", s/h}')")
	done
	local sm hm
	sm=$(for r in $(seq "$ROUNDS"); do jq -r "$3" "$OUT/$1-$r.json"; done | median)
	hm=$(for r in $(seq "$ROUNDS"); do jq -r "$4" "$OUT/hello-$r.json"; done | median)
	printf "%-24s seckill %10.2f  hello %10.2f  ratio median %7.4f   (rounds: %s)\n" \
		"$2" "$sm" "$hm" "$(printf '%s\n' "${ratios[@]}" | median)" "${ratios[*]}"
}

fails=0
for v in "${VARIANTS[@]}"; do
	echo
	echo "$v: medians of $ROUNDS rounds (ratio = seckill / hello-world of the same round)"
	figure "$v" "requests/s"  .requests_per_second .requests_per_second
	figure "$v" "p50 ms"      .latency.p50_ms      .latency.p50_ms
	figure "$v" "p90 ms"      .latency.p90_ms      .latency.p90_ms
	figure "$v" "p99 ms"      .latency.p99_ms      .latency.p99_ms
	figure "$v" "p99.9 ms"    .latency.p99_9_ms    .latency.p99_9_ms
	figure "$v" "max ms"      .latency.max_ms      .latency.max_ms
	if [ "$v" = lifecycle ]; then
		figure "$v" "notifications/s"   .lifecycle.notifications_per_second .requests_per_second
		figure "$v" "payments created/s" '.lifecycle.payers / .lifecycle.pay_seconds' .requests_per_second
		figure "$v" "pay pages/s"       '.lifecycle.paid / .lifecycle.submit_seconds' .requests_per_second
		for f in first_back_after_deadline_seconds all_back_after_last_deadline_seconds notify_lag_seconds; do
			printf "%-40s median %6.3f s   (rounds: %s)\n" "$f" \
				"$(for r in $(seq "$ROUNDS"); do jq -r ".lifecycle.$f" "$OUT/$v-$r.json"; done | median)" \
				"$(for r in $(seq "$ROUNDS"); do jq -r ".lifecycle.$f" "$OUT/$v-$r.json"; done | tr '\n' ' ')"
		done
	fi
	echo
	for r in $(seq "$ROUNDS"); do
		jq -r "\"$v round $r: 202 \(.outcomes[\"202\"]) 409 \(.outcomes[\"409\"]) 410 \(.outcomes[\"410\"]) 429 \(.outcomes[\"429\"]) 503 \(.outcomes[\"503\"]) other \(.outcomes.other) error \(.outcomes.error); provision \(.provision_seconds)s; settle \(.settle_seconds)s after the crowd, \(.settle_after_last_accept_seconds // 0)s after the last 202; invariants ok: \(.ok)\"" "$OUT/$v-$r.json"
	done
	n=$(jq -s '[.[] | select(.ok != true)] | length' "$OUT"/"$v"-*.json)
	[ "$n" = 0 ] || echo "$v: $n round(s) failed an invariant" >&2
	fails=$((fails + n))
done
[ "$fails" = 0 ] || exit 1
