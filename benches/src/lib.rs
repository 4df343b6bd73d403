//! HyperCache load generators.
//!
//! `hcbench` ([`load`]) is a closed-loop generator: `concurrency` tasks share one
//! [`hypercache_client::Client`] (tonic multiplexes them over one HTTP/2 connection per node),
//! and each task issues its next operation as soon as the previous one returns. Closed-loop
//! load measures latency *under the offered concurrency*; it under-reports tail latency compared
//! with an open-loop (fixed arrival rate) generator, because a slow response also delays the
//! requests that would have queued behind it (coordinated omission). That is deliberate for now:
//! it is simple, bounded, and good for comparing builds. Latencies are recorded per operation
//! type in HDR histograms (microseconds, 3 significant digits); only successful operations are
//! timed, failures are counted by error kind.
//!
//! Every run is bounded: by `--duration` or by `--count`, and every operation by the client's
//! request deadline.
//!
//! `--system etcd|redis` ([`peers`], issue #19) drives etcd or Redis instead, with the same loop,
//! keys, values and deadline, so the three can be compared in one run
//! (`benches/scripts/peer-suite.sh`). Redis and etcd get one connection per worker and per member
//! respectively (see each backend for why); HyperCache's client multiplexes itself.
//!
//! The game-state benchmarks of issue #3 ([`game`]) are `hcbench` subcommands (`board-sync`,
//! `watch-latency`, `heartbeat`, `lease-expiry`); `hcbench` without a subcommand is the KV load
//! generator above, so existing scripts keep working.
//!
//! The Orbstrike benchmarks of issue #4 ([`orbstrike`]) are the `orbstrike-*` subcommands.
//!
//! `routing-cost` ([`routing_cost`], issue #6) sets the client's CPU per request against the CPU
//! of its key -> shard routing step. The KV generator's `--cpu` adds the CPU time of the nodes
//! and of hcbench over the measured phase (ops per CPU-second, for the sharded throughput runs).

pub mod game;
pub mod load;
pub mod orbstrike;
pub mod peers;
pub mod report;
pub mod routing_cost;
pub mod timeline;
