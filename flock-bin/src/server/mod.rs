//! `flock server`: the [`flock_chord::Node`] ring machine on real UDP sockets, with its
//! records in SQLite ([`flock_store::ServerDb`]).
//!
//! Embedding: [`start`] runs a node on its own thread (returns once bound), [`run`] runs
//! one on the current thread until Ctrl-C or SIGTERM; both take [`ServerOptions`] (or the
//! command line's `ServerArgs`, with the `cli` feature).
//!
//! One thread, one tokio `current_thread` runtime, one loop:
//!
//! ```text
//! loop {
//!     wait for: a datagram on any socket | the node's next timer | shutdown
//!     read every datagram that is ready (up to --batch), each one:
//!         rate limit by source -> Frame::decode (once; failures counted, dropped)
//!         -> STATUS/SNAPSHOT/CHECKSUM answered here, signed records through the
//!            verification pool, everything else -> node
//!     run due timers
//!     drain the node's actions: Store ops go into ONE ServerDb::apply transaction,
//!     which commits before any frame of the drain is sent (persist before acknowledge)
//! }
//! ```
//!
//! Batching the drain is what makes durable registrations fast: one `fsync` covers every
//! registration that arrived together. The sockets: the command socket (`--bind:--port`,
//! default 0.0.0.0:12345), a broadcast listener on 255.255.255.255:`port` when bound to one
//! address, the PING socket (`--ping-port`, default `port + 1`) and the multicast
//! discovery listener (224.0.0.1:10003). Whether to found a ring or join one is the
//! machine's decision ([`flock_chord::Config::may_found`]): the driver only feeds it.
//!
//! | module | concern |
//! | --- | --- |
//! | `options` | [`ServerOptions`] |
//! | `args` | the clap `ServerArgs`, logging, `main_from_env` (feature `cli`) |
//! | `sockets` | binding the sockets, the advertised address |
//! | `run_loop` | the event loop |
//! | `status` | the JSON of `STATUS` / `SNAPSHOT` / `CHECKSUM` |
//! | `gate` | address cookies and the anti-amplification credit |
//! | `auth` | the cluster key: HMAC over every ring frame, replay window |
//! | `verify` | the caching verifier and the verification pool |

#[cfg(feature = "cli")]
mod args;
mod auth;
mod gate;
mod options;
mod run_loop;
mod sockets;
mod status;
mod verify;

use std::future::Future;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;

use tracing::info;

#[cfg(feature = "cli")]
pub use args::{ServerArgs, init_tracing, main_from_env};
pub(crate) use auth::ClusterAuth;
pub use auth::{KEY_LEN, new_key_file, parse_keys, read_keys};
pub use options::{Cidr, ServerOptions};
pub use sockets::local_ip_toward;
pub use verify::CachingVerifier;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be opened or used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The database could not be opened, read or written.
    #[error("database: {0}")]
    Store(#[from] flock_store::StoreError),
    /// A bad option.
    #[error("{0}")]
    Config(String),
}

/// Writes a new random cluster key to `path` (`flock keygen --cluster FILE`); refuses to
/// overwrite an existing file.
pub fn write_cluster_key(path: &std::path::Path) -> Result<(), ServerError> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| ServerError::Config(format!("OS randomness: {e}")))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(format!("create {}", path.display())))?;
    std::io::Write::write_all(&mut f, new_key_file(&key).as_bytes())
        .map_err(io_err(format!("write {}", path.display())))
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Runs a server until Ctrl-C or SIGTERM, then leaves the ring gracefully.
pub fn run(opts: impl Into<ServerOptions>) -> Result<(), ServerError> {
    let opts = opts.into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("tokio runtime"))?;
    rt.block_on(async move {
        let shutdown = Box::pin(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => info!("Ctrl-C: leaving the ring"),
                            _ = term.recv() => info!("SIGTERM: leaving the ring"),
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        });
        run_loop::serve(opts, shutdown, None, CachingVerifier::new()).await
    })
}

/// A server running on its own thread (benchmarks, in-process tests).
#[derive(Debug)]
pub struct Running {
    /// The node's command address.
    pub addr: SocketAddrV4,
    verifier: CachingVerifier,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Running {
    /// The node's signature verifier (its caches are shared with the node).
    pub fn verifier(&self) -> &CachingVerifier {
        &self.verifier
    }

    /// Asks the server to leave and waits for its thread.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ServerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(ServerError::Config("server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts a server on a new thread; returns once its sockets are bound.
pub fn start(opts: impl Into<ServerOptions>) -> Result<Running, ServerError> {
    let opts = opts.into();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let verifier = CachingVerifier::new();
    let v = verifier.clone();
    let thread = std::thread::Builder::new()
        .name(format!("flock-server-{}", opts.name))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err("tokio runtime"))?;
            rt.block_on(async move {
                let shutdown = Box::pin(async move {
                    let _ = stop_rx.await;
                });
                run_loop::serve(opts, shutdown, Some(ready_tx), v).await
            })
        })
        .map_err(io_err("spawn server thread"))?;
    match ready_rx.recv() {
        Ok(addr) => Ok(Running {
            addr,
            verifier,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Err(_) => Err(thread
            .join()
            .unwrap_or_else(|_| Err(ServerError::Config("server thread panicked".into())))
            .err()
            .unwrap_or_else(|| ServerError::Config("server exited early".into()))),
    }
}

/// Completes when the server should leave the ring and stop.
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
