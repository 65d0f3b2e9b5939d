#!/usr/bin/env bash
# Dispatch benchmark (docs/performance.md, "Dispatch"): builds the server, then the examples,
# checks for nginx and wrk, and runs crates/stratus/examples/bench_dispatch.rs with the given
# arguments. Two builds on purpose: `cargo build --examples` alone leaves target/release/stratus
# as it was (possibly stale), and `--bins --examples` in one call links the server with the
# examples' dev-dependency features, i.e. not the binary users run.
#
#   scripts/bench_dispatch.sh                       # every part, 3 runs each (~5 min)
#   scripts/bench_dispatch.sh --part throughput --runs 5
#   scripts/bench_dispatch.sh --part throughput --runs 1 --perf /tmp/perf   # + perf reports
#
# With --perf DIR, `perf report --stdio | head -60` of every recorded profile is printed at the
# end. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in wrk perf; do
    command -v "$tool" >/dev/null || echo "warning: $tool not found (apt-get install -y ${tool/perf/linux-perf})" >&2
done
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || {
    echo "nginx not found: apt-get install -y nginx" >&2
    exit 1
}
# Up to queues × concurrency connections at once, plus the store and the API.
[ "$(ulimit -n)" -ge 8192 ] || ulimit -n 8192 2>/dev/null || true

cargo build --release -p stratus
cargo build --release -p stratus --examples

perf_dir=""
prev=""
for a in "$@"; do
    [ "$prev" = "--perf" ] && perf_dir="$a"
    prev="$a"
done

./target/release/examples/bench_dispatch --bin target/release/stratus "$@"

if [ -n "$perf_dir" ]; then
    for f in "$perf_dir"/*.data; do
        [ -e "$f" ] || continue
        echo
        echo "== perf report $f"
        perf report -i "$f" --stdio 2>/dev/null | head -60
    done
fi
