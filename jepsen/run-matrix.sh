#!/usr/bin/env bash
# The chaos matrix: real `hypercache` processes on loopback (the local target) and, in the long
# matrix, one container per node found by DNS name (the docker target).
#
#   jepsen/run-matrix.sh --short   what .ci/run runs (a few minutes on a 2-core machine): every
#                                  workload once under kill,pause,partition together, register
#                                  under wiped disks, set and register under power cuts, register under
#                                  membership churn with kills, and the failpoint checks (a build
#                                  with bugs on purpose must be caught: valid: false)
#   jepsen/run-matrix.sh           the long matrix: every workload x every nemesis, one at a time
#                                  and all together, $HCJEPSEN_TIME_LIMIT seconds each (300), on
#                                  each target in $HCJEPSEN_TARGETS (local,docker)
#
# HCJEPSEN_SEED fixes the seed (default: a new one, printed); HCJEPSEN_STORE the directory the runs
# go to (default: a new one under /tmp, printed). Exit 0 only if every run is valid and every
# failpoint run is caught. The docker target needs a Docker engine, root, nsenter and iptables.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=long
case "${1:-}" in
  --short) mode=short ;;
  "") ;;
  *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac
seed=${HCJEPSEN_SEED:-$(date +%s)}
store=${HCJEPSEN_STORE:-$(mktemp -d /tmp/hcjepsen-matrix.XXXXXX)}
echo "matrix: $mode, seed $seed, runs in $store"

cargo build -q --bin hypercache --bin hcjepsen || exit 1
hcj=./target/debug/hcjepsen
workloads=$($hcj test --help | sed -n 's/.*possible values: \(.*\)\]/\1/p' | head -1 | tr -d ' ')
failed=0

# One hcjepsen run; `want` is the exit code that counts as a pass (0 valid, 1 caught).
run() {
  local want=$1; shift
  echo "== hcjepsen test $*"
  "$hcj" test --seed "$seed" --store "$store" "$@" 2>&1 | tail -n 15
  local got=${PIPESTATUS[0]}
  if [ "$got" != "$want" ]; then
    echo "!! expected exit $want, got $got: hcjepsen test $*"
    failed=1
  fi
}

# A failpoint whose trigger is a race (a fault landing while a write is in flight): up to three
# runs (seeds seed, seed+1, seed+2) and one of them must be caught (exit 1).
run_until_caught() {
  local s
  for s in "$seed" $((seed + 1)) $((seed + 2)); do
    echo "== hcjepsen test --seed $s $*"
    "$hcj" test --seed "$s" --store "$store" "$@" 2>&1 | tail -n 15
    if [ "${PIPESTATUS[0]}" = 1 ]; then return; fi
  done
  echo "!! not caught in three runs: hcjepsen test $*"
  failed=1
}

if [ "$mode" = short ]; then
  for w in ${workloads//,/ }; do
    run 0 --workload "$w" --nemesis kill,pause,partition --time-limit 15
  done
  run 0 --workload register --nemesis wipe --time-limit 15
  # Power cuts of the whole cluster (needs root: each node's data on its own loop-mounted ext4).
  run 0 --workload set --nemesis power --time-limit 15
  # ... and linearizable reads across them (ADR 41: a restarted leader answered from before the
  # writes it had acknowledged).
  run 0 --workload register --nemesis power --time-limit 15
  # Membership churn riding on kills: joins, decommissions, replica moves under faults.
  run 0 --workload register --nemesis churn,kill --time-limit 20
  # Quiet shards (ADR 43): with 8 shards most are idle and stop ticking, and the kills, pauses and
  # cuts land on them. Without the beat answer that wakes a quiet shard for a member that knows no
  # leader, a restarted node stayed unready here (seed 7: `recovery after heal: cluster not ready`).
  run 0 --workload register --nemesis kill,pause,partition --shards 8 --time-limit 30

  echo "== failpoints: a node built with bugs on purpose must be caught"
  cargo build -q -p hypercache-server --features failpoints --bin hypercache || exit 1
  cp target/debug/hypercache target/debug/hypercache-failpoints
  cargo build -q -p hypercache-server --bin hypercache || exit 1
  # stale-read: linearizable reads served locally; an isolated node answers from the past. The
  # register workload's node-bound readers ask nodes the routed client would skip (caught on
  # seeds 1-4 by hand, every key but one; before them CI missed it on seeds 1-3 of 30 s runs).
  export HYPERCACHE_BIN="$PWD/target/debug/hypercache-failpoints" HYPERCACHE_FAILPOINTS=stale-read
  run_until_caught --workload register --nemesis partition --time-limit 15
  # accept-stale-epoch: a deposed board owner's checkpoint is written instead of refused. No
  # nemesis: owners depose each other all the time (docs/chaos.md, measured catch rate).
  export HYPERCACHE_FAILPOINTS=accept-stale-epoch
  run 1 --workload board --time-limit 15
  # double-apply: a retried write that was already applied is applied again. The lose-reply
  # fault answers every third tracked write OUTCOME_UNKNOWN after applying it, so the client
  # repeats it with the same write id; the repeated append's comparison then fails and the client
  # is told `fail` for an element later reads show (aborted-read). Waiting for kills and pauses
  # to land between a commit and its reply missed it in all three seeds of a CI run (docs/chaos.md).
  # The same fault without the bug must stay valid: sessions answer the repeat with its first outcome.
  export HYPERCACHE_FAILPOINTS=lose-reply
  run 0 --workload list-append --time-limit 15
  export HYPERCACHE_FAILPOINTS=double-apply,lose-reply
  run 1 --workload list-append --time-limit 15
  # ack-before-flush: log appends acknowledged without an fsync; a power cut of every node loses
  # acknowledged adds (caught 3 of 3 seeds by hand).
  export HYPERCACHE_FAILPOINTS=ack-before-flush
  run 1 --workload set --nemesis power --time-limit 15
  unset HYPERCACHE_BIN HYPERCACHE_FAILPOINTS
else
  limit=${HCJEPSEN_TIME_LIMIT:-300}
  for target in $(echo "${HCJEPSEN_TARGETS:-local,docker}" | tr ',' ' '); do
    echo "== hcjepsen matrix --target $target --time-limit $limit"
    "$hcj" matrix --target "$target" --workloads "$workloads" --time-limit "$limit" --seed "$seed" \
      --store "$store" || failed=1
  done
fi

if [ "$failed" = 0 ]; then echo "matrix: every run as expected"; else echo "matrix: FAILED (see above)"; fi
exit "$failed"
