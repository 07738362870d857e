#!/usr/bin/env bash
# benches/peers.sh COMMAND...: runs COMMAND with Redis and PostgreSQL up on
# loopback, for the tests and the comparison that need real servers.
#
# redis-server and postgresql are installed from Debian if missing. Redis
# runs twice (in memory, and with appendonly yes + appendfsync always) and
# PostgreSQL once (fsync and synchronous_commit on), each on a free port
# with its files in a scratch directory; COMMAND finds them in
#   MERCATO_REDIS_URL, MERCATO_REDIS_AOF_URL, MERCATO_POSTGRES_URL.
# PostgreSQL also takes TLS, with a certificate for 127.0.0.1 signed by
# an authority made here (openssl), whose PEM is in MERCATO_POSTGRES_CA.
# Everything started here is stopped, and the scratch directory removed,
# when COMMAND ends, however it ends. Exits with COMMAND's status.
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: benches/peers.sh COMMAND..." >&2
    exit 2
fi

install() {
    echo "peers: installing $* from Debian" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        { "${sudo[@]}" apt-get update -qq &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}
command -v redis-server >/dev/null || install redis-server
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ]; then
    install postgresql
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# PostgreSQL refuses to run as root; as root, it runs as its own user.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "peers: nothing listens on port $1" >&2
    return 1
}
# For COMMAND too, which may start servers of its own (compare.sh does).
export -f wait_port

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mercato-peers.XXXXXX")
chmod 755 "$scratch"
redis_port=$(free_port)
aof_port=$(free_port)
pg_port=$(free_port)

stop_all() {
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    redis-cli -p "$aof_port" shutdown nosave >/dev/null 2>&1 || true
    if [ -f "$scratch/pg/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$scratch/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$scratch"
}
trap stop_all EXIT

mkdir -p "$scratch/redis" "$scratch/redis-aof" "$scratch/pg"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$scratch/redis" --daemonize yes --logfile "$scratch/redis/log"
redis-server --port "$aof_port" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync always --dir "$scratch/redis-aof" --daemonize yes --logfile "$scratch/redis-aof/log"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$scratch/pg"; fi
as_pg "$pg_bin/initdb" -D "$scratch/pg" -A trust -U postgres >/dev/null
# A test authority and PostgreSQL's certificate for 127.0.0.1, in the data
# directory (PostgreSQL wants its key owned by it and private).
command -v openssl >/dev/null || install openssl
(
    cd "$scratch/pg"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj /CN=mercato-peers-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.crt -days 2 -extfile server.ext 2>/dev/null
    chmod 600 server.key
    if [ "$(id -u)" -eq 0 ]; then chown postgres server.key server.crt; fi
)
as_pg "$pg_bin/pg_ctl" -D "$scratch/pg" -l "$scratch/pg/log" -w \
    -o "-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key" \
    start >/dev/null
wait_port "$redis_port"
wait_port "$aof_port"
wait_port "$pg_port"

export MERCATO_REDIS_URL="redis://127.0.0.1:$redis_port"
export MERCATO_REDIS_AOF_URL="redis://127.0.0.1:$aof_port"
export MERCATO_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export MERCATO_POSTGRES_CA="$scratch/pg/ca.pem"
status=0
"$@" || status=$?
exit "$status"
