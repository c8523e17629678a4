#!/usr/bin/env bash
# A whole edge cluster on this machine, on loopback: PostgreSQL (Debian's package, run as
# a non-root user) holding the apps, three `edge serve --store` nodes, and haproxy in front
# with active health checks. Runs until Ctrl-C, then stops everything; the data stays in
# the state directory, so the next start serves the same apps.
#
#   bash deploy/local-cluster.sh
#   edge deploy hello.wasm --server http://127.0.0.1:18101   # through any node's admin API
#   curl -H 'Host: hello.localhost' http://127.0.0.1:8080/   # through haproxy
#
# Environment (defaults in brackets):
#   EDGE_PORT [8080]          haproxy's port, where clients connect
#   EDGE_NODES [3]            edge nodes; node i serves on 18000+i, its admin API on 18100+i
#   EDGE_NODE_PORT [18000]    the base of the nodes' ports
#   EDGE_PG_PORT [15432]      PostgreSQL's port
#   EDGE_CLUSTER_DIR [target/local-cluster]   state: database, nodes' copies and caches, logs
#   EDGE_ADMIN_TOKEN          the admin token of every node [generated into the state dir]
#   EDGE_BIN [target/release/edge]            the edge binary (built if missing)
#
# `--smoke FILE.wasm`: start, deploy FILE as `hello` through node 1, wait until haproxy and
# every node serve it, then stop (the test suite runs this).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=""
case "${1:-}" in
  --smoke) smoke=${2:?--smoke needs a component}; smoke=$(realpath "$smoke") ;;
  -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "local-cluster.sh: unknown argument \`$1\` (try --help)" >&2; exit 2 ;;
esac

port=${EDGE_PORT:-8080}
nodes=${EDGE_NODES:-3}
base=${EDGE_NODE_PORT:-18000}
pg_port=${EDGE_PG_PORT:-15432}
state=$(realpath -m "${EDGE_CLUSTER_DIR:-target/local-cluster}")
edge=${EDGE_BIN:-target/release/edge}
mkdir -p "$state"

# What it runs on: Debian's PostgreSQL and haproxy, installed if missing.
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "local-cluster: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x "$edge" ]; then
  echo "local-cluster: building edge (the first build takes several minutes)" >&2
  cargo build --release --quiet -p edge
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# PostgreSQL refuses to run as root: as root it runs as the `postgres` user Debian's
# package creates.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo "local-cluster: stopping" >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_pg "$pg_bin/pg_ctl" stop -D "$state/pg/data" -m fast -w >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

if [ ! -s "$state/pg/data/PG_VERSION" ]; then
  mkdir -p "$state/pg"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$state/pg"
  # Trust on loopback only: a development cluster on one machine.
  as_pg "$pg_bin/initdb" -D "$state/pg/data" -A trust -U edge -E UTF8 >"$state/pg/initdb.log"
fi
as_pg "$pg_bin/pg_ctl" start -D "$state/pg/data" -l "$state/pg/log" -w -t 60 \
  -o "-p $pg_port -k $state/pg -c listen_addresses=127.0.0.1" >/dev/null
url="postgres://edge@127.0.0.1:$pg_port/postgres"

if [ -z "${EDGE_ADMIN_TOKEN:-}" ]; then
  [ -s "$state/admin-token" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/admin-token")
  EDGE_ADMIN_TOKEN=$(cat "$state/admin-token")
fi
export EDGE_ADMIN_TOKEN

unset RUST_BACKTRACE
servers=""
for i in $(seq 1 "$nodes"); do
  mkdir -p "$state/node$i/apps"
  "$edge" serve "$state/node$i/apps" --store "$url" --state "$url" \
    --listen "127.0.0.1:$((base + i))" --admin "127.0.0.1:$((base + 100 + i))" \
    --cache-dir "$state/node$i/cache" --max-client-concurrency 256 \
    >"$state/node$i/log" 2>&1 &
  pids+=($!)
  servers+="    server node$i 127.0.0.1:$((base + i)) check port $((base + 100 + i)) inter 500ms fall 2 rise 2"$'\n'
done
for i in $(seq 1 "$nodes"); do
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$((base + 100 + i))/readyz" >/dev/null 2>&1 && break
    kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { cat "$state/node$i/log" >&2; exit 1; }
    sleep 0.1
  done
done

# haproxy: round robin over the nodes, health-checked on each node's /healthz (the admin
# port); a request whose node dies is retried on another (GETs are idempotent).
cat >"$state/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend edge
    bind 127.0.0.1:$port
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
$servers
EOF
haproxy -f "$state/haproxy.cfg" -db >"$state/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done

cat <<EOF
local cluster up: $nodes edge nodes on PostgreSQL 127.0.0.1:$pg_port, haproxy on 127.0.0.1:$port
  deploy:  EDGE_ADMIN_TOKEN=\$(cat $state/admin-token) $edge deploy APP.wasm --server http://127.0.0.1:$((base + 101))
  request: curl -H 'Host: APP.localhost' http://127.0.0.1:$port/
  nodes:   http 127.0.0.1:$((base + 1))-$((base + nodes)), admin 127.0.0.1:$((base + 101))-$((base + 100 + nodes)); logs in $state
Ctrl-C stops it all.
EOF

if [ -n "$smoke" ]; then
  "$edge" deploy "$smoke" --name hello --server "http://127.0.0.1:$((base + 101))"
  # The nodes first, then haproxy: once every node serves the app, no request haproxy
  # passes on can reach a node that has not loaded it yet.
  for target in $(seq $((base + 1)) $((base + nodes))) "$port"; do
    for _ in $(seq 1 100); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: hello.localhost' "http://127.0.0.1:$target/")" = 200 ] && break
      sleep 0.1
    done
    curl -fsS -H 'Host: hello.localhost' "http://127.0.0.1:$target/" >/dev/null
  done
  echo "smoke: every node and haproxy serve hello"
  exit 0
fi
wait "${pids[0]}"
