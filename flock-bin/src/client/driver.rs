//! The task that runs the machine: socket, timers, database, reconnection.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flock_crypto::PublicKey;
use flock_proto::Frame;
use flock_proto::client::{Action, ConnectionState, Event, StoreOp, Transmit};
use flock_proto::limits::MAX_DATAGRAM;
use flock_store::{ClientDb, Direction, KeyDir, MessageRow, MessageStatus, OutboxId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ClientEvent;
use super::cookie::Cookies;

/// Datagrams the receive thread hands to the driver at most; beyond it (the driver busy
/// opening or storing) new datagrams are dropped, as a full socket buffer would.
const INBOX: usize = 1_024;

/// How often the receive thread checks that the driver is still there.
const RECV_POLL: Duration = Duration::from_millis(200);

/// A received datagram: source and bytes.
pub(crate) type Inbound = (SocketAddrV4, Vec<u8>);

/// The socket's receiving side on a thread of its own: it answers `PING` at once and
/// passes everything else to the driver. A `PONG` therefore never waits for the
/// machine: not for an RSA decryption, not for a database write, so its timing says
/// nothing about whether a `MESSAGE` just before it opened (the crate docs of
/// `flock_crypto` on RUSTSEC-2023-0071: no reply on the path that opens). `socket` is
/// the receiving handle (blocking); the driver keeps a clone for sending. The thread
/// ends when the driver drops the receiver.
pub(crate) fn spawn_receiver(
    socket: std::net::UdpSocket,
) -> std::io::Result<mpsc::Receiver<Inbound>> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(RECV_POLL))?;
    let (tx, rx) = mpsc::channel(INBOX);
    std::thread::Builder::new()
        .name("flock-recv".into())
        .spawn(move || receive(&socket, &tx))?;
    Ok(rx)
}

