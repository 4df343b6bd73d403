//! The chaos suite behind `hcjepsen` (see docs/chaos.md).
//!
//! A run starts a fresh cluster ([`target`]), lets several client processes drive a workload
//! against it ([`workload`]) while a nemesis injects faults on a seeded schedule ([`nemesis`]),
//! heals everything, lets the workload do its final reads, and checks the recorded [`history`]
//! ([`checker`]), and measures [`availability`] during each fault. [`run`] ties these together;
//! [`report`] writes and reads the run directory's records and verdict; [`render`] draws the
//! plots and `index.html` from them.
//!
//! Dependencies point one way: `history` is used by all and uses none; `checker` and
//! `workload` use only `history`; `target` uses nothing else here; `nemesis` uses `target` and
//! `history`; `availability` reads `history` and the nemesis log's types; `report` uses those
//! and `checker`; `render` reads what `report` holds (and the types it is made of) and is used
//! only by `run` and the `hcjepsen` binary; `run` uses everything and nothing uses it.

pub mod availability;
pub mod checker;
pub mod history;
pub mod nemesis;
pub mod render;
pub mod report;
pub mod run;
pub mod target;
pub mod workload;
