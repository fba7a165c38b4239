#!/usr/bin/env bash
# A throwaway 3-master Redis Cluster on loopback, for tests.
#
#   scripts/redis-cluster.sh start DIR [BASEPORT [REPLICAS]]
#   scripts/redis-cluster.sh restart DIR PORT
#   scripts/redis-cluster.sh stop DIR
#
# start runs 3 × (1 + REPLICAS) redis-server processes (no persistence) on
# ports BASEPORT.. (default 7101; REPLICAS default 0: ports 7101..7103) with
# their node files, pid files and logs in DIR, joins them into a cluster of
# three masters with REPLICAS replicas each, waits until every node reports
# cluster_state:ok (and every replica is in sync with its master) and
# prints, as its last line, the URL to export as SECKILL_TEST_REDIS_CLUSTER:
#   redis://127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
# REDIS_CLUSTER_NODE_TIMEOUT (ms) sets cluster-node-timeout (Redis's
# default 15000 if unset): fault drills make it small so that a replica
# takes over a dead master within a second or two.
# restart starts the node of PORT again (after a drill killed it) on its
# node file and with no data: it rejoins the cluster, as a replica if its
# slots were taken over meanwhile.
# stop shuts down the nodes recorded in DIR (it leaves DIR itself alone).
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [BASEPORT [REPLICAS]] | restart DIR PORT | stop DIR" >&2
  exit 2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# node_start starts the node of port $2 with its files in $1 (no data).
node_start() {
  local dir=$1 p=$2 extra=()
  if [ -f "$dir/node-timeout" ]; then
    # A replica may always take over (validity factor 0): a drill kills
    # masters whose replicas lost the link a while ago.
    extra=(--cluster-node-timeout "$(cat "$dir/node-timeout")" --cluster-replica-validity-factor 0)
  fi
  redis-server --port "$p" --cluster-enabled yes --cluster-config-file "$dir/nodes-$p.conf" \
    --save "" --appendonly no --daemonize yes --dir "$dir" --bind 127.0.0.1 \
    --pidfile "$dir/redis-$p.pid" --logfile "$dir/redis-$p.log" "${extra[@]}" >/dev/null
}

# node_wait waits until the node of port $2 answers PING.
node_wait() {
  local dir=$1 p=$2
  for _ in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null | grep -q PONG; then
      return 0
    fi
    sleep 0.1
  done
  echo "redis-cluster: node 127.0.0.1:$p did not start (see $dir/redis-$p.log)" >&2
  exit 1
}

start() {
  local dir=$1 base=${2:-7101} replicas=${3:-0}
  case "$replicas" in
  0 | 1 | 2) ;;
  *) usage ;;
  esac
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local ports=()
  for i in $(seq 0 $((3 * (1 + replicas) - 1))); do ports+=("$((base + i))"); done
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      echo "redis-cluster: 127.0.0.1:$p is already in use" >&2
      exit 1
    fi
  done
  rm -f "$dir/node-timeout"
  if [ -n "${REDIS_CLUSTER_NODE_TIMEOUT:-}" ]; then
    echo "$REDIS_CLUSTER_NODE_TIMEOUT" >"$dir/node-timeout"
  fi
  : >"$dir/ports"
  for p in "${ports[@]}"; do
    rm -f "$dir/nodes-$p.conf"
    node_start "$dir" "$p"
    echo "$p" >>"$dir/ports"
  done
  for p in "${ports[@]}"; do
    node_wait "$dir" "$p"
  done

  local addrs=()
  for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 || {
    cat "$dir/create.log" >&2
    exit 1
  }

  for p in "${ports[@]}"; do
    local ok=""
    for _ in $(seq 1 200); do
      if redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
        ok=1
        break
      fi
      sleep 0.1
    done
    if [ -z "$ok" ]; then
      echo "redis-cluster: node 127.0.0.1:$p did not reach cluster_state:ok" >&2
      exit 1
    fi
  done
  # Every node must also know all three masters, or a client seeded on it
  # would see a partial slot map.
  for p in "${ports[@]}"; do
    for _ in $(seq 1 200); do
      [ "$(redis-cli -h 127.0.0.1 -p "$p" cluster nodes | grep -c master)" -ge 3 ] && break
      sleep 0.1
    done
  done
  # And every replica must be in sync, or a failover could find none ready.
  for p in "${ports[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" info replication | grep -q '^role:slave' || continue
    local synced=""
    for _ in $(seq 1 200); do
      if redis-cli -h 127.0.0.1 -p "$p" info replication | grep -q '^master_link_status:up'; then
        synced=1
        break
      fi
      sleep 0.1
    done
    if [ -z "$synced" ]; then
      echo "redis-cluster: replica 127.0.0.1:$p did not sync with its master" >&2
      exit 1
    fi
  done

  local IFS=,
  echo "redis://${addrs[*]}"
}

restart() {
  local dir p=$2
  dir=$(cd "$1" && pwd)
  grep -qx "$p" "$dir/ports" || {
    echo "redis-cluster: no node on port $p in $dir" >&2
    exit 1
  }
  if port_open "$p"; then
    echo "redis-cluster: 127.0.0.1:$p is still in use" >&2
    exit 1
  fi
  node_start "$dir" "$p"
  node_wait "$dir" "$p"
}

stop() {
  local dir=$1
  [ -f "$dir/ports" ] || return 0
  while read -r p; do
    [ -n "$p" ] || continue
    redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done <"$dir/ports"
  while read -r p; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 50); do
      port_open "$p" || break
      sleep 0.1
    done
  done <"$dir/ports"
  # A node that did not go (stopped, hung) is killed, if its pid file
  # still names a redis-server of that port.
  while read -r p; do
    [ -n "$p" ] || continue
    local pid
    pid=$(cat "$dir/redis-$p.pid" 2>/dev/null) || continue
    if port_open "$p" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server.*:$p"; then
      kill -CONT "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$dir/ports"
  rm -f "$dir/ports"
}

case "${1:-}" in
start)
  [ $# -ge 2 ] && [ $# -le 4 ] || usage
  start "$2" "${3:-}" "${4:-}"
  ;;
restart)
  [ $# -eq 3 ] || usage
  restart "$2" "$3"
  ;;
stop)
  [ $# -eq 2 ] || usage
  stop "$2"
  ;;
*) usage ;;
esac
