//! `flock server`: the [`flock_chord::Node`] ring machine on real UDP sockets, with its
//! records in SQLite ([`flock_store::ServerDb`]).
//!
//! One thread, one tokio `current_thread` runtime, one loop:
//!
//! ```text
//! loop {
//!     wait for: a datagram on any socket | the node's next timer | shutdown
//!     read every datagram that is ready (up to --batch), each one:
//!         rate limit by source -> Frame::decode (failures counted, dropped) -> node
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
//! discovery listener (224.0.0.1:10003).

mod net;
mod verify;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use flock_chord::{Action, Config, Event, Node, StoreOp};
use flock_proto::ring::RingFrame;
use flock_proto::{DecodeError, ErrorReply, Frame, OkReply, limits};
use flock_store::ServerDb;
use tokio::net::UdpSocket;
use tracing::{debug, error, info, warn};

use crate::ratelimit::RateLimiter;

pub use verify::RsaVerifier;
use verify::{Job, Pool};

/// Options of `flock server` (also used by `cargo run --example server`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Node name: answered to DISCOVER, shown in STATUS, names the data directory.
    pub name: String,
    /// Address to bind. 0.0.0.0 (default) receives broadcasts on the command socket;
    /// a specific address gets a separate broadcast listener.
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    pub bind: Ipv4Addr,
    /// Command port (0: any free port).
    #[arg(long, default_value_t = limits::SERVER_PORT)]
    pub port: u16,
    /// PING-only port (default: command port + 1, i.e. 12346; 0 disables it).
    #[arg(long)]
    pub ping_port: Option<u16>,
    /// Data directory (default: `./data/<NAME>`); the database is `server.db` inside.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replicas per record besides the owner (successor list length = replicas + 1).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Seed node(s) to join through (for networks without broadcast, or several nodes on
    /// one host). Without it the node broadcasts to find a ring, and founds one if none
    /// answers.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Vec<String>,
    /// Do not broadcast to find a ring and do not listen for broadcasts.
    #[arg(long)]
    pub no_broadcast: bool,
    /// Do not listen for multicast DISCOVER_SERVER.
    #[arg(long)]
    pub no_multicast: bool,
    /// The address peers know this node by (default: --bind, or the address of the
    /// default route when bound to 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<Ipv4Addr>,
    /// Requests per second one source address may cause (0: unlimited). A REGISTER costs
    /// 5, an admin request 5, anything else 1. Ring members are exempt.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Burst allowance per source address.
    #[arg(long, default_value_t = 2000.0)]
    pub burst: f64,
    /// Most datagrams read before the actions are drained (and committed) together.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Longest a graceful leave may take at shutdown, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub leave_timeout: f64,
    /// Threads that verify signatures ahead of the event loop (default: one per core;
    /// 0: verify on the event loop).
    #[arg(long)]
    pub verify_threads: Option<usize>,
    /// How long to listen for an existing ring before founding one, in milliseconds.
    #[arg(long, default_value_t = 1200)]
    pub probe_ms: u64,
}

impl ServerArgs {
    /// Defaults for a node named `name` (as if `flock server <name>`).
    pub fn new(name: &str) -> Self {
        <Self as clap::FromArgMatches>::from_arg_matches(
            &<Self as clap::Args>::augment_args(clap::Command::new("server"))
                .get_matches_from(["server", name]),
        )
        .expect("defaults parse")
    }
}

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

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Runs a server until Ctrl-C or SIGTERM, then leaves the ring gracefully.
pub fn run(args: ServerArgs) -> Result<(), ServerError> {
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
        serve(args, shutdown, None, RsaVerifier::new()).await
    })
}

