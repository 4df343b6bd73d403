#!/usr/bin/env bash
# One chaos run, repeated: for a rare anomaly (seen once, gone on the next run) one run says
# nothing, and a hundred runs of the same plan say how rare it is. Every run is the same
# `hcjepsen test` command line with its own store; a valid run's directory is deleted, an
# invalid one's is kept (history, node logs, the nodes' disk images) for a post-mortem.
#
#   jepsen/repeat.sh N -- ARGS...   N runs of `hcjepsen test ARGS...`, one after another
#
# e.g. the plan of `jepsen/tests/chaos.rs::set_survives_whole_cluster_power_cuts`:
#   jepsen/repeat.sh 40 -- --workload set --nemesis power --time-limit 12 --heal-secs 2 \
#     --fault-secs 4 --seed 0
#
# HCJEPSEN_STORE is where the kept runs go (default: a new directory under /tmp, printed);
# HYPERCACHE_BIN the node binary (default: the one cargo builds next to hcjepsen). Prints one
# line per run and a tally; exits 0 only if every run was valid. Runs in parallel (two copies of
# this script) share the machine's cores: they load it, which is sometimes the point.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 N -- HCJEPSEN_TEST_ARGS..." >&2; exit 2; }
[ $# -ge 2 ] || usage
runs=$1; shift
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "error: N must be a positive number of runs, got '$runs'" >&2; exit 2; }
[ "$1" = "--" ] || usage
shift
for arg in "$@"; do
  case $arg in
    --store|--store=*) echo "error: the store is this script's (one per run); set HCJEPSEN_STORE instead" >&2; exit 2 ;;
  esac
done
store=${HCJEPSEN_STORE:-$(mktemp -d /tmp/hcjepsen-repeat.XXXXXX)}
mkdir -p "$store"
echo "repeat: $runs runs of hcjepsen test $*; invalid runs kept in $store"

cargo build -q --bin hypercache --bin hcjepsen || exit 1
hcj=./target/debug/hcjepsen

valid=0
invalid=0
for i in $(seq 1 "$runs"); do
  dir="$store/$i"
  mkdir -p "$dir"
  "$hcj" test --store "$dir" "$@" >"$dir/out.txt" 2>&1
  verdict=$(tail -n 1 "$dir/out.txt")
  echo "$(date -u +%H:%M:%S) run $i: $verdict"
  if [ "$verdict" = "valid: true" ]; then
    valid=$((valid + 1))
    rm -rf "$dir"
  else
    invalid=$((invalid + 1))
    grep -E '^(set|bank|register|workload|PowerCut|Kill|Pause)' "$dir/out.txt" | head -n 20
    echo "   kept: $dir"
  fi
done
echo "repeat: $valid valid, $invalid not valid, of $runs"
[ "$invalid" -eq 0 ]
