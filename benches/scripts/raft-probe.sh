#!/usr/bin/env bash
# What one KV load run costs the Raft layer: a fresh `hypercache dev --nodes 3 --shards S` (release
# build, default config, fsync on), one `hcbench --cpu` run, then from the nodes' /metrics and
# /proc: Raft entries (sum of the data shards' applied indexes over the nodes / 3), group-commit
# flushes and the time spent in them, AppendEntries messages per peer call (how well the append
# batcher batched), and bytes written to disk. Used for the "Node-level batching" figures in
# docs/benchmarks.md.
# Usage: benches/scripts/raft-probe.sh SHARDS [hcbench args...]
#   e.g. benches/scripts/raft-probe.sh 16 --get-ratio 0
#        benches/scripts/raft-probe.sh 16 --get-ratio 1.0 --prefill
# Env: CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release, else ./target/release; built if
# missing), DURATION (default 10), CONCURRENCY (default 256). Any other environment (e.g.
# TOKIO_WORKER_THREADS) reaches the nodes.
# Ports: gRPC 8301-8303, admin 8311-8313. Data: a temporary directory, removed at the end.
# Needs: curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
shards=${1:?usage: raft-probe.sh SHARDS [hcbench args...]}
shift
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
if [ ! -x "$bin/hypercache" ] || [ ! -x "$bin/hcbench" ]; then
  cargo build --release --bin hypercache --bin hcbench
fi
dir=$(mktemp -d /tmp/raft-probe.XXXXXX)
setsid "$bin/hypercache" dev --nodes 3 --shards "$shards" --dir "$dir" --base-port 8301 --admin-base-port 8311 \
  >"$dir/dev.out" 2>&1 &
dev=$!
cleanup() {
  kill -TERM -- "-$dev" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 -- "-$dev" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$dev" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 300); do grep -qs "cluster ready\|not every shard" "$dir/dev.out" && break; sleep 0.2; done
grep -q "cluster ready" "$dir/dev.out" || { cat "$dir/dev.out"; exit 1; }
sleep 2

# Counters summed over the three nodes: flushes, seconds in flush, append calls, append messages,
# applied index summed over data shards and nodes, bytes written.
counters() {
  for port in 8311 8312 8313; do curl -s "localhost:$port/metrics"; done | awk '
    /^hypercache_storage_flush_duration_seconds_count/ {f += $2}
    /^hypercache_storage_flush_duration_seconds_sum/ {fs += $2}
    /^hypercache_raft_append_messages_per_call_count/ {c += $2}
    /^hypercache_raft_append_messages_per_call_sum/ {m += $2}
    /^hypercache_raft_applied_index\{shard="[0-9]+"\}/ {a += $2}
    END {printf "%d %.3f %d %d %d", f, fs, c, m, a}'
  local w=0
  for pid in $(pgrep -f "$bin/hypercache serve"); do
    w=$((w + $(awk '/^write_bytes/{print $2}' "/proc/$pid/io")))
  done
  echo " $w"
}
read -r f0 fs0 c0 m0 a0 w0 < <(counters)
"$bin/hcbench" --endpoints 127.0.0.1:8301,127.0.0.1:8302,127.0.0.1:8303 --duration "${DURATION:-10}" \
  --concurrency "${CONCURRENCY:-256}" --cpu "$@"
read -r f1 fs1 c1 m1 a1 w1 < <(counters)
awk -v f=$((f1 - f0)) -v fs0="$fs0" -v fs1="$fs1" -v c=$((c1 - c0)) -v m=$((m1 - m0)) -v a=$((a1 - a0)) \
  -v w=$((w1 - w0)) 'BEGIN {
    printf "raft entries %d; flushes %d (%.2f s in flush, 3 nodes); append messages %d in %d peer calls (%.2f per call); written %.1f MiB (3 nodes)\n",
      a / 3, f, fs1 - fs0, m, c, c ? m / c : 0, w / 1048576 }'
