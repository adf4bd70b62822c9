//! The event loop: one node, its sockets, its database, and the drain that persists
//! before it sends.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flock_chord::{Action, Config, Event, Node, StoreOp};
use flock_proto::ring::RingFrame;
use flock_proto::{DecodeError, ErrorReply, Frame, OkReply, limits};
use flock_store::ServerDb;
use tokio::net::UdpSocket;
use tracing::{debug, error, info, warn};

use super::auth::{self, ClusterAuth};
use super::gate::{Gate, Verdict};
use super::options::Cidr;
use super::sockets::{self, Sockets};
use super::status::{self, DriverStatus, NetStats};
use super::verify::{self, CachingVerifier, Job, VerifyPool};
use super::{ServerError, ServerOptions, Shutdown, io_err};
use crate::ratelimit::RateLimiter;

/// One encoded datagram of the current drain.
struct Outgoing {
    to: SocketAddrV4,
    /// Its bytes in `Server::outbuf`.
    bytes: std::ops::Range<usize>,
    /// A ring frame (sent from the advertised address).
    ring: bool,
    /// Subject to the anti-amplification gate (every reply but ring frames and answers to
    /// a proxied `DISCOVER_SERVER`, which has its own rule).
    gated: bool,
}

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
    /// Ring members' addresses (their ring frames are exempt from the per-source limit),
    /// refreshed often.
    members: Vec<SocketAddrV4>,
    /// Address validation: nothing is a reflector.
    gate: Gate,
    /// The cluster key (`None`: an open ring).
    auth: Option<ClusterAuth>,
    /// Who may ask `STATUS`, `SNAPSHOT`, `CHECKSUM` (once validated).
    admin_allow: Vec<Cidr>,
    /// The directly connected subnets (the scope of a proxied `DISCOVER_SERVER`).
    subnets: Vec<Cidr>,
    subnets_at: Instant,
    members_at: Instant,
    batch: usize,
    stats: NetStats,
    /// Encoded frames of the current drain.
    outbuf: Vec<u8>,
    out: Vec<Outgoing>,
    /// Source address for ring frames when bound to 0.0.0.0 (see [`sockets::send_from`]):
    /// peers must see the node at the address it advertises, whatever address they sent to.
    ring_source: Option<Ipv4Addr>,
    ops: Vec<StoreOp>,
    left: bool,
    /// Whether the node ever was a ring member (founded or joined).
    was_member: bool,
    /// Frames whose records the pool has verified (dropped before `pool`).
    verified: Option<tokio::sync::mpsc::Receiver<Job>>,
    pool: Option<VerifyPool>,
    verifier: CachingVerifier,
}

