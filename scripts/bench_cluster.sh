#!/usr/bin/env bash
# Cluster benchmark (docs/performance.md, "PostgreSQL store and cluster mode"): builds the
# server, then the bench, and runs crates/stratus/examples/bench_cluster.rs with the given
# arguments: SQLite (in-run baseline), one PostgreSQL node and two PostgreSQL nodes on one
# database; creates/s and deliveries/s with the CPU of every process.
#
#   scripts/bench_cluster.sh                       # 3 runs, both parts (~6 min on 2 cores)
#   scripts/bench_cluster.sh --runs 5 --parts creates
#
# Two builds on purpose (see scripts/bench_dispatch.sh): the server as users build it, then the
# example alone. Needs PostgreSQL's server binaries (initdb, pg_ctl: apt-get install -y
# postgresql) and nginx. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v psql >/dev/null || { echo "psql not found: apt-get install -y postgresql" >&2; exit 1; }
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || {
    echo "nginx not found: apt-get install -y nginx" >&2
    exit 1
}
# Up to queues × concurrency connections at once, plus the stores and the API.
[ "$(ulimit -n)" -ge 8192 ] || ulimit -n 8192 2>/dev/null || true

cargo build --release -p stratus
cargo build --release -p stratus --example bench_cluster

./target/release/examples/bench_cluster --bin target/release/stratus "$@"
