//! Flock binaries and tokio drivers.
//!
//! - [`server`]: `flock server`, the ring machine ([`flock_chord::Node`]) on UDP sockets
//!   with its records in SQLite.
//! - [`tools`]: `flock status`, `flock resolve`, `flock register`.
//! - [`bench`](mod@bench): `flock bench`, the server against a bare UDP echo baseline.
//! - [`proxy`]: `flock proxy`, discovery across subnets.
//! - [`ratelimit`]: per-source token buckets.
//! - [`web`]: `flock web`, the browser UI (axum, one WebSocket per page).
#![warn(missing_docs)]

pub mod bench;
pub mod chat;
pub mod client;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod tools;
pub mod web;
