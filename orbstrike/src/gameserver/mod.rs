//! gameserver (being built).
