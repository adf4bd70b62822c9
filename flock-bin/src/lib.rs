//! Flock's tokio drivers for its sans-IO machines, and the `flock` command.
//!
//! The library is the two drivers and what they share:
//!
//! - [`server`]: a ring node, the machine [`flock_chord::Node`] on UDP sockets with its
//!   records in SQLite.
//! - [`client`]: an embeddable chat [`Client`](client::Client), the machine
//!   [`flock_proto::client`] on one UDP socket with its state in SQLite.
//! - [`proxy`]: discovery across subnets (`flock proxy`), as a library type.
//! - [`ratelimit`]: per-source token buckets.
//!
//! # Embedding
//!
//! The command-line interface, the console UI, the web UI and the benchmark sit behind
//! cargo features that only the `flock` binary needs. An application that wants the client
//! or a server node depends on the library alone, which brings no web framework, argument
//! parser or log subscriber:
//!
//! ```toml
//! [dependencies]
//! flock-bin = { version = "0.1", default-features = false }
//! ```
//!
//! `cargo run --release --example client` in the repository is such an application.
//!
//! # Features
//!
//! | feature | adds | brings in |
//! |---|---|---|
//! | `cli` | `tools` (`flock status`, `resolve`, `register`), the `flock` binary, argument types | clap, tracing-subscriber |
//! | `console` | `chat` (`flock chat`) | `cli` |
//! | `web` | `web` (`flock web`) | `cli`, axum, serde |
//! | `bench` | `bench` (`flock bench`) | `cli` |
//!
//! All four are on by default (`cargo install flock-bin` gives the whole command).
#![warn(missing_docs)]

pub mod client;
pub mod proxy;
pub mod ratelimit;
pub mod server;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "console")]
pub mod chat;
#[cfg(any(feature = "console", feature = "web"))]
pub mod lookalike;
#[cfg(feature = "cli")]
pub mod tools;
#[cfg(feature = "web")]
pub mod web;

/// A fresh CSPRNG seeded from the OS: the seed source of the drivers (the machines take
/// their randomness as an input).
///
/// # Panics
///
/// If the OS has no randomness to give, which no supported platform does.
pub fn os_rng() -> rand_chacha::ChaCha20Rng {
    use rand_core::SeedableRng;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("OS randomness");
    rand_chacha::ChaCha20Rng::from_seed(seed)
}
