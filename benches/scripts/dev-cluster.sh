# Sourced by the benchmark suites: a fresh `hypercache dev` cluster per run, stopped as a whole.
# Needs $bin (the directory of the release binaries) and $dir (the suite's scratch directory).
# The dev supervisor runs in its own process group (setsid), so stopping the group also reaches
# any node it could not stop itself.

dev=

# stop_group PID: SIGTERM to the process group PID leads, up to 20 s for it to go, then SIGKILL.
stop_group() {
  kill -TERM -- "-$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 -- "-$1" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

stop_cluster() {
  [ -n "$dev" ] || return 0
  stop_group "$dev"
  dev=
}

# fresh_run_dir: an empty $dir/run, the previous run's data deleted and synced first (writeback
# of old dirty pages would compete with this run's fsyncs).
fresh_run_dir() {
  rm -rf "$dir/run"
  sync
  mkdir -p "$dir/run"
}

# start_cluster SHARDS BASE-PORT ADMIN-BASE-PORT: a fresh 3-node cluster in a fresh $dir/run;
# returns 1, with the supervisor's output, if it is not ready within 120 s.
start_cluster() {
  stop_cluster
  fresh_run_dir
  setsid "$bin/hypercache" dev --nodes 3 --shards "$1" --dir "$dir/run" --base-port "$2" --admin-base-port "$3" \
    >"$dir/run/dev.out" 2>&1 &
  dev=$!
  for _ in $(seq 1 600); do grep -qs "cluster ready\|not every shard" "$dir/run/dev.out" && break; sleep 0.2; done
  if ! grep -q "cluster ready" "$dir/run/dev.out"; then
    cat "$dir/run/dev.out" >&2
    return 1
  fi
}
