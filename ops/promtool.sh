#!/usr/bin/env bash
# ops/promtool.sh ARGS...: runs Prometheus' promtool with ARGS, for example
# `ops/promtool.sh check metrics < scrape.txt`.
#
# The system's promtool is used when there is one. Otherwise Debian's
# `prometheus` package is downloaded (not installed: no root needed, and no
# Prometheus service started) and unpacked under target/tools/, where later
# runs find it.
set -euo pipefail
if command -v promtool >/dev/null; then
    exec promtool "$@"
fi
root=$(cd "$(dirname "$0")/.." && pwd)
tools="${CARGO_TARGET_DIR:-$root/target}/tools/prometheus"
bin="$tools/usr/bin/promtool"
if [ ! -x "$bin" ]; then
    echo "promtool: fetching Debian's prometheus package into $tools" >&2
    mkdir -p "$tools"
    (
        cd "$tools"
        apt-get download prometheus >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 || true; apt-get download prometheus >/dev/null; }
        dpkg-deb -x prometheus_*.deb .
        rm -f prometheus_*.deb
    )
fi
exec "$bin" "$@"
