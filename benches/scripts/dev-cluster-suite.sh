#!/usr/bin/env bash
# Runs the issue-#2 benchmark set against a fresh 3-node dev cluster (release build, fsync on):
# serial put, peak put, linearizable get, idle memory. Bounded: every hcbench run has a duration.
# Usage: benches/scripts/dev-cluster-suite.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
cargo build --release --bin hypercache --bin hcbench
dir=$(mktemp -d /tmp/hc-bench.XXXXXX)
./target/release/hypercache dev --nodes 3 --dir "$dir" --base-port 7201 --admin-base-port 7301 >"$dir/dev.out" 2>&1 &
dev=$!
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q "cluster ready" "$dir/dev.out" && break; sleep 0.2; done
grep -q "cluster ready" "$dir/dev.out" || { cat "$dir/dev.out"; exit 1; }
ep=127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203
rss() { ps -o rss=,args= -C hypercache | awk '/ serve /{printf "  node %s: %.1f MiB\n", $5, $1/1024}'; }
sleep 3
echo "== idle resident memory, fresh cluster"; rss
bench() { echo "== hcbench $*"; ./target/release/hcbench --endpoints "$ep" --duration "$secs" "$@" | tail -n +2; }
bench --concurrency 1
bench --concurrency 64
bench --concurrency 128
bench --concurrency 256
bench --concurrency 64 --get-ratio 1.0 --prefill
bench --concurrency 256 --get-ratio 1.0
sleep 3
echo "== idle resident memory, after the runs"; rss
