//! Simulator (coming).
