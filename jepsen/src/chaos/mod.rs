//! The chaos suite behind `hcjepsen` (see docs/chaos.md).
//!
//! A run starts a fresh cluster ([`target`]), lets several client processes drive a workload
//! against it ([`workload`]) while a nemesis injects faults on a seeded schedule ([`nemesis`]),
//! heals everything, lets the workload do its final reads, and checks the recorded [`history`]
//! ([`checker`]), and measures [`availability`] during each fault. [`run`] ties these together;
//! [`report`] writes and reads the run directory.
//!
//! Dependencies point one way: `history` <- `checker` <- `workload` <- `run`, and `target` <-
//! `nemesis` <- `run`; `report` knows `history`, `checker` and `availability` (which reads the
//! nemesis log's types).

pub mod availability;
pub mod checker;
pub mod history;
pub mod nemesis;
pub mod report;
pub mod run;
pub mod target;
pub mod workload;
