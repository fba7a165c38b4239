#!/usr/bin/env bash
# bench/ws-idle.sh — what idle WebSockets cost `seckill serve`: ROUNDS times,
# start the embedded server on a fresh data directory, run
# `seckill bench --ws-idle SOCKETS` against it (provision buyers, open the
# sockets, hold them idle, read the /metrics of the server's operations
# listener before and after),
# stop the server; then print the medians.
#
#   bash bench/ws-idle.sh                   # 3 rounds of 10,000 sockets
#   ROUNDS=5 SOCKETS=20000 bash bench/ws-idle.sh
#
# Knobs (environment): ROUNDS (3), SOCKETS (10000), PER_USER (4), HOLD (5s),
# CONNS (64 handshakes at a time), OUT (a temp dir: per-round JSON and logs),
# SECKILL_PORT (18080), OPS_PORT (18081, the operations listener). The generator holds SOCKETS client sockets as well:
# each process needs SOCKETS file descriptors (Go raises the soft limit to
# the hard one). Needs go, curl and jq.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SOCKETS=${SOCKETS:-10000}
PER_USER=${PER_USER:-4}
HOLD=${HOLD:-5s}
CONNS=${CONNS:-64}
OUT=${OUT:-$(mktemp -d /tmp/seckill-ws.XXXXXX)}
SECKILL_PORT=${SECKILL_PORT:-18080}
OPS_PORT=${OPS_PORT:-18081}
ADMIN_PHONE=19900000000
ADMIN_PASSWORD=bench-admin-password

command -v jq >/dev/null || { echo "bench/ws-idle.sh needs jq (apt-get install jq)" >&2; exit 1; }
cd "$(dirname "$0")/.."
mkdir -p "$OUT/bin"
go build -o "$OUT/bin/seckill" ./cmd/seckill
SECKILL=$OUT/bin/seckill

PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null || true' EXIT

echo "ws-idle: $ROUNDS rounds of $SOCKETS sockets ($PER_USER per buyer, held $HOLD); output in $OUT" >&2
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$ROUNDS"); do
	data="$OUT/data-$r"
	SECKILL_ADMIN_PHONE=$ADMIN_PHONE SECKILL_ADMIN_PASSWORD=$ADMIN_PASSWORD \
		"$SECKILL" serve --addr "127.0.0.1:$SECKILL_PORT" --ops-addr "127.0.0.1:$OPS_PORT" --data "$data" \
		--bench-provisioning --ip-rate 0 --ws-per-address 0 --max-conns-per-ip 0 --max-conns 0 --log-level warn >"$OUT/serve-$r.log" 2>&1 &
	PID=$!
	for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$OPS_PORT/readyz" && break; sleep 0.1; done
	timeout 300 "$SECKILL" bench --target "http://127.0.0.1:$SECKILL_PORT" --ops "http://127.0.0.1:$OPS_PORT" \
		--admin-phone "$ADMIN_PHONE" --admin-password "$ADMIN_PASSWORD" \
		--ws-idle "$SOCKETS" --ws-per-user "$PER_USER" --ws-hold "$HOLD" --conns "$CONNS" \
		--json --quiet >"$OUT/ws-$r.json"
	kill -TERM "$PID"
	for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$PID" 2>/dev/null || true
	PID=
	rm -rf "$data"
	jq -r 'def r1: . * 10 | round / 10;
		.ws | "round '"$r"': RSS \(.before.rss_bytes / 1048576 | r1) → \(.after.rss_bytes / 1048576 | r1) MiB, \(.rss_per_socket_bytes / 1024 | r1) KiB/socket, \(.opened) open, \(.closed_early) closed early"' "$OUT/ws-$r.json" >&2
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# median of one figure over the rounds
median() { jq -s "[.[].ws.$1] | sort | .[length/2|floor]" "$OUT"/ws-*.json; }
mib() { awk '{printf "%.1f MiB", $1/1048576}'; }
kib() { awk '{printf "%.1f KiB", $1/1024}'; }
echo "medians of $ROUNDS rounds, $SOCKETS idle sockets:"
echo "  RSS before        $(median before.rss_bytes | mib)"
echo "  RSS with sockets  $(median after.rss_bytes | mib)"
echo "  RSS per socket    $(median rss_per_socket_bytes | kib)"
echo "  heap per socket   $(median heap_per_socket_bytes | kib)"
echo "  stack per socket  $(median stack_per_socket_bytes | kib)"
echo "  goroutines        $(median before.goroutines) → $(median after.goroutines)"
