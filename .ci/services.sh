# Sourced by .ci/run: makes sure the servers the integration suites need are
# running on loopback, installing them from Debian's packages where missing,
# and exports their URLs as SECKILL_TEST_*.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    sleep 0.2
  done
  echo "ci: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

apt_updated=""
need_pkg() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

ensure_nats() {
  if ! port_open 4222; then
    need_pkg nats-server nats-server
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
    wait_port nats 4222
  fi
  export SECKILL_TEST_NATS=nats://127.0.0.1:4222
}

ensure_nats
