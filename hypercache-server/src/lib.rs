//! HyperCache node.
pub mod storage;
pub mod types;
