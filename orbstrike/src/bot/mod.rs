//! bot (being built).
