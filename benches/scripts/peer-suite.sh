#!/usr/bin/env bash
# The peer benchmark (issue #19): etcd, Redis and HyperCache one after another in one run, each
# started fresh (its own empty data directories, the page cache's dirty data synced first), all
# driven by the same closed-loop generator (`hcbench --system etcd|redis|hypercache`): 100-byte
# values over 10,000 keys, fsync on every acknowledged write (etcd always fsyncs; Redis runs AOF
# `appendfsync always`; HyperCache fsyncs on the leader and a follower), on loopback.
#
# Systems (SYSTEMS, in this order by default):
#   etcd3       etcd, 3 members (every member fsyncs its WAL before acknowledging)
#   etcd1       etcd, 1 member
#   redis-aof   Redis, one server, AOF appendfsync always
#   redis-wait  Redis primary + 2 replicas, AOF always on all three, `WAIT 1` after every SET
#   hc1         HyperCache `hypercache dev` (3 nodes, replication 3), 1 shard
#   hc16        HyperCache `hypercache dev`, 16 shards (the default)
# Workloads, in this order on each system: serial put (1 worker), put at 64 and at 256 workers,
# linearizable get at 256 (key space prefilled first), serializable get at 256. Every line
# reports ops/s, p50/p99, errors and the CPU-seconds of the server processes over the run
# (`hcbench --cpu`; etcd and Redis by --server-pids).
#
# Usage: benches/scripts/peer-suite.sh [seconds-per-run]   (default 10; ~8 min at 10)
# Env: SYSTEMS (default "etcd3 etcd1 redis-aof redis-wait hc1 hc16"); CONCURRENCY (default
# 256; the 64-worker line always runs); CARGO_TARGET_DIR (binaries from its release/, else
# ./target/release; built if missing, or always with BUILD=1).
# Ports: etcd clients 8401-8403, peers 8411-8413; Redis 8421-8423; HyperCache gRPC 8431-8433,
# admin 8441-8443. Data: /tmp/bench-peers.XXXXXX (removed at the end).
# Needs: etcd (Debian etcd-server), redis-server (Debian redis-server), jq. Installs none of them:
# it names what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conc=${CONCURRENCY:-256}
systems=${SYSTEMS:-etcd3 etcd1 redis-aof redis-wait hc1 hc16}
etcd_conns=${ETCD_CONNECTIONS:-1}
bin=${CARGO_TARGET_DIR:-$PWD/target}/release

missing=()
for tool in etcd redis-server jq; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: not installed: ${missing[*]} (Debian: apt-get install etcd-server redis-server jq)" >&2
  exit 2
fi
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$bin/hypercache" ] || [ ! -x "$bin/hcbench" ]; then
  cargo build --release --bin hypercache --bin hcbench
fi

dir=$(mktemp -d /tmp/bench-peers.XXXXXX)
results="$dir/results.tsv"
pids=()
. "$(dirname "$0")/dev-cluster.sh"

stop_system() {
  stop_cluster
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}
cleanup() { stop_system; rm -rf "$dir"; }
trap cleanup EXIT

# ready SYSTEM-FLAGS...: one put through hcbench succeeds (polled for up to 30 s).
ready() {
  local out
  for _ in $(seq 1 150); do
    out=$("$bin/hcbench" "$@" --count 1 --concurrency 1 --timeout-ms 1000 --key-prefix ready/ --json 2>/dev/null) &&
      [ "$(jq -r '.total_errors' <<<"$out")" = 0 ] && return 0
    sleep 0.2
  done
  echo "   not ready after 30 s" >&2
  return 1
}

# Each start_* sets: flags (hcbench's --system/--endpoints/...), cpu_flags (--server-pids), and
# starts the processes fresh.
start_etcd() {
  local n=$1 cluster="" eps="" i
  fresh_run_dir
  for i in $(seq 1 "$n"); do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$((8410 + i))"
    eps+="${eps:+,}127.0.0.1:$((8400 + i))"
  done
  for i in $(seq 1 "$n"); do
    etcd --name "m$i" --data-dir "$dir/run/etcd$i" \
      --listen-client-urls "http://127.0.0.1:$((8400 + i))" --advertise-client-urls "http://127.0.0.1:$((8400 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((8410 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((8410 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token hcbench \
      --logger zap --log-level error >"$dir/run/etcd$i.log" 2>&1 &
    pids+=($!)
  done
  flags=(--system etcd --endpoints "$eps" --etcd-connections "$etcd_conns")
  ready "${flags[@]}"
}

