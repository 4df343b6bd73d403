#!/usr/bin/env bash
# Issue #6 (multi-Raft sharding) benchmarks, release build, fsync on, default config otherwise:
#  1. KV throughput per CPU-second: `hcbench --cpu` (closed loop through hypercache-client, 100-byte
#     values over 10,000 keys) against a fresh `hypercache dev --nodes 3 --shards 1` and
#     `--shards 16`, put (get ratio 0) and linearizable get (get ratio 1, prefilled), RUNS times,
#     interleaved, a fresh cluster for every run. Reports ops/s, the CPU-seconds of the three node
#     processes (/proc/<pid>/stat) and of hcbench, and ops per CPU-second; after each 16-shard run,
#     how many shard leaders each node holds (`hcctl shards`).
#  2. Routing cost: `hcbench routing-cost` against a fresh 16-shard cluster, at 1 and at CONCURRENCY
#     workers (half puts, half gets): client CPU per request vs. the per-request routing step.
# Every run prints the hypervisor's steal (`vmstat 1 3` just before, and /proc/stat over the run).
# Usage: benches/scripts/sharding-suite.sh [seconds-per-run] [runs]   (defaults 10 and 3; ~12 min)
# Env: CONCURRENCY (default 256); ROUTING=0 skips part 2; CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release, else
# ./target/release; built if missing, or always with BUILD=1).
# Ports: gRPC 8301-8303, admin 8311-8313. Data: /tmp/bench-sharding.XXXXXX (removed at the end).
# Needs: jq, vmstat.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
runs=${2:-3}
conc=${CONCURRENCY:-256}
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$bin/hypercache" ] || [ ! -x "$bin/hcctl" ] || [ ! -x "$bin/hcbench" ]; then
  cargo build --release --bin hypercache --bin hcctl --bin hcbench
fi
dir=$(mktemp -d /tmp/bench-sharding.XXXXXX)
ep=127.0.0.1:8301,127.0.0.1:8302,127.0.0.1:8303
results="$dir/results.tsv"
. "$(dirname "$0")/dev-cluster.sh"
cleanup() { stop_cluster; rm -rf "$dir"; }
trap cleanup EXIT

# A fresh cluster with $1 shards, and 2 s for its leaders to settle.
start_sharded() {
  start_cluster "$1" 8301 8311 || return 1
  grep "cluster ready" "$dir/run/dev.out" | sed 's/^/   /'
  sleep 2
}

# vmstat's steal column (st) for 3 one-second samples; the first sample is since boot.
vmstat_steal() { vmstat 1 3 | awk 'NR==2{for(i=1;i<=NF;i++) if($i=="st") c=i} NR>2{printf "%s ", $c}'; }
# Total and steal ticks from /proc/stat, for the steal over a run.
cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
# Leaders per node, from `hcctl shards --json`.
leader_spread() {
  "$bin/hcctl" --endpoints "$ep" shards --json 2>/dev/null |
    jq -r '[.shards[] | (.leader.name // .leader // "none") | tostring] | group_by(.) | map("\(.[0])=\(length)") | join(" ")' 2>/dev/null ||
    "$bin/hcctl" --endpoints "$ep" shards
}

# kv SHARDS WORKLOAD RUN: one throughput run on a fresh cluster; appends a line to $results.
kv() {
  local shards=$1 workload=$2 run=$3 args t0 s0 t1 s1 out
  case $workload in
    put) args=(--get-ratio 0) ;;
    get) args=(--get-ratio 1.0 --prefill) ;;
  esac
  echo "== $(date -u '+%F %T') UTC: --shards $shards, $workload, run $run (load average $(cut -d' ' -f1-3 /proc/loadavg); vmstat st: $(vmstat_steal))"
  start_sharded "$shards" || { echo "   cluster did not start"; return 0; }
  read -r t0 s0 < <(cpu_ticks)
  out=$("$bin/hcbench" --endpoints "$ep" --duration "$secs" --concurrency "$conc" --cpu --json "${args[@]}") ||
    { echo "   hcbench failed"; return 0; }
  read -r t1 s1 < <(cpu_ticks)
  local steal
  steal=$(awk -v dt=$((t1 - t0)) -v ds=$((s1 - s0)) 'BEGIN{printf "%.1f", dt ? 100*ds/dt : 0}')
  jq -r --arg s "$shards" --arg w "$workload" --arg r "$run" --arg st "$steal" \
    '[$s, $w, $r, .throughput_ops_per_sec, .total_errors, .cpu.nodes_cpu_secs, .cpu.hcbench_cpu_secs,
      .cpu.ops_per_node_cpu_sec, .cpu.ops_per_cpu_sec, ([.put.p99_us, .get.p99_us] | max), $st] | @tsv' <<<"$out" >>"$results"
  jq -r '"   \(.throughput_ops_per_sec | floor) ops/s, \(.total_errors) errors, p99 \([.put.p99_us, .get.p99_us] | max) us; nodes \(.cpu.node_cpu_secs | map(. * 100 | floor / 100) | join(" / ")) CPU-s, hcbench \(.cpu.hcbench_cpu_secs) CPU-s; \(.cpu.ops_per_node_cpu_sec | floor) ops per node CPU-s, \(.cpu.ops_per_cpu_sec | floor) with hcbench"' <<<"$out"
  echo "   steal over the run: $steal %"
  if [ "$shards" -gt 1 ]; then echo "   leaders per node after the run: $(leader_spread)"; fi
}

echo "== $(date -u '+%F %T') UTC, $(nproc) CPUs, $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}'), $secs s per run, $runs runs, $conc workers"
for run in $(seq 1 "$runs"); do
  for workload in put get; do
    for shards in 1 16; do
      kv "$shards" "$workload" "$run"
    done
  done
done

echo
echo "== throughput, $runs runs each: min / median / max"
printf "%-7s %-4s %-26s %-22s %-26s %-26s\n" shards op "ops/s" "node CPU-s per run" "ops per node CPU-s" "ops per CPU-s (+hcbench)"
stat3() { sort -g | awk '{v[NR]=$1} END{if(NR) printf "%.0f / %.0f / %.0f", v[1], v[int((NR+1)/2)], v[NR]; else printf "-"}'; }
stat3f() { sort -g | awk '{v[NR]=$1} END{if(NR) printf "%.2f / %.2f / %.2f", v[1], v[int((NR+1)/2)], v[NR]; else printf "-"}'; }
for workload in put get; do
  for shards in 1 16; do
    sel() { awk -F'\t' -v s="$shards" -v w="$workload" -v c="$1" '$1==s && $2==w {print $c}' "$results"; }
    printf "%-7s %-4s %-26s %-22s %-26s %-26s\n" "$shards" "$workload" "$(sel 4 | stat3)" "$(sel 6 | stat3f)" \
      "$(sel 8 | stat3)" "$(sel 9 | stat3)"
  done
done

[ "${ROUTING:-1}" = 0 ] && exit 0
echo
echo "== routing cost (fresh 16-shard cluster per run)"
for c in 1 "$conc"; do
  echo "== $(date -u '+%F %T') UTC: routing-cost, $c worker(s) (vmstat st: $(vmstat_steal))"
  start_sharded 16 || { echo "   cluster did not start"; continue; }
  "$bin/hcbench" routing-cost --endpoints "$ep" --duration "$secs" --concurrency "$c" --get-ratio 0.5 --prefill |
    sed -n '/^total:/p;/^cpu over/p;/^routing/,$p' | sed 's/^/   /'
done
