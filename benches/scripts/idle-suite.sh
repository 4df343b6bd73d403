#!/usr/bin/env bash
# Idle cost of shard replicas (issue #19): a fresh `hypercache dev --nodes 3 --shards S` (release
# build, replication 3, so every node hosts S data-shard replicas and the meta group), no client
# traffic at all; after the cluster is ready and WARMUP seconds have passed, each node's CPU time
# (/proc/<pid>/stat utime+stime) and context switches (/proc/<pid>/status, voluntary and not: a
# wake-up count less noisy than CPU time on a shared machine) over SECS seconds, and how many of
# its replicas stopped ticking (`hypercache_quiet_replicas`, see hypercache-server/src/quiet/).
# Usage: benches/scripts/idle-suite.sh [seconds] [shard counts...]   (defaults 60, "1 16 64")
# Env: WARMUP (default 10; a shard goes quiet raft.quiet_after_ms = 2 s after its last entry),
# HYPERCACHE_RAFT__QUIET_AFTER_MS=0 (every shard keeps ticking: the cost without quiet shards),
# CARGO_TARGET_DIR (binaries from its release/, else ./target/release; built if missing, or
# always with BUILD=1).
# Ports: gRPC 8531-8533, admin 8541-8543. Data: /tmp/bench-idle.XXXXXX (removed at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 16 64)
warmup=${WARMUP:-10}
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$bin/hypercache" ]; then
  cargo build --release --bin hypercache
fi
dir=$(mktemp -d /tmp/bench-idle.XXXXXX)
. "$(dirname "$0")/dev-cluster.sh"
cleanup() { stop_cluster; rm -rf "$dir"; }
trap cleanup EXIT

# sample PID: CPU ticks and context switches of all its threads: "ticks switches"
sample() {
  local pid=$1
  echo "$(awk '{print $14+$15}' "/proc/$pid/stat") $(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/{s+=$2} END{print s}')"
}

hz=$(getconf CLK_TCK)
echo "== $(date -u '+%F %T') UTC, $(nproc) CPUs, $secs s per count after $warmup s of warm-up, quiet_after_ms=${HYPERCACHE_RAFT__QUIET_AFTER_MS:-default}"
for shards in "${counts[@]}"; do
  if ! start_cluster "$shards" 8531 8541; then
    echo "   the $shards-shard cluster did not start"
    continue
  fi
  sleep "$warmup"
  pids=()
  for i in 1 2 3; do pids+=("$(pgrep -f "serve --node-id $i .*--listen 127.0.0.1:853$i")"); done
  before=()
  for p in "${pids[@]}"; do before+=("$(sample "$p")"); done
  sleep "$secs"
  line=""
  for i in 0 1 2; do
    read -r t0 c0 <<<"${before[$i]}"
    read -r t1 c1 < <(sample "${pids[$i]}")
    quiet=$(curl -s "127.0.0.1:854$((i + 1))/metrics" | awk '/^hypercache_quiet_replicas /{print $2}')
    line+=$(awk -v dt=$((t1 - t0)) -v dc=$((c1 - c0)) -v hz="$hz" -v s="$secs" -v q="${quiet:--}" -v n=$((i + 1)) \
      'BEGIN{printf "  node-%d %.2f %% of a core, %.0f switches/s, %s replicas quiet;", n, 100*dt/hz/s, dc/s, q}')
  done
  echo "   $shards shard(s):$line"
done
