//! Flock binaries and tokio drivers.
