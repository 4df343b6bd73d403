//! Cluster control for HyperCache's multi-host tests, and its chaos suite.
//!
//! Every node runs in its own container on a private Docker network, so it has its own IP and
//! hostname, and a network alias plays the Kubernetes headless Service: all nodes answer to
//! `hypercache`, each also to its own hostname (`hypercache-<n>`). Nodes are told nothing but
//! that name: no IP is configured anywhere.
//!
//! - [`docker`]: a thin wrapper over the `docker` CLI and [`docker::Scope`], which removes every
//!   container, network and volume it created when dropped, also when a test panics.
//! - [`cluster`]: a HyperCache cluster in containers: start, stop, remove and recreate nodes with
//!   new IPs but the same name and data volume, wait for readiness, run `hcctl` inside the
//!   network.
//! - [`workload`]: the `hc-workload` client's progress reports, parsed.
//!
//! - [`chaos`]: the chaos suite behind `hcjepsen` (workloads, nemeses, histories, checkers;
//!   docs/chaos.md). Its `local` target runs `hypercache` processes on loopback, not containers.
//!
//! The images come from `k8s/images/build.sh` (FROM scratch, our binaries only).

pub mod chaos;
pub mod cluster;
pub mod docker;
pub mod workload;