/// A server running on its own thread (benchmarks, in-process tests).
#[derive(Debug)]
pub struct Running {
    /// The node's command address.
    pub addr: SocketAddrV4,
    verifier: RsaVerifier,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Running {
    /// The node's signature verifier (its caches are shared with the node).
    pub fn verifier(&self) -> &RsaVerifier {
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
pub fn start(args: ServerArgs) -> Result<Running, ServerError> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let verifier = RsaVerifier::new();
    let v = verifier.clone();
    let thread = std::thread::Builder::new()
        .name(format!("flock-server-{}", args.name))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err("tokio runtime"))?;
            rt.block_on(async move {
                let shutdown = Box::pin(async move {
                    let _ = stop_rx.await;
                });
                serve(args, shutdown, Some(ready_tx), v).await
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

/// The server's own counters (the ring machine keeps its own).
#[derive(Debug, Default, Clone)]
struct NetStats {
    datagrams_in: u64,
    decode_failed: u64,
    too_long: u64,
    not_utf8: u64,
    payload_errors: u64,
    rate_limited: u64,
    not_ipv4: u64,
    verify_queue_full: u64,
    send_failed: u64,
    store_batches: u64,
    store_ops: u64,
    store_failed: u64,
    largest_batch: u64,
    pings: u64,
    discovery_replies: u64,
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The event loop's state.
struct Server {
    name: String,
    me: SocketAddrV4,
    node: Node,
    db: ServerDb,
    sock: UdpSocket,
    bcast: Option<UdpSocket>,
    ping: Option<UdpSocket>,
    mcast: Option<UdpSocket>,
    start: Instant,
    limiter: Option<RateLimiter>,
    /// Ring members' addresses (exempt from the per-source limit), refreshed often.
    members: Vec<Ipv4Addr>,
    members_at: Instant,
    batch: usize,
    stats: NetStats,
    /// Encoded frames of the current drain.
    outbuf: Vec<u8>,
    out: Vec<(SocketAddrV4, std::ops::Range<usize>)>,
    ops: Vec<StoreOp>,
    left: bool,
    /// Datagrams whose records the pool has verified (dropped before `pool`).
    verified: Option<tokio::sync::mpsc::Receiver<Job>>,
    pool: Option<Pool>,
    verifier: RsaVerifier,
}

/// Runs a server until `shutdown` completes, then leaves gracefully. `ready` gets the
/// command address once the sockets are bound.
async fn serve(
    args: ServerArgs,
    shutdown: Shutdown,
    ready: Option<std::sync::mpsc::Sender<SocketAddrV4>>,
    verifier: RsaVerifier,
) -> Result<(), ServerError> {
    if args.replicas > 16 {
        return Err(ServerError::Config("--replicas: at most 16".into()));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("data").join(&args.name));
    std::fs::create_dir_all(&data_dir).map_err(io_err(format!("create {}", data_dir.display())))?;
    let db_path = data_dir.join("server.db");
    let db = ServerDb::open(&db_path)?;
    let records: Vec<_> = db.load()?.into_iter().map(|(r, _)| r).collect();

    let sock = net::command_socket(SocketAddrV4::new(args.bind, args.port))
        .map_err(io_err(format!("bind {}:{}", args.bind, args.port)))?;
    let port = match sock.local_addr().map_err(io_err("local address"))? {
        SocketAddr::V4(a) => a.port(),
        SocketAddr::V6(a) => a.port(),
    };
    let mut joins = Vec::new();
    for j in &args.join {
        let addr = j
            .to_socket_addrs()
            .map_err(io_err(format!("--join {j}")))?
            .find_map(|a| match a {
                SocketAddr::V4(a) => Some(a),
                SocketAddr::V6(_) => None,
            })
            .ok_or_else(|| ServerError::Config(format!("--join {j}: no IPv4 address")))?;
        joins.push(addr);
    }
    let ip = match args.advertise {
        Some(ip) => ip,
        None if !args.bind.is_unspecified() => args.bind,
        None => joins
            .first()
            .and_then(|j| net::local_ip_toward(*j))
            .or_else(|| {
                net::local_ip_toward(SocketAddrV4::new(
                    limits::DISCOVERY_GROUP,
                    limits::DISCOVERY_PORT,
                ))
            })
            .unwrap_or(Ipv4Addr::LOCALHOST),
    };
    let me = SocketAddrV4::new(ip, port);
    let broadcast = !args.no_broadcast && !args.bind.is_loopback();
    let bcast = if broadcast && !args.bind.is_unspecified() {
        match net::broadcast_socket(port) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("no broadcast listener on 255.255.255.255:{port}: {e}");
                None
            }
        }
    } else {
        None
    };
    let ping_port = args.ping_port.unwrap_or(if args.port == 0 {
        0
    } else {
        port.wrapping_add(1)
    });
    let ping = if ping_port == 0 {
        None
    } else {
        Some(
            net::plain_socket(SocketAddrV4::new(args.bind, ping_port))
                .map_err(io_err(format!("bind PING port {}:{ping_port}", args.bind)))?,
        )
    };
    let mcast = if args.no_multicast {
        None
    } else {
        match net::multicast_socket(limits::DISCOVERY_GROUP, limits::DISCOVERY_PORT, args.bind) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(
                    "no multicast discovery on {}:{}: {e}",
                    limits::DISCOVERY_GROUP,
                    limits::DISCOVERY_PORT
                );
                None
            }
        }
    };
    info!(
        "{} listening on {me} (bound {}:{port}); PING on {}; multicast discovery {}; data {} ({} records)",
        args.name,
        args.bind,
        if ping_port == 0 {
            "off".to_string()
        } else {
            ping_port.to_string()
        },
        if mcast.is_some() {
            format!("{}:{}", limits::DISCOVERY_GROUP, limits::DISCOVERY_PORT)
        } else {
            "off".into()
        },
        db_path.display(),
        records.len(),
    );
    if let Some(tx) = ready {
        let _ = tx.send(me);
    }

    let start = Instant::now();
    let broadcast_target = SocketAddrV4::new(Ipv4Addr::BROADCAST, port);
    let mut bootstrap = joins.clone();
    if joins.is_empty() && broadcast {
        let found = probe(
            &sock,
            me,
            broadcast_target,
            Duration::from_millis(args.probe_ms),
        )
        .await;
        if found.is_empty() {
            info!("no ring answered a broadcast: founding a new ring");
        } else {
            info!("found ring members {found:?}: joining");
            bootstrap = found;
            bootstrap.push(broadcast_target);
        }
    } else if broadcast {
        bootstrap.push(broadcast_target);
    }

    let config = Config {
        r: args.replicas + 1,
        bootstrap,
        name: args.name.clone(),
        ..Config::default()
    };
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| ServerError::Config(format!("OS randomness: {e}")))?;
    let threads = args.verify_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (pool, verified) = if threads == 0 {
        (None, None)
    } else {
        let (p, rx) = Pool::new(threads.min(64), &verifier, 4096)
            .map_err(io_err("start verification threads"))?;
        (Some(p), Some(rx))
    };
    let node = Node::restore(
        config,
        me,
        u64::from_le_bytes(seed),
        start.elapsed(),
        Box::new(verifier.clone()),
        records,
    );
    let limiter =
        (args.rate > 0.0).then(|| RateLimiter::new(args.rate, args.burst.max(5.0), 65_536));
    let mut server = Server {
        name: args.name.clone(),
        me,
        node,
        db,
        sock,
        bcast,
        ping,
        mcast,
        start,
        limiter,
        members: Vec::new(),
        members_at: start,
        batch: args.batch.max(1),
        stats: NetStats::default(),
        outbuf: Vec::with_capacity(1 << 16),
        out: Vec::new(),
        ops: Vec::new(),
        left: false,
        verified,
        pool,
        verifier,
    };
    server
        .run(
            shutdown,
            Duration::from_secs_f64(args.leave_timeout.max(0.0)),
        )
        .await
}

