#!/usr/bin/env bash
# Issue #5 recovery targets, measured on containers with their own IPs and Docker DNS:
# a recreated node (same name and data, new IP) ready <= 5 s after it starts, and a full restart
# with new IPs writable <= 10 s after the last node starts. Release binaries in a FROM-scratch
# image (k8s/images/build.sh), then `hc-restart-bench` (jepsen/src/bin/hc-restart-bench.rs).
# Usage: benches/scripts/discovery-suite.sh [rounds]   (default 5; about 10 s per round)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
k8s/images/build.sh --only jepsen --tag bench
cargo build --release -p hypercache-jepsen --bin hc-restart-bench
echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
./target/release/hc-restart-bench --rounds "$rounds" --image hypercache-jepsen:bench
