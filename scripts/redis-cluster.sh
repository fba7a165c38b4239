#!/usr/bin/env bash
# A throwaway 3-master Redis Cluster on loopback, for tests.
#
#   scripts/redis-cluster.sh start DIR [BASEPORT]   # ports BASEPORT..BASEPORT+2 (default 7101)
#   scripts/redis-cluster.sh stop DIR
#
# start runs three redis-server processes (no persistence) with their node
# files, pid files and logs in DIR, joins them into a cluster with no
# replicas, waits until every node reports cluster_state:ok and prints, as
# its last line, the URL to export as SECKILL_TEST_REDIS_CLUSTER:
#   redis://127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
# stop shuts down the nodes recorded in DIR (it leaves DIR itself alone).
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [BASEPORT] | stop DIR" >&2
  exit 2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local dir=$1 base=${2:-7101}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local ports=("$base" "$((base + 1))" "$((base + 2))")
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      echo "redis-cluster: 127.0.0.1:$p is already in use" >&2
      exit 1
    fi
  done
  : >"$dir/ports"
  for p in "${ports[@]}"; do
    rm -f "$dir/nodes-$p.conf"
    redis-server --port "$p" --cluster-enabled yes --cluster-config-file "$dir/nodes-$p.conf" \
      --save "" --appendonly no --daemonize yes --dir "$dir" --bind 127.0.0.1 \
      --pidfile "$dir/redis-$p.pid" --logfile "$dir/redis-$p.log" >/dev/null
    echo "$p" >>"$dir/ports"
  done
  for p in "${ports[@]}"; do
    local up=""
    for _ in $(seq 1 100); do
      if redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null | grep -q PONG; then
        up=1
        break
      fi
      sleep 0.1
    done
    if [ -z "$up" ]; then
      echo "redis-cluster: node 127.0.0.1:$p did not start (see $dir/redis-$p.log)" >&2
      exit 1
    fi
  done

  local addrs=()
  for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 || {
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

  local IFS=,
  echo "redis://${addrs[*]}"
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
  rm -f "$dir/ports"
}

case "${1:-}" in
start)
  [ $# -ge 2 ] && [ $# -le 3 ] || usage
  start "$2" "${3:-}"
  ;;
stop)
  [ $# -eq 2 ] || usage
  stop "$2"
  ;;
*) usage ;;
esac