/// Broadcasts `RING DISCOVER` a few times and collects the members that answer `HERE`.
async fn probe(
    sock: &UdpSocket,
    me: SocketAddrV4,
    target: SocketAddrV4,
    window: Duration,
) -> Vec<SocketAddrV4> {
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let rid = u64::from_le_bytes(seed) | 1;
    // Jitter so nodes started together do not probe in lockstep.
    let jitter = Duration::from_millis(u64::from(seed[0]) * 2);
    let frame = Frame::Ring(RingFrame::Discover { rid }).encode_to_vec();
    let end = Instant::now() + window + jitter;
    let mut found: Vec<SocketAddrV4> = Vec::new();
    let mut next_send = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < end && found.len() < 64 {
        if Instant::now() >= next_send {
            if let Err(e) = sock.send_to(&frame, target).await {
                debug!("probe to {target}: {e}");
            }
            next_send += window / 3;
        }
        let until = end.min(next_send);
        match tokio::time::timeout_at(until.into(), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, SocketAddr::V4(from)))) if from != me => {
                if let Ok(Frame::Ring(RingFrame::Here { rid: r, .. })) = Frame::decode(&buf[..n]) {
                    if r == rid && !found.contains(&from) {
                        found.push(from);
                    }
                }
            }
            _ => {}
        }
        if !found.is_empty() && Instant::now() + window / 4 >= end {
            break;
        }
    }
    found
}

