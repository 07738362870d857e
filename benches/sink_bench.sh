#!/usr/bin/env bash
# benches/peers.sh benches/sink_bench.sh [SECONDS]: how fast `mercato sink
# postgres` applies orders. A durable `mercato serve` (2 shards, durability
# always) takes SECONDS (default 10) of `mercato-load` carts over TCP; then
# the sink loads the whole log into the PostgreSQL that benches/peers.sh
# started, from an empty database, and prints what it applied per second
# (timed from its first batch to its last commit). Release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
: "${MERCATO_POSTGRES_URL:?run this under benches/peers.sh}"

cargo build --release -q -p mercato-engine --bin mercato
cargo build --release -q -p mercato-benches --bin mercato-load
bin=target/release

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mercato-sink-bench.XXXXXX")
server=
stop() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$scratch"
}
trap stop EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/mercato" serve --listen "127.0.0.1:$port" --shards 2 --durability always \
    --data-dir "$scratch/data" >"$scratch/serve.log" 2>&1 &
server=$!
wait_port "$port"

echo "== load: carts over TCP for $secs s"
"$bin/mercato-load" --target "tcp://127.0.0.1:$port" --workload carts \
    --seconds "$secs" --threads 2 --json ${LOAD_FLAGS:-}
echo "== sink: the whole log into an empty database"
"$bin/mercato" sink postgres --addr "127.0.0.1:$port" --dsn "$MERCATO_POSTGRES_URL" \
    --reset --exit-idle-ms 2000