fn receive(socket: &std::net::UdpSocket, tx: &mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let pong = Frame::Pong.encode_to_vec();
    let mut batch: Vec<Inbound> = Vec::new();
    loop {
        // Wait for a datagram, then take whatever else is already there: every `PING`
        // among them is answered before the driver is woken for any of the rest.
        let first = socket.recv_from(&mut buf);
        let more = socket.set_nonblocking(true).is_ok();
        let mut next = first;
        loop {
            match next {
                Ok((n, SocketAddr::V4(from))) => {
                    let datagram = &buf[..n];
                    if matches!(Frame::decode(datagram), Ok(Frame::Ping)) {
                        let _ = socket.send_to(&pong, from);
                    } else if batch.len() < INBOX {
                        batch.push((from, datagram.to_vec()));
                    }
                }
                Ok(_) => {}
                // Nothing more (or nothing at all: the poll timeout), or an ICMP error
                // from an earlier send.
                Err(_) => break,
            }
            if !more {
                break;
            }
            next = socket.recv_from(&mut buf);
        }
        let _ = socket.set_nonblocking(false);
        for inbound in batch.drain(..) {
            match tx.try_send(inbound) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full((from, _))) => {
                    tracing::debug!(%from, "client busy: dropped a datagram");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// The machine with the driver's RNG.
pub(crate) type Machine = flock_proto::client::Client<rand_chacha::ChaCha20Rng>;

type DbFn = Box<dyn FnOnce(&mut ClientDb) + Send>;
type MachineFn = Box<dyn FnOnce(&mut Machine, u64) + Send>;

/// Requests from the [`super::Client`] handle.
pub(crate) enum Cmd {
    Db(DbFn),
    Machine(MachineFn),
    Connect(SocketAddrV4),
    Shutdown,
}

/// How long to wait before trying servers again when all failed (the original: 3 s).
const RETRY_SERVERS: Duration = Duration::from_secs(3);
const DISCOVERY_WAIT: Duration = Duration::from_millis(1_500);
/// Most failed servers remembered (the oldest is forgotten first).
const MAX_FAILED: usize = 64;
/// How often the client asks its server for the ring's members again.
const MEMBERS_REFRESH: Duration = Duration::from_secs(60);

/// Where the next server to try comes from, in order: after losing a server, the ring
/// members it named, then discovery, then the configured list; then a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Members,
    Discovery,
    Configured,
}

pub(crate) struct Driver {
    machine: Machine,
    db: ClientDb,
    keys: KeyDir,
    /// For sending only: the receive thread ([`spawn_receiver`]) reads.
    socket: UdpSocket,
    inbox: mpsc::Receiver<Inbound>,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// (peer, msg_id) -> database rows of outgoing messages not yet final.
    rows: BTreeMap<(String, u64), (MessageRow, Option<OutboxId>)>,
    servers: Vec<SocketAddrV4>,
    discovery: bool,
    follow_route: bool,
    candidates: VecDeque<SocketAddrV4>,
    reconnect_at: Option<Instant>,
    discovering: Option<JoinHandle<std::io::Result<Vec<SocketAddrV4>>>>,
    /// What [`Self::candidates`] came from.
    source: Source,
    /// Servers that were lost or did not answer (not tried again until every source is
    /// exhausted, so that failover never loops on a dead server).
    failed: Vec<SocketAddrV4>,
    /// The server we are registered with.
    current: Option<SocketAddrV4>,
    /// The ring members our server named (`MEMBERS`), to fail over through.
    members: Vec<SocketAddrV4>,
    /// The server that named them.
    members_from: Option<SocketAddrV4>,
    /// When to ask for the members again.
    members_at: Option<Instant>,
    /// Address cookies our servers gave (see [`Cookies`]).
    cookies: Cookies,
}

/// The wall clock in Unix milliseconds: the `now_ms` the client machine takes, and the
/// time the interfaces show (0 before 1970, saturating far in the future).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mut machine: Machine,
        db: ClientDb,
        keys: KeyDir,
        socket: UdpSocket,
        inbox: mpsc::Receiver<Inbound>,
        events: mpsc::UnboundedSender<ClientEvent>,
        servers: Vec<SocketAddrV4>,
        discovery: bool,
        follow_route: bool,
    ) -> Result<Self, super::ClientError> {
        // Restore pinned keys and the outbox; what waited is due now.
        for c in db.contacts(u32::MAX)? {
            let pending = c.pending.as_ref().map(|p| p.pubkey_b64.as_str());
            if let Err(e) = machine.restore_contact(&c.user, &c.pubkey_b64, pending) {
                tracing::warn!(user = %c.user, error = %e, "unusable stored contact key");
            } else {
                if c.signs {
                    machine.restore_signer(&c.user);
                }
                if c.verified {
                    machine.restore_verified(&c.user);
                }
            }
        }
        let now = now_ms();
        let mut rows = BTreeMap::new();
        let (mut entries, mut parts) = (0usize, 0usize);
        for e in db.outbox_due(i64::MAX, u32::MAX)? {
            machine.restore_outbox(&e.recipient, e.msg_id, &e.payload_b64, e.attempts, now);
            rows.insert((e.recipient.clone(), e.msg_id), (e.message, Some(e.id)));
            entries += 1;
            if let Some(part) = e.part {
                // The text's own id names its message row (statuses).
                rows.entry((e.recipient.clone(), part.of))
                    .or_insert((e.message, None));
                parts += usize::from(machine.restore_part(&e.recipient, e.msg_id, part));
            }
        }
        if entries > 0 {
            tracing::info!(entries, parts, "restored the outbox");
        }
        // Messages saved before their recipient's key was known (history only).
        for chat in db.chats(u32::MAX)? {
            for m in db.history(&chat.peer, 10_000)? {
                let Some(id) = m.msg_id else { continue };
                let key = (m.receiver.clone(), id);
                if m.direction == Direction::Outgoing
                    && m.status == MessageStatus::Queued
                    && !rows.contains_key(&key)
                {
                    machine.restore_unsealed(&m.receiver, id, &m.text);
                    rows.insert(key, (m.id, None));
                }
            }
        }
        Ok(Self {
            machine,
            db,
            keys,
            socket,
            inbox,
            events,
            rows,
            candidates: servers.iter().copied().collect(),
            servers,
            discovery,
            follow_route,
            reconnect_at: Some(Instant::now()),
            discovering: None,
            source: Source::Members,
            failed: Vec::new(),
            current: None,
            members: Vec::new(),
            members_from: None,
            members_at: None,
            cookies: Cookies::default(),
        })
    }

    pub(crate) async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            self.drain().await;
            let timer = self
                .machine
                .poll_timeout()
                .map(|t| Instant::now() + Duration::from_millis(t.saturating_sub(now_ms())));
            let reconnect = self.reconnect_at;
            let members_at = self.members_at;
            tokio::select! {
                r = self.inbox.recv() => match r {
                    Some((from, datagram)) => self.on_datagram(from, &datagram),
                    None => break,
                },
                cmd = cmds.recv() => match cmd {
                    None | Some(Cmd::Shutdown) => break,
                    Some(Cmd::Db(f)) => f(&mut self.db),
                    Some(Cmd::Machine(f)) => f(&mut self.machine, now_ms()),
                    Some(Cmd::Connect(server)) => self.connect(server),
                },
                () = sleep_until(timer), if timer.is_some() => {
                    self.machine.handle_timeout(now_ms());
                }
                () = sleep_until(reconnect), if reconnect.is_some() => {
                    self.reconnect_at = None;
                    self.next_server();
                }
                () = sleep_until(members_at), if members_at.is_some() => {
                    self.ask_members();
                }
                found = join(&mut self.discovering), if self.discovering.is_some() => {
                    self.discovering = None;
                    tracing::info!(found = found.len(), "discovery answered");
                    self.add_candidates(found);
                    self.next_server();
                }
            }
        }
    }

    /// Decodes a datagram once and hands the frame to the machine; what does not decode
    /// is dropped here (discovery replies come to the discovery socket, not this one).
    fn on_datagram(&mut self, from: SocketAddrV4, datagram: &[u8]) {
        if let Some(resend) = self.cookies.incoming(from, datagram) {
            tracing::debug!(%from, "address cookie from the server");
            if let Some(bytes) = resend {
                if let Err(e) = self.socket.try_send_to(&bytes, from.into()) {
                    tracing::debug!(to = %from, error = %e, "resend with cookie failed");
                }
            }
            return;
        }
        if Some(from) == self.current && datagram.starts_with(flock_proto::MEMBERS_REQUEST) {
            match flock_proto::decode_members_reply(datagram) {
                Ok(members) => {
                    if members != self.members || self.members_from != Some(from) {
                        tracing::info!(server = %from, ?members, "ring members learned");
                    }
                    self.members = members;
                    self.members_from = Some(from);
                }
                Err(error) => tracing::debug!(%from, %error, "bad MEMBERS answer"),
            }
            return;
        }
        match Frame::decode(datagram) {
            Ok(frame) => self.machine.handle_frame(now_ms(), from, frame),
            Err(error) => tracing::trace!(%from, %error, "dropped an undecodable datagram"),
        }
    }

    fn connect(&mut self, server: SocketAddrV4) {
        if self.follow_route {
            let ip =
                crate::server::local_ip_toward(server).unwrap_or(std::net::Ipv4Addr::LOCALHOST);
            let port = self.machine.local_addr().port();
            self.machine.set_local_addr(now_ms(), ip, port);
        }
        self.machine.connect(now_ms(), server);
    }

    /// Asks our server for the ring's members (the original's servers do not answer;
    /// then nothing changes), and again after [`MEMBERS_REFRESH`].
    fn ask_members(&mut self) {
        self.members_at = None;
        let Some(server) = self.current else { return };
        let datagram = self.cookies.outgoing(server, flock_proto::MEMBERS_REQUEST);
        if let Err(e) = self.socket.try_send_to(&datagram, server.into()) {
            tracing::debug!(to = %server, error = %e, "MEMBERS not sent");
        }
        self.members_at = Some(Instant::now() + MEMBERS_REFRESH);
    }

    /// Queues `servers` to try, leaving out those queued already and those that failed.
    fn add_candidates(&mut self, servers: impl IntoIterator<Item = SocketAddrV4>) {
        for s in servers {
            if !self.candidates.contains(&s) && !self.failed.contains(&s) {
                self.candidates.push_back(s);
            }
        }
    }

    /// Tries the next candidate server; when none is left, the next source (ring
    /// members, discovery, the configured list), each step logged once; when every
    /// source is exhausted, all servers again after a pause.
    fn next_server(&mut self) {
        loop {
            if let Some(server) = self.candidates.pop_front() {
                tracing::info!(%server, "connecting");
                self.connect(server);
                return;
            }
            match self.source {
                Source::Members => {
                    self.source = Source::Discovery;
                    if self.discovery && self.discovering.is_none() {
                        tracing::info!("looking for servers by discovery");
                        self.discovering = Some(tokio::spawn(super::discover(DISCOVERY_WAIT)));
                        return;
                    }
                }
                Source::Discovery => {
                    self.source = Source::Configured;
                    let servers = self.servers.clone();
                    self.add_candidates(servers);
                    if !self.candidates.is_empty() {
                        tracing::info!(
                            servers = self.candidates.len(),
                            "trying the configured servers"
                        );
                    }
                }
                Source::Configured => {
                    // Every source tried: all of them again, after a pause.
                    self.source = Source::Members;
                    self.failed.clear();
                    let all: Vec<_> = self.members.iter().chain(&self.servers).copied().collect();
                    self.add_candidates(all);
                    tracing::info!(
                        pause_ms = RETRY_SERVERS.as_millis() as u64,
                        "no server answered; trying them all again"
                    );
                    self.reconnect_at = Some(Instant::now() + RETRY_SERVERS);
                    return;
                }
            }
        }
    }

    fn on_lost(&mut self, lost: SocketAddrV4) {
        if !self.failed.contains(&lost) {
            if self.failed.len() >= MAX_FAILED {
                self.failed.remove(0);
            }
            self.failed.push(lost);
        }
        self.candidates.retain(|s| *s != lost);
        if self.current.take() == Some(lost) {
            // Our server went: through the members it named first, those the user
            // configured first (in the configured order).
            self.members_at = None;
            self.candidates.clear();
            self.source = Source::Members;
            let mut members = self.members.clone();
            members.sort_by_key(|m| self.servers.iter().position(|s| s == m));
            let (configured, others): (Vec<_>, Vec<_>) =
                members.into_iter().partition(|m| self.servers.contains(m));
            self.add_candidates(configured.into_iter().chain(others));
            if !self.candidates.is_empty() {
                tracing::info!(
                    %lost,
                    members = self.candidates.len(),
                    "trying the ring members it named"
                );
            }
        }
        self.reconnect_at = Some(Instant::now());
    }

    async fn drain(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(t) => {
                    let datagram = self.cookies.outgoing(t.to, &t.datagram);
                    transmit(&self.socket, Transmit { to: t.to, datagram }).await;
                }
                Action::Store(op) => self.apply(op).await,
                Action::Event(e) => {
                    match &e {
                        Event::Connection(ConnectionState::Lost { server }) => {
                            tracing::warn!(%server, "server lost");
                            self.on_lost(*server);
                        }
                        Event::Displaced { at } => {
                            tracing::warn!(
                                %at,
                                "our identity registered there after us: not re-registering"
                            );
                        }
                        Event::AlsoRunning { at } => {
                            tracing::warn!(%at, "our identity also runs there (it stopped re-registering)");
                        }
                        Event::Connection(ConnectionState::Registered { server }) => {
                            tracing::info!(%server, "registered");
                            self.candidates.clear();
                            self.failed.retain(|s| s != server);
                            self.source = Source::Members;
                            self.reconnect_at = None;
                            self.current = Some(*server);
                            self.ask_members();
                        }
                        _ => {}
                    }
                    let _ = self.events.send(ClientEvent::Protocol(e));
                }
            }
        }
    }

    /// Applies one storage effect; a message's acknowledgement goes out only once it is
    /// stored.
    async fn apply(&mut self, op: StoreOp) {
        if let Err(e) = self.try_apply(op).await {
            tracing::error!(error = %e, "client database");
        }
    }

    async fn try_apply(&mut self, op: StoreOp) -> flock_store::Result<()> {
        let db = &mut self.db;
        match op {
            StoreOp::QueueOutgoing {
                to,
                text,
                msg_id,
                payload_b64,
                at_ms,
            } => {
                let (row, id) = db.queue_outgoing(&to, &text, msg_id, &payload_b64, ms(at_ms))?;
                self.rows.insert((to, msg_id), (row, Some(id)));
            }
            StoreOp::SaveOutgoing {
                to,
                text,
                msg_id,
                at_ms,
            } => {
                let row =
                    db.insert_outgoing(&to, &text, Some(msg_id), MessageStatus::Queued, ms(at_ms))?;
                self.rows.insert((to, msg_id), (row, None));
            }
            StoreOp::Enqueue {
                to,
                msg_id,
                payload_b64,
                at_ms,
                part,
            } => {
                // A part's message row is its text's.
                let of = part.as_ref().map_or(msg_id, |p| p.of);
                if let Some(&(row, _)) = self.rows.get(&(to.clone(), of)) {
                    let id = db.outbox_enqueue_part(
                        row,
                        &to,
                        msg_id,
                        &payload_b64,
                        part.as_ref(),
                        ms(at_ms),
                        ms(at_ms),
                    )?;
                    self.rows.entry((to, msg_id)).or_insert((row, None)).1 = Some(id);
                }
            }
            StoreOp::PartDone { to, msg_id, of } => {
                let key = (to, msg_id);
                let outbox = self.rows.get_mut(&key).and_then(|(_, o)| o.take());
                if msg_id != of {
                    self.rows.remove(&key);
                }
                if let Some(id) = outbox {
                    db.outbox_remove(id)?;
                }
            }
            StoreOp::Attempt {
                to,
                msg_id,
                next_attempt_at_ms,
            } => {
                if let Some((_, Some(id))) = self.rows.get(&(to, msg_id)) {
                    db.outbox_mark_attempt(*id, ms(next_attempt_at_ms))?;
                }
            }
            StoreOp::Sent { to, msg_id } => {
                if let Some((row, _)) = self.rows.get(&(to, msg_id)) {
                    db.set_status(*row, MessageStatus::Sent)?;
                }
            }
            StoreOp::SentFinal { to, msg_id } => {
                if let Some((row, outbox)) = self.rows.remove(&(to, msg_id)) {
                    if let Some(id) = outbox {
                        db.outbox_delivered(id)?;
                    }
                    db.set_status(row, MessageStatus::Sent)?;
                }
            }
            StoreOp::Delivered { to, msg_id } => {
                self.rows.remove(&(to.clone(), msg_id));
                db.delivered(&to, msg_id)?;
            }
            StoreOp::Failed { to, msg_id } => {
                if let Some((row, outbox)) = self.rows.remove(&(to.clone(), msg_id)) {
                    // Every outbox entry of the message goes (all parts of a long text).
                    match outbox {
                        Some(id) => db.outbox_give_up(id)?,
                        None => db.message_failed(row)?,
                    }
                    self.rows.retain(|(t, _), (r, _)| *t != to || *r != row);
                }
            }
            StoreOp::Incoming {
                from,
                text,
                msg_id,
                at_ms,
                authenticated,
                acks,
            } => {
                let row = match msg_id {
                    Some(id) => {
                        db.insert_incoming_once(&from, &text, id, ms(at_ms), authenticated)?
                    }
                    None => {
                        Some(db.insert_incoming(&from, &text, None, ms(at_ms), authenticated)?)
                    }
                };
                // Durable (or a duplicate of something durable): acknowledge.
                for ack in acks {
                    transmit(&self.socket, ack).await;
                }
                if let Some(row) = row {
                    let _ = self.events.send(ClientEvent::Message {
                        from,
                        text,
                        msg_id,
                        authenticated,
                        row,
                    });
                }
            }
            StoreOp::PinKey {
                user,
                pubkey_b64,
                fingerprint,
                at_ms,
            } => {
                db.pin_contact(&user, &pubkey_b64, &fingerprint, ms(at_ms))?;
                self.save_contact_pem(&user, &pubkey_b64);
            }
            StoreOp::PendingKey {
                user,
                pubkey_b64,
                fingerprint,
                at_ms,
            } => db.set_pending_key(&user, &pubkey_b64, &fingerprint, ms(at_ms))?,
            StoreOp::AcceptKey { user, at_ms } => {
                db.accept_pending_key(&user, ms(at_ms))?;
                if let Some(c) = db.contact(&user)? {
                    self.save_contact_pem(&user, &c.pubkey_b64);
                }
            }
            StoreOp::RejectKey { user } => {
                db.reject_pending_key(&user)?;
            }
            StoreOp::Signs { user } => {
                db.set_signs(&user)?;
            }
            StoreOp::Verified { user, verified } => {
                db.set_verified(&user, verified)?;
            }
        }
        Ok(())
    }

    /// `keys/<me>/contacts/<peer>.pem`, as the original keeps them (the database's pinned
    /// key is the one that counts).
    fn save_contact_pem(&self, user: &str, pubkey_b64: &str) {
        if let Ok(key) = PublicKey::from_b64(pubkey_b64) {
            if let Err(e) = self.keys.save_contact_pem(user, key.to_pem()) {
                tracing::warn!(%user, error = %e, "could not write contact key file");
            }
        }
    }
}

async fn transmit(socket: &UdpSocket, t: Transmit) {
    if let Err(e) = socket.send_to(&t.datagram, t.to).await {
        tracing::debug!(to = %t.to, error = %e, "send failed");
    }
}

fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn join(
    task: &mut Option<JoinHandle<std::io::Result<Vec<SocketAddrV4>>>>,
) -> Vec<SocketAddrV4> {
    match task {
        Some(t) => t.await.ok().and_then(Result::ok).unwrap_or_default(),
        None => std::future::pending().await,
    }
}