async fn recv_job(r: &mut Option<tokio::sync::mpsc::Receiver<Job>>) -> Option<Job> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(s: &Option<UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// What woke the loop.
enum Wake {
    Shutdown,
    LeaveTimeout,
    Command(io::Result<(usize, SocketAddr)>),
    Broadcast(io::Result<(usize, SocketAddr)>),
    Ping(io::Result<(usize, SocketAddr)>),
    Multicast(io::Result<(usize, SocketAddr)>),
    Verified(Option<Job>),
    Timer,
}

impl Server {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(
        &mut self,
        mut shutdown: Shutdown,
        leave_timeout: Duration,
    ) -> Result<(), ServerError> {
        let mut buf = vec![0u8; 1 << 16];
        let mut buf_b = vec![0u8; 1 << 16];
        let mut buf_p = vec![0u8; 2048];
        let mut buf_m = vec![0u8; 2048];
        let far = Duration::from_secs(3600);
        let timer = tokio::time::sleep(far);
        tokio::pin!(timer);
        let leave_deadline = tokio::time::sleep(far);
        tokio::pin!(leave_deadline);
        let mut leaving = false;
        let mut armed: Option<Instant> = None;
        self.drain().await;
        loop {
            if self.left {
                info!("{}: left the ring; stopping", self.name);
                break;
            }
            let wake_at = self
                .node
                .poll_timeout()
                .map_or(Instant::now() + far, |t| self.start + t);
            // Resetting a timer costs a trip through the timer wheel: only when it moved.
            if armed != Some(wake_at) {
                timer.as_mut().reset(wake_at.into());
                armed = Some(wake_at);
            }
            // Unbiased: under a flood on one socket the others, the verified registrations
            // and the timers still get their turn.
            let wake = tokio::select! {
                () = &mut shutdown, if !leaving => Wake::Shutdown,
                () = &mut leave_deadline, if leaving => Wake::LeaveTimeout,
                r = self.sock.recv_from(&mut buf) => Wake::Command(r),
                r = recv_opt(&self.bcast, &mut buf_b) => Wake::Broadcast(r),
                r = recv_opt(&self.ping, &mut buf_p) => Wake::Ping(r),
                r = recv_opt(&self.mcast, &mut buf_m) => Wake::Multicast(r),
                j = recv_job(&mut self.verified) => Wake::Verified(j),
                () = &mut timer => Wake::Timer,
            };
            match wake {
                Wake::Shutdown => {
                    leaving = true;
                    leave_deadline
                        .as_mut()
                        .reset((Instant::now() + leave_timeout).into());
                    let now = self.now();
                    self.node.leave(now);
                }
                Wake::LeaveTimeout => {
                    warn!("{}: graceful leave timed out; stopping", self.name);
                    break;
                }
                Wake::Command(r) => {
                    match r {
                        Ok((n, from)) => self.on_datagram(from, &buf[..n]),
                        Err(e) => debug!("recv: {e}"),
                    }
                    for _ in 1..self.batch {
                        match self.sock.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.on_datagram(from, &buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                debug!("recv: {e}");
                                break;
                            }
                        }
                    }
                }
                Wake::Broadcast(r) => match r {
                    Ok((n, from)) => self.on_datagram(from, &buf_b[..n]),
                    Err(e) => debug!("recv (broadcast): {e}"),
                },
                Wake::Ping(r) => {
                    if let Ok((n, SocketAddr::V4(from))) = r {
                        self.on_ping(from, &buf_p[..n]).await;
                    }
                }
                Wake::Multicast(r) => {
                    if let Ok((n, SocketAddr::V4(from))) = r {
                        self.on_multicast(from, &buf_m[..n]).await;
                    }
                }
                Wake::Verified(job) => {
                    match job {
                        Some((from, data)) => self.on_verified(from, &data),
                        None => self.verified = None,
                    }
                    for _ in 1..self.batch {
                        let Some(rx) = self.verified.as_mut() else {
                            break;
                        };
                        match rx.try_recv() {
                            Ok((from, data)) => self.on_verified(from, &data),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Timer => armed = None,
            }
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            self.drain().await;
        }
        self.drain().await;
        Ok(())
    }

    /// Whether `ip` is a ring member we know (exempt from the per-source limit).
    fn is_member(&mut self, ip: Ipv4Addr) -> bool {
        if self.members_at.elapsed() > Duration::from_millis(500) {
            self.refresh_members();
        }
        self.members.contains(&ip)
    }

    fn refresh_members(&mut self) {
        let me = *self.me.ip();
        let mut m: Vec<Ipv4Addr> = self
            .node
            .successors()
            .iter()
            .chain(self.node.predecessor().iter())
            .map(|p| *p.addr.ip())
            .chain(self.node.fingers().iter().map(|p| *p.addr.ip()))
            .filter(|ip| *ip != me)
            .collect();
        m.sort_unstable();
        m.dedup();
        self.members = m;
        self.members_at = Instant::now();
    }

    /// Charges `cost` to `from`'s bucket; `false`: drop the datagram.
    fn allow(&mut self, from: Ipv4Addr, cost: f64) -> bool {
        if self.limiter.is_none() || self.is_member(from) {
            return true;
        }
        let ok = self
            .limiter
            .as_mut()
            .is_some_and(|l| l.allow(from, cost, Instant::now()));
        if !ok {
            self.stats.rate_limited += 1;
        }
        ok
    }

    fn on_datagram(&mut self, from: SocketAddr, data: &[u8]) {
        self.stats.datagrams_in += 1;
        let SocketAddr::V4(from) = from else {
            self.stats.not_ipv4 += 1;
            return;
        };
        if !self.allow(*from.ip(), 1.0) {
            return;
        }
        let frame = match Frame::decode(data) {
            Ok(f) => f,
            Err(e) => {
                self.stats.decode_failed += 1;
                match e {
                    DecodeError::TooLong(_) => self.stats.too_long += 1,
                    DecodeError::NotUtf8 => self.stats.not_utf8 += 1,
                    _ => {}
                }
                debug!("{from}: undecodable datagram ({} bytes): {e}", data.len());
                if e.verb() == Some("REGISTER") {
                    self.stats.payload_errors += 1;
                    self.queue(from, &Frame::Error(ErrorReply::InvalidPayload));
                }
                return;
            }
        };
        let extra = match frame {
            Frame::Register(_) | Frame::RegisterLegacy { .. } => 4.0,
            Frame::Status | Frame::Snapshot | Frame::Checksum => 4.0,
            _ => 0.0,
        };
        if extra > 0.0 && !self.allow(*from.ip(), extra) {
            return;
        }
        if let Some(pool) = &self.pool {
            if verify::carries_records(&frame) {
                if !pool.submit((from, data.to_vec())) {
                    self.stats.verify_queue_full += 1;
                }
                return;
            }
        }
        let now = self.now();
        self.node.handle_datagram(now, from, frame);
    }

    /// A datagram back from the verification pool (already rate-limited).
    fn on_verified(&mut self, from: SocketAddrV4, data: &[u8]) {
        if let Ok(frame) = Frame::decode(data) {
            let now = self.now();
            self.node.handle_datagram(now, from, frame);
        }
    }

    async fn on_ping(&mut self, from: SocketAddrV4, data: &[u8]) {
        self.stats.datagrams_in += 1;
        if !self.allow(*from.ip(), 1.0) {
            return;
        }
        if let Ok(Frame::Ping) = Frame::decode(data) {
            self.stats.pings += 1;
            if let Some(s) = &self.ping {
                if let Err(e) = s.send_to(b"PONG", from).await {
                    debug!("PONG to {from}: {e}");
                }
            }
        }
    }

    async fn on_multicast(&mut self, from: SocketAddrV4, data: &[u8]) {
        self.stats.datagrams_in += 1;
        if !self.allow(*from.ip(), 1.0) {
            return;
        }
        if let Ok(Frame::DiscoverServer { reply_to }) = Frame::decode(data) {
            let to = reply_to.unwrap_or(from);
            let mut out = Vec::with_capacity(16);
            flock_proto::encode_discover_server_reply(*self.me.ip(), &mut out);
            self.stats.discovery_replies += 1;
            if let Some(s) = &self.mcast {
                if let Err(e) = s.send_to(&out, to).await {
                    debug!("DISCOVER_SERVER reply to {to}: {e}");
                }
            }
        }
    }

    /// Encodes `frame` for sending at the end of this drain.
    fn queue(&mut self, to: SocketAddrV4, frame: &Frame<'_>) {
        let at = self.outbuf.len();
        frame.encode(&mut self.outbuf);
        self.out.push((to, at..self.outbuf.len()));
    }

    fn queue_raw(&mut self, to: SocketAddrV4, bytes: &[u8]) {
        let at = self.outbuf.len();
        self.outbuf.extend_from_slice(bytes);
        self.out.push((to, at..self.outbuf.len()));
    }

    /// Performs every pending action: stores in one transaction, then the sends.
    async fn drain(&mut self) {
        let mut first_store_at: Option<usize> = None;
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send { to, frame } => {
                    if let Frame::Ok(OkReply::Json(json)) = &frame {
                        if let Some(more) = self.augment_status(json) {
                            self.queue(to, &Frame::Ok(OkReply::Json(more.into())));
                            continue;
                        }
                    }
                    self.queue(to, &frame);
                }
                Action::Store(op) => {
                    first_store_at.get_or_insert(self.out.len());
                    self.ops.push(op);
                }
                Action::Event(e) => self.on_event(e),
            }
        }
        if !self.ops.is_empty() {
            self.stats.store_batches += 1;
            self.stats.store_ops += self.ops.len() as u64;
            self.stats.largest_batch = self.stats.largest_batch.max(self.ops.len() as u64);
            if let Err(e) = self.db.apply(&self.ops) {
                // Nothing of the batch is durable: do not send what depends on it.
                self.stats.store_failed += 1;
                error!(
                    "{}: storing {} changes failed: {e}",
                    self.name,
                    self.ops.len()
                );
                if let Some(at) = first_store_at {
                    self.out.truncate(at);
                }
            }
            self.ops.clear();
        }
        for (to, range) in std::mem::take(&mut self.out) {
            let bytes = &self.outbuf[range];
            let res = match self.sock.try_send_to(bytes, SocketAddr::V4(to)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.sock.send_to(bytes, SocketAddr::V4(to)).await
                }
                r => r,
            };
            if let Err(e) = res {
                self.stats.send_failed += 1;
                debug!("send to {to}: {e}");
            }
        }
        self.outbuf.clear();
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Joined { id, lo, hi } => info!(
                "{} joined the ring as {} (id {id}): owns [{lo}, {hi}]; listening on {}",
                self.name, self.me, self.me
            ),
            Event::RangeChanged { lo, hi } => info!("{}: range now [{lo}, {hi}]", self.name),
            Event::SuccessorChanged { succ } => match succ {
                Some(p) => info!("{}: successor {} (id {})", self.name, p.addr, p.id),
                None => info!("{}: no successor (alone)", self.name),
            },
            Event::PredecessorChanged { pred } => match pred {
                Some(p) => info!("{}: predecessor {} (id {})", self.name, p.addr, p.id),
                None => info!("{}: no predecessor", self.name),
            },
            Event::PeerDead { addr } => warn!("{}: peer {addr} stopped answering", self.name),
            Event::TakeoverDone { lo, hi, records } => info!(
                "{}: took over [{lo}, {hi}] with {records} records",
                self.name
            ),
            Event::Left => {
                info!("{}: graceful leave finished", self.name);
                self.left = true;
            }
            Event::Discovery { reply_to, name, .. } => {
                let mut out = Vec::with_capacity(32);
                if name {
                    flock_proto::encode_discover_reply(&self.name, &mut out);
                } else {
                    flock_proto::encode_discover_server_reply(*self.me.ip(), &mut out);
                }
                self.stats.discovery_replies += 1;
                self.queue_raw(reply_to, &out);
            }
        }
    }

    /// Adds the server's own counters and the database's counts to a STATUS reply.
    fn augment_status(&self, json: &str) -> Option<String> {
        if !json.contains("\"succs\"") {
            return None;
        }
        let mut v: serde_json::Value = serde_json::from_str(json).ok()?;
        let obj = v.as_object_mut()?;
        obj.get("counters")?;
        let s = &self.stats;
        let mut net = serde_json::Map::new();
        for (k, val) in [
            ("datagrams_in", s.datagrams_in),
            ("decode_failed", s.decode_failed),
            ("too_long", s.too_long),
            ("not_utf8", s.not_utf8),
            ("payload_errors", s.payload_errors),
            ("rate_limited", s.rate_limited),
            ("not_ipv4", s.not_ipv4),
            ("verify_queue_full", s.verify_queue_full),
            ("send_failed", s.send_failed),
            ("store_batches", s.store_batches),
            ("store_ops", s.store_ops),
            ("store_failed", s.store_failed),
            ("largest_batch", s.largest_batch),
            ("pings", s.pings),
            ("discovery_replies", s.discovery_replies),
        ] {
            net.insert(k.into(), val.into());
        }
        obj.insert("net".into(), net.into());
        if let Ok(c) = self.db.counts() {
            let mut db = serde_json::Map::new();
            db.insert("owned".into(), c.owned.into());
            db.insert("replicas".into(), c.replicas.into());
            obj.insert("stored".into(), db.into());
        }
        let (hits, verifications) = self.verifier.stats();
        if let Some(serde_json::Value::Object(net)) = obj.get_mut("net") {
            net.insert("verify_cache_hits".into(), hits.into());
            net.insert("verifications".into(), verifications.into());
        }
        obj.insert(
            "uptime_ms".into(),
            (self.start.elapsed().as_millis() as u64).into(),
        );
        Some(v.to_string())
    }
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `main` of a program that is only a server: parses [`ServerArgs`] from the command
/// line, sets up logging and runs (what `cargo run --example server` does).
pub fn main_from_env() -> std::process::ExitCode {
    #[derive(Debug, clap::Parser)]
    #[command(name = "server", about = "A Flock ring server")]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }
    let cli = <Cli as clap::Parser>::parse();
    init_tracing();
    match run(cli.args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