/// Runs a server until `shutdown` completes, then leaves gracefully. `ready` gets the
/// command address once the sockets are bound.
pub(super) async fn serve(
    opts: ServerOptions,
    shutdown: Shutdown,
    ready: Option<std::sync::mpsc::Sender<SocketAddrV4>>,
    verifier: CachingVerifier,
) -> Result<(), ServerError> {
    if opts.replicas > 16 {
        return Err(ServerError::Config("--replicas: at most 16".into()));
    }
    let data_dir = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("data").join(&opts.name));
    std::fs::create_dir_all(&data_dir).map_err(io_err(format!("create {}", data_dir.display())))?;
    let db_path = data_dir.join("server.db");
    let db = ServerDb::open(&db_path)?;
    let records: Vec<_> = db.load()?.into_iter().map(|(r, _)| r).collect();

    let mut keys = opts.cluster_keys.clone();
    if let Some(file) = &opts.cluster_key_file {
        keys.extend(auth::read_keys(file).map_err(ServerError::Config)?);
    }
    let auth = ClusterAuth::new(keys);
    let sockets = Sockets::open(&opts)?;
    let me = sockets.me;
    let ping_port = sockets.ping_port();
    info!(
        "{} listening on {me} (bound {}:{}); PING on {}; multicast discovery {}; data {} ({} records)",
        opts.name,
        opts.bind,
        me.port(),
        if ping_port == 0 {
            "off".to_string()
        } else {
            ping_port.to_string()
        },
        if sockets.multicast.is_some() {
            format!("{}:{}", limits::DISCOVERY_GROUP, limits::DISCOVERY_PORT)
        } else {
            "off".into()
        },
        db_path.display(),
        records.len(),
    );
    if auth.is_none() {
        warn!(
            "{}: no --cluster-key: the ring is open; anyone who can reach this node can join it and own names (see the threat model in flock-bin's README)",
            opts.name
        );
    }
    if let Some(tx) = ready {
        let _ = tx.send(me);
    }
    if sockets.may_found {
        info!(
            "{}: looking for a ring ({} ms); founding one if none answers",
            opts.name,
            opts.probe_window.as_millis()
        );
    }

    let start = Instant::now();
    let config = Config {
        r: opts.replicas + 1,
        bootstrap: sockets.bootstrap.clone(),
        may_found: sockets.may_found,
        probe_window: opts.probe_window,
        name: opts.name.clone(),
        max_pending: opts.max_pending.max(16),
        authenticated: auth.is_some(),
        ..Config::default()
    };
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| ServerError::Config(format!("OS randomness: {e}")))?;
    let mut gate_key = [0u8; 32];
    getrandom::fill(&mut gate_key)
        .map_err(|e| ServerError::Config(format!("OS randomness: {e}")))?;
    let threads = opts.verify_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (pool, verified) = if threads == 0 {
        (None, None)
    } else {
        let (p, rx) = VerifyPool::new(threads.min(64), &verifier, 4096)
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
        (opts.rate > 0.0).then(|| RateLimiter::new(opts.rate, opts.burst.max(5.0), 65_536));
    let mut server = Server {
        name: opts.name.clone(),
        me,
        node,
        db,
        sock: sockets.command,
        bcast: sockets.broadcast,
        ping: sockets.ping,
        mcast: sockets.multicast,
        start,
        limiter,
        members: Vec::new(),
        members_at: start,
        gate: Gate::new(gate_key, 65_536),
        auth,
        admin_allow: opts.admin_allow.clone(),
        subnets: sockets::local_subnets(),
        subnets_at: start,
        batch: opts.batch.max(1),
        stats: NetStats::default(),
        outbuf: Vec::with_capacity(1 << 16),
        out: Vec::new(),
        ring_source: (opts.bind.is_unspecified() && !me.ip().is_unspecified()).then(|| *me.ip()),
        ops: Vec::new(),
        left: false,
        was_member: false,
        verified,
        pool,
        verifier,
    };
    server.run(shutdown, opts.leave_timeout).await
}

