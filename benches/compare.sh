#!/usr/bin/env bash
# benches/compare.sh: mercato against Redis and PostgreSQL, in one sitting,
# on this machine, with the same workloads (mercato-load's flash sale and
# carts: the same accounts, SKUs, prices and Zipf draws).
#
#   mercato serve, in memory and with --durability always
#   Redis, in memory and with appendonly yes + appendfsync always
#     (one Lua script per order, all-or-nothing)
#   PostgreSQL, fsync and synchronous_commit on
#     (one PL/pgSQL function per order)
#
# benches/peers.sh installs redis-server and postgresql from Debian if
# missing, and starts them on loopback with their files in a scratch
# directory, stopped at the end whatever happens; mercato serve is started
# here the same way, once per run. The table and the chart
# (docs/compare.svg, drawn with plotters) replace the section between the
# markers in BENCHMARKS.md.
#
# Settings (environment): COMPARE_SECONDS (10), COMPARE_ACCOUNTS
# (1000000), COMPARE_SKUS (100000), COMPARE_REDIS_CLIENTS (50),
# COMPARE_PG_CLIENTS (32). Takes about 5 minutes at the defaults.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
seconds=${COMPARE_SECONDS:-10}
accounts=${COMPARE_ACCOUNTS:-1000000}
skus=${COMPARE_SKUS:-100000}
redis_clients=${COMPARE_REDIS_CLIENTS:-50}
pg_clients=${COMPARE_PG_CLIENTS:-32}

# The servers: benches/peers.sh starts them and runs this script again
# inside, with their addresses in the environment.
if [ -z "${MERCATO_REDIS_URL:-}" ]; then
    cargo build --release -q -p mercato-engine -p mercato-benches
    exec "$root/benches/peers.sh" "$0" "$@"
fi
mercato=$root/target/release/mercato
load=$root/target/release/mercato-load

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mercato-compare.XXXXXX")
pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap stop_all EXIT

# `wait_port` comes from benches/peers.sh.

runs=$scratch/runs.tsv
: >"$runs"

# One run: a label, its persistence, then mercato-load's arguments.
run() {
    local system=$1 persistence=$2
    shift 2
    echo "compare: $system ($persistence) $*" >&2
    local out
    out=$("$load" --json --seconds "$seconds" --accounts "$accounts" --skus "$skus" "$@" | tail -1)
    printf '%s\t%s\t%s\n' "$system" "$persistence" "$out" >>"$runs"
}

# A fresh mercato serve per run, so that each loads its catalog as the
# peers do; its default flags, with --data-dir for `always`.
serve_and_run() {
    local persistence=$1 workload=$2
    local port=17391 args=()
    if [ "$persistence" = always ]; then
        rm -rf "$scratch/mercato"
        args=(--data-dir "$scratch/mercato" --durability always)
    fi
    "$mercato" serve --listen "127.0.0.1:$port" --shards 2 "${args[@]}" >"$scratch/mercato.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_port "$port"
    run mercato "$persistence" --target "tcp://127.0.0.1:$port" --workload "$workload" \
        --threads 2 --connections 2 --batch 256 --pipeline 8
    kill -INT "$pid"
    wait "$pid" || true
}

for workload in flash-sale carts; do
    serve_and_run "in memory" "$workload"
    serve_and_run always "$workload"
    run redis "in memory" --target "$MERCATO_REDIS_URL" --workload "$workload" \
        --threads "$redis_clients" --batch 16
    run redis "AOF always" --target "$MERCATO_REDIS_AOF_URL" --workload "$workload" \
        --threads "$redis_clients" --batch 16
    run postgresql "fsync on" --target "$MERCATO_POSTGRES_URL" \
        --workload "$workload" --threads "$pg_clients" --batch 16
done

# The runs behind the table and charts are kept, so they can be redrawn.
cp "$runs" "$root/docs/compare-runs.tsv"
table=$("$root/target/release/mercato-compare" --runs "$runs" --svg "$root/docs/compare.svg" \
    --latency-svg "$root/docs/compare-latency.svg")
echo "$table"

# Replace the generated section of BENCHMARKS.md.
begin='<!-- compare.sh: begin -->'
end='<!-- compare.sh: end -->'
section=$(printf '%s\n\n%s\n\n%s\n\n![requests per second](docs/compare.svg)\n\n![latency percentiles](docs/compare-latency.svg)\n%s' "$begin" \
    "Measured $(date -u +%Y-%m-%d) by \`benches/compare.sh\` ($seconds s a run, $accounts accounts, $skus SKUs; mercato over TCP with 2 shards, 2 threads, batch 256, pipeline 8; Redis $redis_clients clients, pipelines of 16; PostgreSQL $pg_clients clients). Server and load share this machine's two cores." \
    "$table" "$end")
if grep -qF "$begin" BENCHMARKS.md; then
    awk -v b="$begin" -v e="$end" -v s="$section" '
        $0 == b { print s; skip = 1; next }
        $0 == e { skip = 0; next }
        !skip { print }' BENCHMARKS.md >"$scratch/BENCHMARKS.md"
    cp "$scratch/BENCHMARKS.md" BENCHMARKS.md
else
    printf '\n## mercato, Redis and PostgreSQL side by side\n\n%s\n' "$section" >>BENCHMARKS.md
fi
echo "compare: BENCHMARKS.md and docs/compare.svg updated" >&2
