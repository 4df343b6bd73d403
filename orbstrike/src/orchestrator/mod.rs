//! orchestrator (being built).
