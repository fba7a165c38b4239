# Sourced by .ci/run: makes sure the servers the integration suites need are
# running on loopback — PostgreSQL, MariaDB, Redis (one node and a throwaway
# 3-master cluster) and NATS with JetStream, plus chromium for the browser
# tests — installing them from Debian's
# packages where missing, and exports their URLs as SECKILL_TEST_*.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  echo "ci: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

apt_updated=""
need_pkg() { # need_pkg COMMAND PACKAGE...
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  [ -x "/usr/sbin/$cmd" ] && return 0
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if ! port_open 5432; then
    need_pkg pg_ctlcluster postgresql
    local v
    v=$(ls /etc/postgresql | sort -V | tail -n 1)
    # A fresh install asks for passwords over TCP; the tests connect as
    # postgres from loopback only.
    local hba="/etc/postgresql/$v/main/pg_hba.conf"
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$v" main start
    wait_port postgresql 5432
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
  export SECKILL_TEST_POSTGRES="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

ensure_mysql() {
  if ! port_open 3306; then
    need_pkg mariadbd mariadb-server
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_port mariadb 3306
  fi
  if ! mariadb -h 127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    # A fresh install lets root in only over the socket.
    mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('');
      CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  fi
  mariadb -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
  export SECKILL_TEST_MYSQL="mysql://root@127.0.0.1:3306/test"
}

ensure_redis() {
  if ! port_open 6379; then
    need_pkg redis-server redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_port redis 6379
  fi
  export SECKILL_TEST_REDIS="redis://127.0.0.1:6379"
}

ensure_redis_cluster() {
  CI_CLUSTER_DIR=$(mktemp -d)
  trap 'bash scripts/redis-cluster.sh stop "$CI_CLUSTER_DIR" >/dev/null 2>&1 || true' EXIT
  export SECKILL_TEST_REDIS_CLUSTER
  SECKILL_TEST_REDIS_CLUSTER=$(bash scripts/redis-cluster.sh start "$CI_CLUSTER_DIR" 7101 | tail -n 1)
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

# The browser tests (cmd/seckill/browser_test.go) drive Debian's chromium.
need_pkg chromium chromium

ensure_postgres
ensure_mysql
ensure_redis
ensure_nats
if [ -f scripts/redis-cluster.sh ]; then
  ensure_redis_cluster
fi
echo "ci: postgres, mysql, redis${SECKILL_TEST_REDIS_CLUSTER:+, redis cluster ($SECKILL_TEST_REDIS_CLUSTER)}, nats ready"
