#!/usr/bin/env bash
# How long writes stop when a shard's leader goes: SIGTERM (a rolling restart: the node hands its
# leadership over before it stops) and SIGKILL (a crash: the followers notice and elect). Each
# trial: a fresh `hypercache dev --nodes 3 --shards 1` (release build, default config, fsync on),
# one `hcbench` put load (64 workers, 100-byte values), the leader's node signalled SIGNAL_AT
# seconds in; the figure is the longest stretch of the run in which no put completed (hcbench's
# `longest_put_gap`). One shard, so a leader change stops every write instead of a sixteenth.
# Usage: benches/scripts/failover-suite.sh [TRIALS]   (default 5 per signal)
# Env: CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release, else ./target/release; built if
# missing), DURATION (default 8), SIGNAL_AT (default 3), CONCURRENCY (default 64).
# Ports: gRPC 8401-8403, admin 8411-8413. Data: a temporary directory, removed at the end.
# Needs: curl, jq.
set -euo pipefail
cd "$(dirname "$0")/../.."
trials=${1:-5}
duration=${DURATION:-8}
signal_at=${SIGNAL_AT:-3}
concurrency=${CONCURRENCY:-64}
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "failover-suite: needs $tool (apt-get install $tool)" >&2; exit 1; }
done
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
if [ ! -x "$bin/hypercache" ] || [ ! -x "$bin/hcbench" ]; then
  cargo build --release --bin hypercache --bin hcbench
fi
dir=$(mktemp -d /tmp/failover-suite.XXXXXX)
# shellcheck source=benches/scripts/dev-cluster.sh
. benches/scripts/dev-cluster.sh
trap 'stop_cluster; rm -rf "$dir"' EXIT
endpoints=127.0.0.1:8401,127.0.0.1:8402,127.0.0.1:8403

# leader_pid: the pid of the node whose /metrics says it leads data shard 0 (empty if none does).
leader_pid() {
  local line admin pid
  while read -r line; do
    admin=$(sed -n 's/.*admin=\(http:[^ ]*\).*/\1/p' <<<"$line")
    pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
    if curl -fsS "$admin/metrics" 2>/dev/null | grep -q '^hypercache_raft_is_leader{shard="0"} 1'; then
      echo "$pid"
      return
    fi
  done < <(grep '^node-' "$dir/run/dev.out")
}

printf '| signal | trial | longest stretch without a completed put (ms) | puts | put errors | put p99 (ms) |\n'
printf '|---|---|---|---|---|---|\n'
for signal in TERM KILL; do
  for trial in $(seq 1 "$trials"); do
    start_cluster 1 8401 8411
    sleep 1
    "$bin/hcbench" --endpoints "$endpoints" --concurrency "$concurrency" --get-ratio 0 --duration "$duration" \
      --json >"$dir/run/bench.json" 2>"$dir/run/bench.err" &
    bench=$!
    sleep "$signal_at"
    pid=
    for _ in $(seq 1 50); do
      pid=$(leader_pid)
      [ -z "$pid" ] || break
      sleep 0.1
    done
    if [ -z "$pid" ]; then
      echo "failover-suite: no leader of shard 0 found; dev output:" >&2
      cat "$dir/run/dev.out" >&2
      exit 1
    fi
    kill "-$signal" "$pid"
    wait "$bench" || { cat "$dir/run/bench.err" >&2; exit 1; }
    jq -r --arg s "$signal" --arg t "$trial" \
      '"| \($s) | \($t) | \(.longest_put_gap.len_ms // "-") | \(.put.ops) | \(.put.errors) | \(.put.p99_us / 1000) |"' \
      "$dir/run/bench.json"
    stop_cluster
  done
done
