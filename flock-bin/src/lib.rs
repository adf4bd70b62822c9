//! Flock binaries and tokio drivers.

pub mod ratelimit;