start_redis() {
  local replicas=$1 wait=$2 eps="" i port
  fresh_run_dir
  for i in $(seq 0 "$replicas"); do
    port=$((8421 + i))
    mkdir -p "$dir/run/redis$i"
    local extra=()
    [ "$i" -gt 0 ] && extra=(--replicaof 127.0.0.1 8421)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/run/redis$i" --appendonly yes \
      --appendfsync always --save "" --daemonize no --protected-mode no "${extra[@]}" \
      >"$dir/run/redis$i.log" 2>&1 &
    pids+=($!)
    eps+="${eps:+,}127.0.0.1:$port"
  done
  flags=(--system redis --endpoints "$eps")
  [ "$wait" -gt 0 ] && flags+=(--redis-wait "$wait")
  # Every replica in sync before the first measured write: WAIT for all of them once.
  if [ "$replicas" -gt 0 ]; then
    ready --system redis --endpoints "$eps" --redis-wait "$replicas"
  else
    ready "${flags[@]}"
  fi
}

start_hypercache() {
  start_cluster "$1" 8431 8441 || return 1
  flags=(--system hypercache --endpoints 127.0.0.1:8431,127.0.0.1:8432,127.0.0.1:8433)
  ready "${flags[@]}"
}

start() {
  case $1 in
    etcd3) start_etcd 3 ;;
    etcd1) start_etcd 1 ;;
    redis-aof) start_redis 0 0 ;;
    redis-wait) start_redis 2 1 ;;
    hc1) start_hypercache 1 ;;
    hc16) start_hypercache 16 ;;
    *) echo "error: unknown system $1 in SYSTEMS (etcd3 etcd1 redis-aof redis-wait hc1 hc16)" >&2; return 2 ;;
  esac
  # HyperCache's nodes are found by hcbench itself (`hypercache serve --listen`).
  cpu_flags=()
  if [ ${#pids[@]} -gt 0 ]; then cpu_flags=(--server-pids "$(IFS=,; echo "${pids[*]}")"); fi
}

# run SYSTEM WORKLOAD WORKERS HCBENCH-FLAGS...: one measured line; appends a row to $results.
run() {
  local system=$1 workload=$2 workers=$3 out
  shift 3
  out=$("$bin/hcbench" "${flags[@]}" --duration "$secs" --concurrency "$workers" --cpu "${cpu_flags[@]}" --json "$@") ||
    { echo "   $workload: hcbench failed"; return 0; }
  jq -r --arg s "$system" --arg w "$workload" \
    '[$s, $w, .throughput_ops_per_sec, ([.put.p50_us, .get.p50_us] | max), ([.put.p99_us, .get.p99_us] | max),
      .total_errors, .cpu.nodes_cpu_secs, .cpu.ops_per_node_cpu_sec] | @tsv' <<<"$out" >>"$results"
  jq -r --arg w "$workload" '"   \($w): \(.throughput_ops_per_sec | floor) ops/s, p50 \([.put.p50_us, .get.p50_us] | max) us, p99 \([.put.p99_us, .get.p99_us] | max) us, \(.total_errors) errors; servers \(.cpu.nodes_cpu_secs * 100 | floor / 100) CPU-s (\(.cpu.ops_per_node_cpu_sec | floor) ops per CPU-s), hcbench \(.cpu.hcbench_cpu_secs) CPU-s"' <<<"$out"
}

echo "== $(date -u '+%F %T') UTC, $(nproc) CPUs, $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}'), $secs s per line"
echo "   $(etcd --version | head -1); $(redis-server --version | cut -d' ' -f1-3); $("$bin/hypercache" --version)"
for system in $systems; do
  echo "== $(date -u '+%T') UTC: $system (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  if ! start "$system"; then
    echo "   $system did not start"
    stop_system
    continue
  fi
  run "$system" put1 1 --get-ratio 0
  run "$system" put64 64 --get-ratio 0
  run "$system" put "$conc" --get-ratio 0
  run "$system" get "$conc" --get-ratio 1 --prefill
  run "$system" sget "$conc" --get-ratio 1 --serializable
  stop_system
done

# The table: one column per system, in run order.
cell() { awk -F'\t' -v s="$1" -v w="$2" -v f="$3" '
  function commas(n,   t) { t = sprintf("%d", n); while (t ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", t); return t }
  $1==s && $2==w {
  if (f == "lat") printf "%.2f / %.2f ms", $4/1000, $5/1000;
  else if (f == "ops") printf "%s", commas($3);
  else if (f == "cpu") printf "%s", commas($8);
  if ($6 > 0) printf " (%d errors)", $6 }' "$results"; }
echo
echo "== results ($secs s per line; 100-byte values, 10,000 keys; workers = closed-loop clients)"
header="| |"; rule="|---|"
for s in $systems; do header+=" $s |"; rule+="---|"; done
echo "$header"
echo "$rule"
row() {
  local label=$1 workload=$2 field=$3 line="| $1 |"
  for s in $systems; do line+=" $(cell "$s" "$workload" "$field") |"; done
  echo "$line"
}
row "serial put p50 / p99" put1 lat
row "puts/s, 64 workers" put64 ops
row "puts/s, $conc workers" put ops
row "puts per server CPU-second, $conc" put cpu
row "put p50 / p99, $conc" put lat
row "linearizable gets/s, $conc" get ops
row "serializable gets/s, $conc" sget ops