/// The wall clock in milliseconds since the Unix epoch (the cluster key's replay window).
/// Whether an authenticated frame is an admin request (`STATUS`, `CHECKSUM`, `SNAPSHOT`).
fn is_admin(inner: &[u8]) -> bool {
    matches!(inner, b"STATUS" | b"CHECKSUM" | b"SNAPSHOT") || inner.starts_with(b"SNAPSHOT ")
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
                if self.was_member {
                    info!("{}: left the ring; stopping", self.name);
                } else {
                    info!("{}: never joined a ring; stopping", self.name);
                }
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
                        Some((from, frame)) => self.on_verified(from, frame),
                        None => self.verified = None,
                    }
                    for _ in 1..self.batch {
                        let Some(rx) = self.verified.as_mut() else {
                            break;
                        };
                        match rx.try_recv() {
                            Ok((from, frame)) => self.on_verified(from, frame),
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

    /// Whether `addr` (ip and port) is a ring member we know.
    fn is_member(&mut self, addr: SocketAddrV4) -> bool {
        if self.members_at.elapsed() > Duration::from_millis(500) {
            self.refresh_members();
        }
        self.members.contains(&addr)
    }

    fn refresh_members(&mut self) {
        let me = self.me;
        let mut m: Vec<SocketAddrV4> = self
            .node
            .successors()
            .iter()
            .chain(self.node.predecessor().iter())
            .map(|p| p.addr)
            .chain(self.node.fingers().iter().map(|p| p.addr))
            .filter(|a| *a != me)
            .collect();
        m.sort_unstable();
        m.dedup();
        self.members = m;
        self.members_at = Instant::now();
    }

    /// Charges `cost` to `from`'s bucket; `false`: drop the datagram. Only ring frames
    /// of members are exempt (the caller decides: authenticated with the cluster key, or
    /// without one from a member's exact address; a client request "from" a member's IP
    /// pays like any other).
    fn allow(&mut self, from: SocketAddrV4, cost: f64) -> bool {
        if self.limiter.is_none() {
            return true;
        }
        let ok = self
            .limiter
            .as_mut()
            .is_some_and(|l| l.allow(*from.ip(), cost, Instant::now()));
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
        // With a cluster key, ring frames count only when authenticated (before anything
        // else: they are exempt from the rate limit).
        let (data, authed) = match self.auth.as_mut() {
            Some(a) if data.starts_with(auth::PREFIX) => match a.open(wall_ms(), data) {
                Ok(inner) if inner.starts_with(b"RING ") || is_admin(inner) => (inner, true),
                _ => {
                    self.stats.ring_auth_failed += 1;
                    return;
                }
            },
            Some(_) if data.starts_with(b"RING ") => {
                self.stats.ring_auth_failed += 1;
                return;
            }
            _ => (data, false),
        };
        let ring = data.starts_with(b"RING ");
        // A member's source address alone proves nothing (it can be spoofed): without a
        // key its ring frames are exempt only once known to be a cookie-carrying request
        // or an answer we wait for (below).
        let member_src = if self.auth.is_some() {
            authed
        } else {
            ring && self.is_member(from)
        };
        if !member_src && !self.allow(from, 1.0) {
            return;
        }
        let now = self.now();
        let admitted = self.gate.admit(now, from, data);
        let validated = admitted.validated;
        if admitted.request == flock_proto::MEMBERS_REQUEST {
            self.answer_members(from);
            return;
        }
        // `SNAPSHOT <after>`: the next page (the codec knows only the bare form).
        let (request, after) = match admitted.request.strip_prefix(b"SNAPSHOT ") {
            Some(a) if a.len() <= 256 => match std::str::from_utf8(a) {
                Ok(a) => (&b"SNAPSHOT"[..], Some(a.to_owned())),
                Err(_) => (admitted.request, None),
            },
            _ => (admitted.request, None),
        };
        let frame = match Frame::decode(request) {
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
        // Authentication before verification: a ring request without its cookie goes
        // straight to the node, which answers the cookie and verifies nothing; an answer
        // nobody asked for is dropped there unverified.
        let authentic = match &frame {
            Frame::Ring(rf) => {
                self.node.cookie_valid(from, rf) && self.node.reply_expected(from, rf)
            }
            _ => true,
        };
        let exempt = member_src && (authed || authentic);
        if member_src && !exempt && !self.allow(from, 1.0) {
            return;
        }
        let extra = match &frame {
            Frame::Register(_) | Frame::RegisterLegacy { .. } => 4.0,
            Frame::Status | Frame::Snapshot | Frame::Checksum => 4.0,
            // Every record costs a token before any signature is checked.
            f => verify::records_in(f) as f64,
        };
        if extra > 0.0 && !exempt && !self.allow(from, extra) {
            return;
        }
        if matches!(frame, Frame::Status | Frame::Snapshot | Frame::Checksum) {
            if authed {
                // Authenticated with the cluster key: a key holder, from any address.
                if let Some(json) = self.admin_reply(&frame, after.as_deref()) {
                    let reply = Frame::Ok(OkReply::Json(json.into())).encode_to_vec();
                    self.queue_raw(from, &reply, false);
                }
            } else if !validated {
                let cookie = self.gate.cookie_reply(now, from);
                self.queue_raw(from, &cookie, true);
            } else if !self.admin_allow.iter().any(|c| c.contains(*from.ip())) {
                self.stats.admin_refused += 1;
                self.queue(
                    from,
                    &Frame::Error(ErrorReply::Other(
                        "admin requests only from --admin-allow addresses".into(),
                    )),
                );
            } else if let Some(json) = self.admin_reply(&frame, after.as_deref()) {
                self.queue(from, &Frame::Ok(OkReply::Json(json.into())));
            }
            return;
        }
        if let Frame::DiscoverServer { reply_to: Some(to) } = frame {
            if !self.in_scope(from, to) {
                self.stats.discovery_refused += 1;
                return;
            }
        }
        if let Some(pool) = &self.pool {
            if authentic && verify::carries_records(&frame) {
                if !pool.submit((from, frame.into_owned())) {
                    self.stats.verify_queue_full += 1;
                }
                return;
            }
        }
        self.node.handle_datagram(now, from, frame);
    }

    /// Answers the extension query `MEMBERS` with the ring members this node knows (its
    /// successor list, fingers and predecessor), for clients to fail over through. The
    /// answer is gated: an unvalidated source gets the address cookie instead when the
    /// list does not fit its credit.
    fn answer_members(&mut self, from: SocketAddrV4) {
        let status = self.node.status();
        let me = status.addr;
        let members = (status.successors.iter())
            .chain(&status.fingers)
            .chain(&status.predecessor)
            .map(|p| p.addr)
            .filter(|a| *a != me);
        let mut out = Vec::with_capacity(64);
        flock_proto::encode_members_reply(members, &mut out);
        self.queue_raw(from, &out, true);
    }

    /// Whether a proxied `DISCOVER_SERVER` from `from` asking for an answer at `to` is in
    /// the multicast scope: the proxy that sent it is in a directly connected subnet (or
    /// on this host). The answer (our IP) is smaller than the request, so its address may
    /// be anywhere: a discovery proxy answers clients across a router.
    fn in_scope(&mut self, from: SocketAddrV4, to: SocketAddrV4) -> bool {
        if self.subnets_at.elapsed() > Duration::from_secs(10) {
            self.subnets = sockets::local_subnets();
            self.subnets_at = Instant::now();
        }
        let local = |ip: Ipv4Addr| ip.is_loopback() || self.subnets.iter().any(|c| c.contains(ip));
        let _ = to;
        local(*from.ip())
    }

    /// A frame back from the verification pool (already rate-limited and decoded).
    fn on_verified(&mut self, from: SocketAddrV4, frame: Frame<'static>) {
        let now = self.now();
        self.node.handle_datagram(now, from, frame);
    }

    /// The JSON answer to `STATUS`, `SNAPSHOT` or `CHECKSUM` (`None`: another frame).
    fn admin_reply(&mut self, frame: &Frame<'_>, after: Option<&str>) -> Option<String> {
        self.stats.amplification_limited = self.gate.limited;
        self.stats.cookies_sent = self.gate.cookies_sent;
        self.stats.cookies_valid = self.gate.cookies_valid;
        Some(match frame {
            Frame::Status => status::status_json(
                &self.node.status(),
                &DriverStatus {
                    net: &self.stats,
                    verifier: self.verifier.stats(),
                    stored: self.db.counts().ok(),
                    uptime_ms: self.start.elapsed().as_millis() as u64,
                },
            ),
            Frame::Snapshot => status::snapshot_json(&self.node, after),
            Frame::Checksum => status::checksum_json(&self.node.status()),
            _ => return None,
        })
    }

    async fn on_ping(&mut self, from: SocketAddrV4, data: &[u8]) {
        self.stats.datagrams_in += 1;
        if !self.allow(from, 1.0) {
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
        if !self.allow(from, 1.0) {
            return;
        }
        if let Ok(Frame::DiscoverServer { reply_to }) = Frame::decode(data) {
            let to = reply_to.unwrap_or(from);
            if !self.in_scope(from, to) {
                self.stats.discovery_refused += 1;
                return;
            }
            let mut out = Vec::with_capacity(16);
            flock_proto::encode_discover_server_reply(*self.me.ip(), &mut out);
            self.stats.discovery_replies += 1;
            // From the server's own socket: its source port tells the client where the
            // server listens (the body names only the IP).
            self.queue_raw(to, &out, false);
        }
    }

    /// Encodes `frame` for sending at the end of this drain.
    fn queue(&mut self, to: SocketAddrV4, frame: &Frame<'_>) {
        let at = self.outbuf.len();
        match (&self.auth, frame) {
            (Some(a), Frame::Ring(_)) => {
                a.seal(wall_ms(), &frame.encode_to_vec(), &mut self.outbuf)
            }
            _ => frame.encode(&mut self.outbuf),
        }
        let ring = matches!(frame, Frame::Ring(_));
        // Ring answers to requests that proved nothing (the cookie challenge, HERE) are
        // gated too; the rest of the ring protocol answers only proven peers.
        let gated = match frame {
            Frame::Ring(RingFrame::Cookie { .. } | RingFrame::Here { .. }) => true,
            f => !matches!(f, Frame::Ring(_)),
        };
        self.out.push(Outgoing {
            to,
            bytes: at..self.outbuf.len(),
            ring,
            gated,
        });
    }

    fn queue_raw(&mut self, to: SocketAddrV4, bytes: &[u8], gated: bool) {
        let at = self.outbuf.len();
        self.outbuf.extend_from_slice(bytes);
        self.out.push(Outgoing {
            to,
            bytes: at..self.outbuf.len(),
            ring: false,
            gated,
        });
    }

    /// Performs every pending action: stores in one transaction, then the sends.
    async fn drain(&mut self) {
        let mut first_store_at: Option<usize> = None;
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send { to, frame } => self.queue(to, &frame),
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
                    // Only what came before the first store op may go.
                    self.out.truncate(at);
                }
            }
            self.ops.clear();
        }
        let now = self.now();
        for Outgoing {
            to,
            bytes,
            ring,
            gated,
        } in std::mem::take(&mut self.out)
        {
            let cookie;
            let mut bytes = &self.outbuf[bytes];
            if gated {
                match self.gate.outgoing(now, to, bytes.len()) {
                    Verdict::Pass => {}
                    Verdict::Cookie if !ring => {
                        cookie = self.gate.cookie_reply(now, to);
                        bytes = &cookie;
                    }
                    Verdict::Cookie | Verdict::Drop => continue,
                }
            }
            if let Some(src) = self.ring_source.filter(|_| ring) {
                match sockets::send_from(&self.sock, bytes, to, src).await {
                    Ok(_) => continue,
                    Err(e) => {
                        // Not a local address (e.g. --advertise behind NAT): plain sends.
                        warn!(
                            "{}: cannot send from {src} ({e}); sending plainly",
                            self.name
                        );
                        self.ring_source = None;
                    }
                }
            }
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
            Event::Founded { id, lo, hi } => {
                self.was_member = true;
                info!(
                    "{} founded a new ring as {} (id {id}): owns [{lo}, {hi}]",
                    self.name, self.me
                );
            }
            Event::Joined { id, lo, hi } => {
                self.was_member = true;
                info!(
                    "{} joined the ring as {} (id {id}): owns [{lo}, {hi}]",
                    self.name, self.me
                );
            }
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
                if self.was_member {
                    info!("{}: graceful leave finished", self.name);
                }
                self.left = true;
            }
            Event::Discovery {
                from,
                reply_to,
                name,
            } => {
                let mut out = Vec::with_capacity(32);
                if name {
                    flock_proto::encode_discover_reply(&self.name, &mut out);
                } else {
                    flock_proto::encode_discover_server_reply(*self.me.ip(), &mut out);
                }
                self.stats.discovery_replies += 1;
                // The proxied form was checked for scope on the way in.
                self.queue_raw(reply_to, &out, reply_to == from);
            }
            other => debug!("{}: {other:?}", self.name),
        }
    }
}
