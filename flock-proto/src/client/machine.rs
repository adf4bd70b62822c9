//! The client protocol machine.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use flock_crypto::{CryptoRng, PrivateKey, PublicKey, open_b64, seal_b64, sign_b64, verify_b64};

use super::limiter::Limiter;
use super::peer::{AfterPong, Dialect, Expired, Learned, PeerKey, Probe};
use super::types::{
    Action, ClientConfig, ConnectionState, Event, FEATURE_ACK1, KeySource, SendError, Status,
    StoreOp, Transmit, Warning,
};
use super::{ack_signed_text, max_text_len, smessage_signed_text};
use crate::frame::{ErrorReply, Frame, OkReply, Register};
use crate::limits::{MAX_VERSION, ORIGINAL_CLIENT_MAX_DATAGRAM};
use crate::validate::validate_username;

/// Signed messages from not-yet-known senders held while their key is resolved.
const MAX_HELD_PER_SENDER: usize = 16;
const MAX_HELD: usize = 256;
/// Ids of opened extension messages remembered in memory (the database remembers more).
const RECENT_IDS: usize = 4_096;
/// Answer `HELLO`s from one address at most this often.
const HELLO_REPLY_INTERVAL_MS: u64 = 1_000;
#[derive(Debug)]
struct Peer {
    addr: Option<SocketAddrV4>,
    resolved_ms: u64,
    stale: bool,
    resolving: bool,
    /// Whose key we trust, and our `PUBKEY_REQ`.
    key: PeerKey<PublicKey>,
    dialect: Dialect,
    /// A verified signed message or acknowledgement came from this user this session:
    /// unsigned `MESSAGE`s claiming to be from them are refused.
    signs: bool,
    /// A `HELLO` came from this address before we knew the user's address.
    hello_claim: Option<(SocketAddrV4, bool)>,
    hello_replied: Option<(SocketAddrV4, u64)>,
    probe: Probe,
    /// Signed messages went out since the last lookup.
    sent_since_resolve: bool,
}

impl Default for Peer {
    fn default() -> Self {
        Self {
            addr: None,
            resolved_ms: 0,
            stale: false,
            resolving: false,
            key: PeerKey::Unknown,
            dialect: Dialect::Unknown,
            signs: false,
            hello_claim: None,
            hello_replied: None,
            probe: Probe::Idle,
            sent_since_resolve: false,
        }
    }
}

#[derive(Debug)]
struct OutEntry {
    payload_b64: String,
    attempts: u32,
    next_ms: u64,
    last_attempt_ms: u64,
    sent: bool,
    sig_b64: Option<String>,
}

#[derive(Debug)]
struct AwaitingKey {
    text: String,
}

#[derive(Debug)]
struct Held {
    from: SocketAddrV4,
    id: u64,
    payload_b64: String,
    sig_b64: String,
    at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Register,
    Resolve(String),
    /// Keepalive: `RESOLVE <me>`; re-register if the ring lost or changed our record.
    Check,
}

#[derive(Debug)]
struct InFlight {
    request: Request,
    datagram: Vec<u8>,
    deadline_ms: u64,
}

#[derive(Debug)]
struct Server {
    addr: SocketAddrV4,
    registered: bool,
    lost: bool,
    failures: u32,
    next_keepalive_ms: u64,
}

/// The sans-IO Flock client: registration, lookup, key pinning, and message delivery
/// with an outbox. See the [module documentation](super) for the run loop.
///
/// `R` is the source of all randomness (message ids, sealing, signature salts, RSA
/// blinding): a seeded CSPRNG; the machine never reads OS entropy or clocks.
pub struct Client<R> {
    cfg: ClientConfig,
    key: PrivateKey,
    pubkey_b64: String,
    rng: R,
    actions: VecDeque<Action>,
    server: Option<Server>,
    requests: VecDeque<Request>,
    in_flight: Option<InFlight>,
    last_version: u64,
    peers: BTreeMap<String, Peer>,
    outbox: BTreeMap<(String, u64), OutEntry>,
    awaiting_key: BTreeMap<(String, u64), AwaitingKey>,
    held: BTreeMap<String, Vec<Held>>,
    held_count: usize,
    recent: BTreeSet<(String, u64)>,
    recent_order: VecDeque<(String, u64)>,
    undecodable: u64,
    open_limiter: Limiter,
    signed_limiter: Limiter,
    reply_limiter: Limiter,
}

impl<R> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.cfg.user)
            .field("server", &self.server.as_ref().map(|s| s.addr))
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl<R: CryptoRng> Client<R> {
    /// A client for `cfg.user` with its private key and an RNG.
    ///
    /// # Errors
    /// [`SendError::InvalidRecipient`] if `cfg.user` is not a valid username.
    pub fn new(cfg: ClientConfig, key: PrivateKey, rng: R) -> Result<Self, SendError> {
        validate_username(&cfg.user).map_err(|_| SendError::InvalidRecipient(cfg.user.clone()))?;
        let pubkey_b64 = key.public_key().to_b64();
        Ok(Self {
            open_limiter: Limiter::new(cfg.open_rate),
            signed_limiter: Limiter::new(cfg.signed_rate),
            reply_limiter: Limiter::new(cfg.reply_rate),
            cfg,
            key,
            pubkey_b64,
            rng,
            actions: VecDeque::new(),
            server: None,
            requests: VecDeque::new(),
            in_flight: None,
            last_version: 0,
            peers: BTreeMap::new(),
            outbox: BTreeMap::new(),
            awaiting_key: BTreeMap::new(),
            held: BTreeMap::new(),
            held_count: 0,
            recent: BTreeSet::new(),
            recent_order: VecDeque::new(),
            undecodable: 0,
        })
    }

    // ---- restoring state from the database -------------------------------------------

    /// Loads a pinned contact (and a pending changed key) from the database. Call before
    /// the first input.
    ///
    /// # Errors
    /// A key that does not parse.
    pub fn restore_contact(
        &mut self,
        user: &str,
        pubkey_b64: &str,
        pending_b64: Option<&str>,
    ) -> Result<(), flock_crypto::Error> {
        let key = PublicKey::from_b64(pubkey_b64)?;
        let pending = pending_b64.map(PublicKey::from_b64).transpose()?;
        let peer = self.peers.entry(user.to_owned()).or_default();
        peer.key.restore(key, pending);
        Ok(())
    }

    /// Loads an outbox entry (a sealed message not yet delivered) from the database.
    pub fn restore_outbox(
        &mut self,
        to: &str,
        msg_id: u64,
        payload_b64: &str,
        attempts: u32,
        next_attempt_at_ms: u64,
    ) {
        self.outbox.insert(
            (to.to_owned(), msg_id),
            OutEntry {
                payload_b64: payload_b64.to_owned(),
                attempts,
                next_ms: next_attempt_at_ms,
                last_attempt_ms: 0,
                sent: attempts > 0,
                sig_b64: None,
            },
        );
    }

    /// Loads a message that was written before its recipient's key was known (a
    /// `queued` history row with no outbox entry): it is sealed and queued once the
    /// lookup answers.
    pub fn restore_unsealed(&mut self, to: &str, msg_id: u64, text: &str) {
        self.awaiting_key.insert(
            (to.to_owned(), msg_id),
            AwaitingKey {
                text: text.to_owned(),
            },
        );
        self.request_resolve(to);
    }

    // ---- commands -----------------------------------------------------------------------

    /// Uses `server` from now on: registers (again) through it, then carries on with any
    /// queued lookups.
    pub fn connect(&mut self, now_ms: u64, server: SocketAddrV4) {
        if let Some(flight) = self.in_flight.take() {
            if flight.request != Request::Register {
                self.requests.push_front(flight.request);
            }
        }
        self.requests.retain(|r| *r != Request::Register);
        self.requests.push_front(Request::Register);
        self.server = Some(Server {
            addr: server,
            registered: false,
            lost: false,
            failures: 0,
            next_keepalive_ms: now_ms,
        });
        self.event(Event::Connection(ConnectionState::Connecting { server }));
        self.pump(now_ms);
    }

    /// Our address changed (new interface or port): register it with the server in use
    /// (or with the next one given to [`Client::connect`]).
    pub fn set_local_addr(&mut self, now_ms: u64, ip: Ipv4Addr, port: u16) {
        if (self.cfg.ip, self.cfg.port) == (ip, port) {
            return;
        }
        self.cfg.ip = ip;
        self.cfg.port = port;
        if let Some(server) = self.server.as_ref().filter(|s| !s.lost).map(|s| s.addr) {
            self.connect(now_ms, server);
        }
    }

    /// The address we register.
    pub fn local_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.cfg.ip, self.cfg.port)
    }

    /// Sends `text` to `to`: seals it for their pinned key, stores it in the outbox and
    /// delivers it (now if they answer, later with backoff otherwise). Returns the
    /// message id that [`Event::Status`] refers to.
    ///
    /// # Errors
    /// See [`SendError`]: an invalid recipient, empty or too long text (the whole
    /// `MESSAGE` must fit an original client's 8191-byte datagram), or a changed key the
    /// user has not accepted.
    pub fn send(&mut self, now_ms: u64, to: &str, text: &str) -> Result<u64, SendError> {
        validate_username(to).map_err(|_| SendError::InvalidRecipient(to.to_owned()))?;
        if to == self.cfg.user {
            return Err(SendError::ToSelf);
        }
        if text.is_empty() {
            return Err(SendError::Empty);
        }
        let peer = self.peers.entry(to.to_owned()).or_default();
        let wrapped = peer.key.pinned().map_or(256, |k| k.bits().div_ceil(8));
        let max = max_text_len(&self.cfg.user, wrapped);
        if text.len() > max {
            return Err(SendError::TooLong {
                len: text.len(),
                max,
            });
        }
        if peer.key.pending().is_some() {
            return Err(SendError::KeyChanged {
                user: to.to_owned(),
            });
        }
        let pinned = peer.key.pinned().cloned();
        let msg_id = self.fresh_id(to);
        match pinned {
            Some(key) => {
                let payload_b64 = seal_b64(&mut self.rng, &key, text.as_bytes())?;
                self.store(StoreOp::QueueOutgoing {
                    to: to.to_owned(),
                    text: text.to_owned(),
                    msg_id,
                    payload_b64: payload_b64.clone(),
                    at_ms: now_ms,
                });
                self.status(to, msg_id, Status::Queued);
                self.outbox
                    .insert((to.to_owned(), msg_id), new_entry(payload_b64, now_ms));
            }
            None => {
                self.store(StoreOp::SaveOutgoing {
                    to: to.to_owned(),
                    text: text.to_owned(),
                    msg_id,
                    at_ms: now_ms,
                });
                self.status(to, msg_id, Status::Queued);
                self.awaiting_key.insert(
                    (to.to_owned(), msg_id),
                    AwaitingKey {
                        text: text.to_owned(),
                    },
                );
                self.request_resolve(to);
            }
        }
        self.pump(now_ms);
        Ok(msg_id)
    }

    /// Looks `user` up through the ring (refreshing the cached address and checking the
    /// pinned key).
    pub fn lookup(&mut self, now_ms: u64, user: &str) {
        if validate_username(user).is_ok() && user != self.cfg.user {
            self.request_resolve(user);
            self.pump(now_ms);
        }
    }

    /// The user accepted `user`'s changed key: it becomes the pinned key and sending is
    /// allowed again. Messages still in the outbox were sealed for the old key, which the
    /// new key's owner cannot open: they are marked failed (resend them). `false` if no
    /// key change was pending.
    pub fn accept_key(&mut self, now_ms: u64, user: &str) -> bool {
        let Some(peer) = self.peers.get_mut(user) else {
            return false;
        };
        let Some(new) = peer.key.accept() else {
            return false;
        };
        let fingerprint = new.fingerprint().to_string();
        peer.dialect = Dialect::Unknown;
        peer.signs = false;
        self.store(StoreOp::AcceptKey {
            user: user.to_owned(),
            at_ms: now_ms,
        });
        self.event(Event::KeyAccepted {
            user: user.to_owned(),
            fingerprint,
        });
        let stale: Vec<u64> = self.entries_of(user).collect();
        for id in stale {
            self.outbox.remove(&(user.to_owned(), id));
            self.fail(user, id);
        }
        self.seal_awaiting(now_ms, user);
        self.pump(now_ms);
        true
    }

    /// The user rejected `user`'s changed key: the pinned key stays. `false` if no key
    /// change was pending.
    pub fn reject_key(&mut self, now_ms: u64, user: &str) -> bool {
        let Some(peer) = self.peers.get_mut(user) else {
            return false;
        };
        if !peer.key.reject() {
            return false;
        }
        self.store(StoreOp::RejectKey {
            user: user.to_owned(),
        });
        self.seal_awaiting(now_ms, user);
        self.pump(now_ms);
        true
    }

    // ---- inputs -------------------------------------------------------------------------

    /// One datagram received from `from`: decodes it and hands the frame to
    /// [`Client::handle_frame`]. A datagram that does not decode is dropped and counted
    /// ([`Client::undecodable`]).
    pub fn handle_datagram(&mut self, now_ms: u64, from: SocketAddrV4, datagram: &[u8]) {
        match Frame::decode(datagram) {
            Ok(frame) => self.handle_frame(now_ms, from, frame),
            Err(_) => self.undecodable = self.undecodable.saturating_add(1),
        }
    }

    /// One frame received from `from` (decoded once by the caller, as the ring machine
    /// takes them). Frames a client has no use for (server-to-server frames, requests
    /// only a server answers) are ignored. Discovery replies, which have no verb, are not
    /// frames: they answer a discovery socket of their own and never reach the machine.
    pub fn handle_frame(&mut self, now_ms: u64, from: SocketAddrV4, frame: Frame<'_>) {
        match frame {
            Frame::Ping => self.send_frame(from, &Frame::Pong),
            Frame::Pong => self.on_pong(now_ms, from),
            Frame::Ok(reply) => self.on_ok(now_ms, reply),
            Frame::Error(reply) => self.on_error(now_ms, reply),
            Frame::Message {
                sender,
                payload_b64,
            } => self.on_message(now_ms, from, &sender, &payload_b64),
            Frame::SecureMessage {
                sender,
                id,
                payload_b64,
                sig_b64,
            } => self.on_smessage(now_ms, from, &sender, id, &payload_b64, &sig_b64),
            Frame::Ack {
                from: user,
                id,
                sig_b64,
            } => self.on_ack(now_ms, &user, id, &sig_b64),
            Frame::Hello { user, features } => self.on_hello(now_ms, from, &user, &features),
            Frame::PubkeyReq { requester } => self.on_pubkey_req(now_ms, from, &requester),
            Frame::PubkeyRes { user, pubkey_b64 } => {
                self.on_pubkey_res(now_ms, from, &user, &pubkey_b64);
            }
            _ => {}
        }
        self.pump(now_ms);
    }

    /// The time of [`Client::poll_timeout`] has come (calling it early is harmless).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        // Server request.
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.deadline_ms <= now_ms)
        {
            self.server_missed(now_ms);
        }
        // Peer probes.
        let expired: Vec<(String, Expired)> = self
            .peers
            .iter_mut()
            .filter_map(|(u, p)| p.probe.expire(now_ms).map(|e| (u.clone(), e)))
            .collect();
        for (user, expired) in expired {
            match expired {
                Expired::Original => {
                    // Answered PING, never said HELLO: an original client.
                    self.set_dialect(&user, Dialect::Original);
                    self.send_original_due(now_ms, &user);
                }
                Expired::Unreachable => {
                    if let Some(peer) = self.peers.get_mut(&user) {
                        peer.stale = true;
                    }
                    let due: Vec<u64> = self.due_entries(&user, now_ms).collect();
                    for id in due {
                        self.attempt_failed(now_ms, &user, id);
                    }
                }
            }
        }
        // Signed messages waiting for their sender's key.
        let wait = self.cfg.verify_wait_ms;
        let mut dropped = Vec::new();
        for (sender, held) in &mut self.held {
            let before = held.len();
            held.retain(|h| h.at_ms.saturating_add(wait) > now_ms);
            if held.len() < before {
                dropped.push((sender.clone(), before - held.len()));
            }
        }
        for (sender, n) in dropped {
            self.held_count = self.held_count.saturating_sub(n);
            self.warn(Warning::UnknownSender { claimed: sender });
        }
        self.held.retain(|_, h| !h.is_empty());
        self.pump(now_ms);
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next thing to do; `None` when there is nothing left. Drain after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Client::handle_timeout`] next (Unix ms); `None`: only on input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if let Some(f) = &self.in_flight {
            at(f.deadline_ms);
        }
        if let Some(s) = &self.server {
            if s.registered && !s.lost && self.in_flight.is_none() && self.requests.is_empty() {
                at(s.next_keepalive_ms);
            }
        }
        for p in self.peers.values() {
            if let Some(deadline) = p.probe.deadline() {
                at(deadline);
            }
        }
        for ((user, _), e) in &self.outbox {
            if !self.blocked(user) {
                at(e.next_ms);
            }
        }
        for h in self.held.values().flatten() {
            at(h.at_ms.saturating_add(self.cfg.verify_wait_ms));
        }
        next
    }

    // ---- queries ------------------------------------------------------------------------

    /// The local username.
    pub fn user(&self) -> &str {
        &self.cfg.user
    }

    /// Our public key.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The server in use and whether we are registered with it.
    pub fn server(&self) -> Option<(SocketAddrV4, bool)> {
        self.server
            .as_ref()
            .filter(|s| !s.lost)
            .map(|s| (s.addr, s.registered))
    }

    /// Messages waiting for delivery (sealed, in the outbox) or for the recipient's key.
    pub fn pending_count(&self) -> usize {
        self.outbox.len() + self.awaiting_key.len()
    }

    /// The key pinned for `user`.
    pub fn pinned_key(&self, user: &str) -> Option<&PublicKey> {
        self.peers.get(user).and_then(|p| p.key.pinned())
    }

    /// A changed key seen for `user`, awaiting the user's decision.
    pub fn pending_key(&self, user: &str) -> Option<&PublicKey> {
        self.peers.get(user).and_then(|p| p.key.pending())
    }

    /// Whether `user` is known to speak the `ack1` extension (`None`: not known yet).
    pub fn peer_extension(&self, user: &str) -> Option<bool> {
        match self.peers.get(user)?.dialect {
            Dialect::Unknown => None,
            Dialect::Extension => Some(true),
            Dialect::Original => Some(false),
        }
    }

    /// Datagrams given to [`Client::handle_datagram`] that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// The address cached for `user`.
    pub fn peer_addr(&self, user: &str) -> Option<SocketAddrV4> {
        self.peers.get(user).and_then(|p| p.addr)
    }

    // ---- server requests ----------------------------------------------------------------

    fn server_usable(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.lost)
    }

    fn request_resolve(&mut self, user: &str) {
        let peer = self.peers.entry(user.to_owned()).or_default();
        if peer.resolving {
            return;
        }
        peer.resolving = true;
        self.requests.push_back(Request::Resolve(user.to_owned()));
    }

    fn pump_server(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || !self.server_usable() {
            return;
        }
        let Some(request) = self.requests.pop_front() else {
            return;
        };
        let datagram = match &request {
            Request::Register => match self.register_frame(now_ms) {
                Some(d) => d,
                None => return,
            },
            Request::Resolve(user) => Frame::Resolve {
                user: Cow::Borrowed(user),
            }
            .encode_to_vec(),
            Request::Check => Frame::Resolve {
                user: Cow::Borrowed(&self.cfg.user),
            }
            .encode_to_vec(),
        };
        self.start_request(now_ms, request, datagram);
    }

    fn start_request(&mut self, now_ms: u64, request: Request, datagram: Vec<u8>) {
        let Some(server) = self.server.as_ref().map(|s| s.addr) else {
            return;
        };
        self.actions.push_back(Action::Send(Transmit {
            to: server,
            datagram: datagram.clone(),
        }));
        self.in_flight = Some(InFlight {
            request,
            datagram,
            deadline_ms: now_ms.saturating_add(self.cfg.request_timeout_ms),
        });
    }

    fn register_frame(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let version = now_ms
            .saturating_mul(1_000_000)
            .max(self.last_version.saturating_add(1))
            .min(MAX_VERSION);
        self.last_version = version;
        let mut register = Register {
            user: Cow::Borrowed(&self.cfg.user),
            ip: self.cfg.ip,
            port: self.cfg.port,
            version,
            pubkey_b64: Cow::Borrowed(&self.pubkey_b64),
            sig_b64: Cow::Borrowed(""),
        };
        let sig = sign_b64(&mut self.rng, &self.key, register.signed_text().as_bytes()).ok()?;
        register.sig_b64 = Cow::Owned(sig);
        Some(Frame::Register(register).encode_to_vec())
    }

    /// A server request or keepalive went unanswered.
    fn server_missed(&mut self, now_ms: u64) {
        let Some(server) = self.server.as_mut() else {
            self.in_flight = None;
            return;
        };
        server.failures += 1;
        if server.failures >= self.cfg.server_failures.max(1) {
            server.lost = true;
            server.registered = false;
            let addr = server.addr;
            if let Some(flight) = self.in_flight.take() {
                if !matches!(flight.request, Request::Register | Request::Check) {
                    self.requests.push_front(flight.request);
                }
            }
            self.event(Event::Connection(ConnectionState::Lost { server: addr }));
        } else if let Some(flight) = self.in_flight.take() {
            // Try the same request once more.
            self.start_request(now_ms, flight.request, flight.datagram);
        }
    }

    /// The ring lost or changed our record (a wiped ring, a server that restarted
    /// empty): register again.
    fn reregister(&mut self) {
        if !self.requests.contains(&Request::Register) {
            self.requests.push_front(Request::Register);
        }
    }

    fn server_alive(&mut self, now_ms: u64) {
        let keepalive = self.cfg.keepalive_ms;
        if let Some(s) = self.server.as_mut() {
            s.failures = 0;
            s.next_keepalive_ms = now_ms.saturating_add(keepalive);
        }
    }

    fn on_ok(&mut self, now_ms: u64, reply: OkReply<'_>) {
        let Some(flight) = &self.in_flight else {
            return;
        };
        match (&flight.request, reply) {
            (Request::Register, OkReply::Registered { user, .. }) if user == self.cfg.user => {
                self.in_flight = None;
                self.server_alive(now_ms);
                if let Some(s) = self.server.as_mut() {
                    s.registered = true;
                    let server = s.addr;
                    self.event(Event::Connection(ConnectionState::Registered { server }));
                }
            }
            (
                Request::Resolve(user),
                OkReply::Resolved {
                    ip,
                    port,
                    pubkey_b64,
                    ..
                },
            ) => {
                let user = user.clone();
                self.in_flight = None;
                self.server_alive(now_ms);
                self.resolved(now_ms, &user, SocketAddrV4::new(ip, port), &pubkey_b64);
            }
            (
                Request::Check,
                OkReply::Resolved {
                    ip,
                    port,
                    pubkey_b64,
                    ..
                },
            ) => {
                self.in_flight = None;
                self.server_alive(now_ms);
                if (ip, port) != (self.cfg.ip, self.cfg.port) || pubkey_b64 != self.pubkey_b64 {
                    self.reregister();
                }
            }
            _ => {}
        }
    }

    fn on_error(&mut self, now_ms: u64, reply: ErrorReply<'_>) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        self.server_alive(now_ms);
        match flight.request {
            Request::Register => self.event(Event::RegistrationRefused {
                reason: reply.text().to_owned(),
            }),
            Request::Check => self.reregister(),
            Request::Resolve(user) => {
                if reply == ErrorReply::NotFound {
                    self.warn(Warning::UserNotFound { user: user.clone() });
                }
                self.not_resolved(now_ms, &user);
            }
        }
    }

    fn resolved(&mut self, now_ms: u64, user: &str, addr: SocketAddrV4, pubkey_b64: &str) {
        let peer = self.peers.entry(user.to_owned()).or_default();
        peer.resolving = false;
        peer.stale = false;
        peer.sent_since_resolve = false;
        peer.resolved_ms = now_ms;
        if peer.addr != Some(addr) {
            peer.addr = Some(addr);
            peer.dialect = Dialect::Unknown;
            peer.probe.reset();
        }
        if let Some((claimed, ext)) = peer.hello_claim.take() {
            if claimed == addr {
                self.set_dialect(user, Dialect::from_hello(ext));
            }
        }
        self.learn_key(now_ms, user, pubkey_b64, KeySource::Resolve);
        self.seal_awaiting(now_ms, user);
        self.release_held(now_ms, user);
    }

    fn not_resolved(&mut self, now_ms: u64, user: &str) {
        if let Some(peer) = self.peers.get_mut(user) {
            peer.resolving = false;
        }
        let waiting: Vec<u64> = self
            .awaiting_key
            .range((user.to_owned(), 0)..=(user.to_owned(), u64::MAX))
            .map(|((_, id), _)| *id)
            .collect();
        for id in waiting {
            self.awaiting_key.remove(&(user.to_owned(), id));
            self.fail(user, id);
        }
        if let Some(held) = self.held.remove(user) {
            self.held_count = self.held_count.saturating_sub(held.len());
            self.warn(Warning::UnknownSender {
                claimed: user.to_owned(),
            });
        }
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            self.attempt_failed(now_ms, user, id);
        }
    }

    // ---- keys ---------------------------------------------------------------------------

    fn learn_key(&mut self, now_ms: u64, user: &str, pubkey_b64: &str, source: KeySource) {
        let Ok(key) = PublicKey::from_b64(pubkey_b64) else {
            self.warn(Warning::BadKey {
                user: user.to_owned(),
            });
            return;
        };
        let peer = self.peers.entry(user.to_owned()).or_default();
        let fingerprint = key.fingerprint().to_string();
        match peer.key.learn(key) {
            Learned::Same => {}
            Learned::Pinned => {
                self.store(StoreOp::PinKey {
                    user: user.to_owned(),
                    pubkey_b64: pubkey_b64.to_owned(),
                    fingerprint: fingerprint.clone(),
                    at_ms: now_ms,
                });
                self.event(Event::KeyPinned {
                    user: user.to_owned(),
                    fingerprint,
                    source,
                });
            }
            Learned::Changed => {
                let pinned = peer
                    .key
                    .pinned()
                    .map(|k| k.fingerprint().to_string())
                    .unwrap_or_default();
                self.store(StoreOp::PendingKey {
                    user: user.to_owned(),
                    pubkey_b64: pubkey_b64.to_owned(),
                    fingerprint: fingerprint.clone(),
                    at_ms: now_ms,
                });
                self.event(Event::KeyChanged {
                    user: user.to_owned(),
                    pinned,
                    new: fingerprint,
                    source,
                });
            }
        }
    }

    /// Messages written before `user`'s key was known: seal them now, into the outbox.
    fn seal_awaiting(&mut self, now_ms: u64, user: &str) {
        let Some(peer) = self.peers.get(user) else {
            return;
        };
        if peer.key.pending().is_some() {
            return;
        }
        let Some(key) = peer.key.pinned().cloned() else {
            return;
        };
        let ids: Vec<u64> = self
            .awaiting_key
            .range((user.to_owned(), 0)..=(user.to_owned(), u64::MAX))
            .map(|((_, id), _)| *id)
            .collect();
        for id in ids {
            let Some(waiting) = self.awaiting_key.remove(&(user.to_owned(), id)) else {
                continue;
            };
            match seal_b64(&mut self.rng, &key, waiting.text.as_bytes()) {
                Ok(payload_b64) => {
                    self.store(StoreOp::Enqueue {
                        to: user.to_owned(),
                        msg_id: id,
                        payload_b64: payload_b64.clone(),
                        at_ms: now_ms,
                    });
                    self.outbox
                        .insert((user.to_owned(), id), new_entry(payload_b64, now_ms));
                }
                Err(_) => self.fail(user, id),
            }
        }
    }

    fn on_pubkey_req(&mut self, now_ms: u64, from: SocketAddrV4, requester: &str) {
        if validate_username(requester).is_err() || requester == self.cfg.user {
            return;
        }
        // The answer is ~30 times the request: bound what a spoofed source can reflect.
        if !self.reply_limiter.allow(*from.ip(), now_ms) {
            return;
        }
        let reply = Frame::PubkeyRes {
            user: Cow::Borrowed(&self.cfg.user),
            pubkey_b64: Cow::Borrowed(&self.pubkey_b64),
        }
        .encode_to_vec();
        self.actions.push_back(Action::Send(Transmit {
            to: from,
            datagram: reply,
        }));
        let peer = self.peers.entry(requester.to_owned()).or_default();
        if peer.key.answer_request(from, now_ms) {
            let me = self.cfg.user.clone();
            self.send_frame(
                from,
                &Frame::PubkeyReq {
                    requester: Cow::Owned(me),
                },
            );
        }
    }

    fn on_pubkey_res(&mut self, now_ms: u64, from: SocketAddrV4, user: &str, pubkey_b64: &str) {
        let solicited = self
            .peers
            .get(user)
            .is_some_and(|p| p.key.solicited(from, now_ms));
        if solicited {
            self.learn_key(now_ms, user, pubkey_b64, KeySource::PubkeyRes);
            self.seal_awaiting(now_ms, user);
            self.release_held(now_ms, user);
        }
    }

    // ---- peers --------------------------------------------------------------------------

    fn set_dialect(&mut self, user: &str, dialect: Dialect) {
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        if peer.dialect == dialect {
            return;
        }
        peer.dialect = dialect;
        self.event(Event::PeerFeatures {
            user: user.to_owned(),
            extension: dialect == Dialect::Extension,
        });
    }

    fn on_pong(&mut self, now_ms: u64, from: SocketAddrV4) {
        if self.server.as_ref().is_some_and(|s| s.addr == from) {
            self.server_alive(now_ms);
            return;
        }
        let grace = self.cfg.hello_grace_ms;
        let extension = self.cfg.extension;
        let users: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr == Some(from) && p.probe.awaits_pong())
            .map(|(u, _)| u.clone())
            .collect();
        for user in users {
            let Some(peer) = self.peers.get_mut(&user) else {
                continue;
            };
            let dialect = peer.dialect;
            match peer.probe.pong(now_ms, dialect, extension, grace) {
                None | Some(AfterPong::Grace) => {}
                Some(AfterPong::Original) => {
                    self.set_dialect(&user, Dialect::Original);
                    self.send_original_due(now_ms, &user);
                }
                Some(AfterPong::Extension) => self.send_ext_due(now_ms, &user),
            }
        }
    }

    fn on_hello(&mut self, now_ms: u64, from: SocketAddrV4, user: &str, features: &str) {
        if !self.cfg.extension || validate_username(user).is_err() || user == self.cfg.user {
            return;
        }
        if !self.reply_limiter.allow(*from.ip(), now_ms) {
            return;
        }
        let ext = features.split(',').any(|f| f == FEATURE_ACK1);
        let server_usable = self.server_usable();
        let peer = self.peers.entry(user.to_owned()).or_default();
        // Answer a HELLO unless it answers our own probe; at most once a second per
        // address, so two clients can never greet each other in a loop.
        let reply = !peer.probe.active()
            && peer.hello_replied.is_none_or(|(to, at)| {
                to != from || now_ms.saturating_sub(at) >= HELLO_REPLY_INTERVAL_MS
            });
        if reply {
            peer.hello_replied = Some((from, now_ms));
        }
        let known_here = peer.addr == Some(from);
        if !known_here {
            // Unauthenticated: believe it once the ring says the user is at `from`.
            peer.hello_claim = Some((from, ext));
            peer.stale = true;
        }
        if reply {
            self.send_hello(from);
        }
        if known_here {
            self.set_dialect(user, Dialect::from_hello(ext));
            if ext {
                if let Some(peer) = self.peers.get_mut(user) {
                    if peer.probe.finish() {
                        self.send_ext_due(now_ms, user);
                    }
                }
            }
        } else if server_usable {
            self.request_resolve(user);
        }
        // The peer is online: what waits for it is due now.
        for ((_, _), e) in self
            .outbox
            .range_mut((user.to_owned(), 0)..=(user.to_owned(), u64::MAX))
        {
            e.next_ms = e.next_ms.min(now_ms);
        }
    }

    fn send_hello(&mut self, to: SocketAddrV4) {
        let me = self.cfg.user.clone();
        self.send_frame(
            to,
            &Frame::Hello {
                user: Cow::Owned(me),
                features: Cow::Borrowed(FEATURE_ACK1),
            },
        );
    }

    // ---- outbox -------------------------------------------------------------------------

    /// Whether `user`'s due messages must wait for something other than time.
    fn blocked(&self, user: &str) -> bool {
        match self.peers.get(user) {
            None => !self.server_usable(),
            Some(p) => {
                p.key.pending().is_some()
                    || p.probe.active()
                    || p.resolving
                    || (p.addr.is_none() && !self.server_usable())
            }
        }
    }

    fn entries_of<'a>(&'a self, user: &str) -> impl Iterator<Item = u64> + 'a {
        self.outbox
            .range((user.to_owned(), 0)..=(user.to_owned(), u64::MAX))
            .map(|((_, id), _)| *id)
    }

    fn due_entries<'a>(&'a self, user: &str, now_ms: u64) -> impl Iterator<Item = u64> + 'a {
        self.outbox
            .range((user.to_owned(), 0)..=(user.to_owned(), u64::MAX))
            .filter(move |(_, e)| e.next_ms <= now_ms)
            .map(|((_, id), _)| *id)
    }

    fn pump(&mut self, now_ms: u64) {
        self.pump_server(now_ms);
        self.pump_keepalive(now_ms);
        let due: BTreeSet<String> = self
            .outbox
            .iter()
            .filter(|(_, e)| e.next_ms <= now_ms)
            .map(|((u, _), _)| u.clone())
            .collect();
        for user in due {
            if self.blocked(&user) {
                continue;
            }
            let server_usable = self.server_usable();
            let peer = self.peers.entry(user.clone()).or_default();
            if peer.dialect == Dialect::Extension {
                // Sent without an acknowledgement since the last lookup: refresh it.
                let unanswered = peer.sent_since_resolve
                    && self
                        .outbox
                        .range((user.clone(), 0)..=(user.clone(), u64::MAX))
                        .any(|(_, e)| e.next_ms <= now_ms && e.attempts > 0);
                if unanswered {
                    peer.stale = true;
                }
            }
            if peer.addr.is_none() || (peer.stale && server_usable) {
                self.request_resolve(&user);
                continue;
            }
            match peer.dialect {
                Dialect::Extension => self.send_ext_due(now_ms, &user),
                Dialect::Unknown | Dialect::Original => self.start_probe(now_ms, &user),
            }
        }
        // Lookups queued by the loop above.
        self.pump_server(now_ms);
    }

    fn pump_keepalive(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || !self.requests.is_empty() {
            return;
        }
        let due = self
            .server
            .as_ref()
            .is_some_and(|s| !s.lost && s.registered && s.next_keepalive_ms <= now_ms);
        if due {
            self.requests.push_back(Request::Check);
            self.pump_server(now_ms);
        }
    }

    fn start_probe(&mut self, now_ms: u64, user: &str) {
        let me = self.cfg.user.clone();
        let extension = self.cfg.extension;
        let timeout = self.cfg.ping_timeout_ms;
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        let Some(addr) = peer.addr else {
            return;
        };
        peer.probe.start(now_ms, timeout);
        let hello = extension && peer.dialect == Dialect::Unknown;
        let pubkey_req = peer.key.probe_request(addr, now_ms);
        if hello {
            self.send_hello(addr);
        }
        if pubkey_req {
            self.send_frame(
                addr,
                &Frame::PubkeyReq {
                    requester: Cow::Owned(me),
                },
            );
        }
        self.send_frame(addr, &Frame::Ping);
    }

    /// The peer answered `PING` and is an original client: send what is due, once.
    fn send_original_due(&mut self, now_ms: u64, user: &str) {
        let Some(addr) = self.peers.get(user).and_then(|p| p.addr) else {
            return;
        };
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            let Some(entry) = self.outbox.remove(&(user.to_owned(), id)) else {
                continue;
            };
            let datagram = Frame::Message {
                sender: Cow::Borrowed(&self.cfg.user),
                payload_b64: Cow::Borrowed(&entry.payload_b64),
            }
            .encode_to_vec();
            if datagram.len() > ORIGINAL_CLIENT_MAX_DATAGRAM {
                // Cannot happen for messages `send` accepted; never send a cut message.
                self.fail(user, id);
                continue;
            }
            self.actions
                .push_back(Action::Send(Transmit { to: addr, datagram }));
            self.store(StoreOp::SentFinal {
                to: user.to_owned(),
                msg_id: id,
            });
            self.status(user, id, Status::Sent);
        }
    }

    /// The peer speaks the extension: send what is due as signed messages.
    fn send_ext_due(&mut self, now_ms: u64, user: &str) {
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        let Some(addr) = peer.addr else {
            return;
        };
        peer.sent_since_resolve = true;
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            let key = (user.to_owned(), id);
            let Some(entry) = self.outbox.get(&key) else {
                continue;
            };
            let sig_b64 = match &entry.sig_b64 {
                Some(s) => s.clone(),
                None => {
                    let text = smessage_signed_text(&self.cfg.user, user, id, &entry.payload_b64);
                    match sign_b64(&mut self.rng, &self.key, text.as_bytes()) {
                        Ok(s) => s,
                        Err(_) => continue,
                    }
                }
            };
            let datagram = Frame::SecureMessage {
                sender: Cow::Borrowed(&self.cfg.user),
                id,
                payload_b64: Cow::Borrowed(&entry.payload_b64),
                sig_b64: Cow::Borrowed(&sig_b64),
            }
            .encode_to_vec();
            self.actions
                .push_back(Action::Send(Transmit { to: addr, datagram }));
            let Some(entry) = self.outbox.get_mut(&key) else {
                continue;
            };
            entry.sig_b64 = Some(sig_b64);
            entry.attempts = entry.attempts.saturating_add(1);
            entry.last_attempt_ms = now_ms;
            entry.next_ms = now_ms.saturating_add(backoff(&self.cfg, entry.attempts));
            let first = !entry.sent;
            entry.sent = true;
            let next = entry.next_ms;
            let attempts = entry.attempts;
            if self.cfg.max_attempts.is_some_and(|max| attempts > max) {
                self.outbox.remove(&key);
                self.fail(user, id);
                continue;
            }
            if !first {
                // The first send is recorded by `Sent`; a restart makes every entry due
                // at once anyway, so only retries need their count kept.
                self.store(StoreOp::Attempt {
                    to: user.to_owned(),
                    msg_id: id,
                    next_attempt_at_ms: next,
                });
            }
            if first {
                self.store(StoreOp::Sent {
                    to: user.to_owned(),
                    msg_id: id,
                });
                self.status(user, id, Status::Sent);
            }
        }
    }

    fn attempt_failed(&mut self, now_ms: u64, user: &str, id: u64) {
        let key = (user.to_owned(), id);
        let Some(entry) = self.outbox.get_mut(&key) else {
            return;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        entry.last_attempt_ms = now_ms;
        entry.next_ms = now_ms.saturating_add(backoff(&self.cfg, entry.attempts));
        let (attempts, next) = (entry.attempts, entry.next_ms);
        if self.cfg.max_attempts.is_some_and(|max| attempts >= max) {
            self.outbox.remove(&key);
            self.fail(user, id);
            return;
        }
        self.store(StoreOp::Attempt {
            to: user.to_owned(),
            msg_id: id,
            next_attempt_at_ms: next,
        });
    }

    fn fail(&mut self, user: &str, id: u64) {
        self.store(StoreOp::Failed {
            to: user.to_owned(),
            msg_id: id,
        });
        self.status(user, id, Status::Failed);
    }

    fn on_ack(&mut self, _now_ms: u64, user: &str, id: u64, sig_b64: &str) {
        let key = (user.to_owned(), id);
        if !self.outbox.contains_key(&key) {
            return;
        }
        let Some(pinned) = self.peers.get(user).and_then(|p| p.key.pinned()) else {
            return;
        };
        let text = ack_signed_text(user, &self.cfg.user, id);
        if verify_b64(pinned, text.as_bytes(), sig_b64).is_err() {
            return;
        }
        self.outbox.remove(&key);
        if let Some(peer) = self.peers.get_mut(user) {
            peer.signs = true;
            peer.stale = false;
        }
        self.store(StoreOp::Delivered {
            to: user.to_owned(),
            msg_id: id,
        });
        self.status(user, id, Status::Delivered);
    }

    // ---- incoming messages --------------------------------------------------------------

    fn on_message(&mut self, now_ms: u64, from: SocketAddrV4, sender: &str, payload_b64: &str) {
        if validate_username(sender).is_err() {
            return;
        }
        if self.peers.get(sender).is_some_and(|p| p.signs) {
            self.warn(Warning::Unauthenticated {
                claimed: sender.to_owned(),
                from,
            });
            return;
        }
        // RSA decryption of bytes anyone can send (RUSTSEC-2023-0071): bounded per source.
        if !self.open_limiter.allow(*from.ip(), now_ms) {
            self.warn(Warning::RateLimited { from });
            return;
        }
        match open_b64(&mut self.rng, &self.key, payload_b64) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => self.store(StoreOp::Incoming {
                    from: sender.to_owned(),
                    text,
                    msg_id: None,
                    at_ms: now_ms,
                    authenticated: false,
                    ack: None,
                }),
                Err(_) => self.warn(Warning::NotText {
                    from: sender.to_owned(),
                }),
            },
            Err(_) => self.warn(Warning::Undecryptable {
                claimed: sender.to_owned(),
                from,
            }),
        }
    }

    fn on_smessage(
        &mut self,
        now_ms: u64,
        from: SocketAddrV4,
        sender: &str,
        id: u64,
        payload_b64: &str,
        sig_b64: &str,
    ) {
        if !self.cfg.extension || validate_username(sender).is_err() || sender == self.cfg.user {
            return;
        }
        if !self.signed_limiter.allow(*from.ip(), now_ms) {
            self.warn(Warning::RateLimited { from });
            return;
        }
        let peer = self.peers.entry(sender.to_owned()).or_default();
        if peer.key.pinned().is_none() {
            // Verify with the key the ring has for the sender, once we have it.
            if self.held_count >= MAX_HELD {
                return;
            }
            let held = self.held.entry(sender.to_owned()).or_default();
            if held.len() >= MAX_HELD_PER_SENDER {
                return;
            }
            held.push(Held {
                from,
                id,
                payload_b64: payload_b64.to_owned(),
                sig_b64: sig_b64.to_owned(),
                at_ms: now_ms,
            });
            self.held_count += 1;
            self.request_resolve(sender);
            return;
        }
        self.verified_smessage(now_ms, from, sender, id, payload_b64, sig_b64);
    }

    fn release_held(&mut self, now_ms: u64, user: &str) {
        if self
            .peers
            .get(user)
            .is_none_or(|p| p.key.pinned().is_none())
        {
            return;
        }
        let Some(held) = self.held.remove(user) else {
            return;
        };
        self.held_count = self.held_count.saturating_sub(held.len());
        for h in held {
            self.verified_smessage(now_ms, h.from, user, h.id, &h.payload_b64, &h.sig_b64);
        }
    }

    /// Checks the signature against the sender's pinned key, then opens, stores and
    /// acknowledges.
    fn verified_smessage(
        &mut self,
        now_ms: u64,
        from: SocketAddrV4,
        sender: &str,
        id: u64,
        payload_b64: &str,
        sig_b64: &str,
    ) {
        let Some(peer) = self.peers.get(sender) else {
            return;
        };
        let Some(pinned) = peer.key.pinned() else {
            return;
        };
        let text = smessage_signed_text(sender, &self.cfg.user, id, payload_b64);
        if verify_b64(pinned, text.as_bytes(), sig_b64).is_err() {
            let pending_key = peer
                .key
                .pending()
                .is_some_and(|k| verify_b64(k, text.as_bytes(), sig_b64).is_ok());
            self.warn(Warning::ForgedSender {
                claimed: sender.to_owned(),
                from,
                pending_key,
            });
            return;
        }
        if let Some(peer) = self.peers.get_mut(sender) {
            peer.signs = true;
        }
        if peer_dialect(&self.peers, sender) != Dialect::Extension {
            self.set_dialect(sender, Dialect::Extension);
            if let Some(peer) = self.peers.get_mut(sender) {
                if peer.addr == Some(from) && peer.probe.finish() {
                    self.send_ext_due(now_ms, sender);
                }
            }
        }
        let ack = match self.ack_datagram(sender, id) {
            Some(datagram) => Transmit { to: from, datagram },
            None => return,
        };
        let seen = (sender.to_owned(), id);
        if self.recent.contains(&seen) {
            // Stored already (the store effect went out before this): acknowledge again.
            self.actions.push_back(Action::Send(ack));
            return;
        }
        match open_b64(&mut self.rng, &self.key, payload_b64) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    self.remember(seen);
                    self.store(StoreOp::Incoming {
                        from: sender.to_owned(),
                        text,
                        msg_id: Some(id),
                        at_ms: now_ms,
                        authenticated: true,
                        ack: Some(ack),
                    });
                }
                Err(_) => self.warn(Warning::NotText {
                    from: sender.to_owned(),
                }),
            },
            Err(_) => self.warn(Warning::Undecryptable {
                claimed: sender.to_owned(),
                from,
            }),
        }
    }

    fn ack_datagram(&mut self, sender: &str, id: u64) -> Option<Vec<u8>> {
        let text = ack_signed_text(&self.cfg.user, sender, id);
        let sig = sign_b64(&mut self.rng, &self.key, text.as_bytes()).ok()?;
        Some(
            Frame::Ack {
                from: Cow::Borrowed(&self.cfg.user),
                id,
                sig_b64: Cow::Owned(sig),
            }
            .encode_to_vec(),
        )
    }

    fn remember(&mut self, seen: (String, u64)) {
        if self.recent.insert(seen.clone()) {
            self.recent_order.push_back(seen);
        }
        while self.recent_order.len() > RECENT_IDS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    // ---- small helpers ------------------------------------------------------------------

    fn fresh_id(&mut self, to: &str) -> u64 {
        loop {
            let id = self.rng.next_u64();
            let key = (to.to_owned(), id);
            if id != 0 && !self.outbox.contains_key(&key) && !self.awaiting_key.contains_key(&key) {
                return id;
            }
        }
    }

    fn send_frame(&mut self, to: SocketAddrV4, frame: &Frame<'_>) {
        self.actions.push_back(Action::Send(Transmit {
            to,
            datagram: frame.encode_to_vec(),
        }));
    }

    fn store(&mut self, op: StoreOp) {
        self.actions.push_back(Action::Store(op));
    }

    fn event(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }

    fn warn(&mut self, warning: Warning) {
        self.event(Event::Warning(warning));
    }

    fn status(&mut self, to: &str, msg_id: u64, status: Status) {
        self.event(Event::Status {
            to: to.to_owned(),
            msg_id,
            status,
        });
    }
}

fn peer_dialect(peers: &BTreeMap<String, Peer>, user: &str) -> Dialect {
    peers.get(user).map_or(Dialect::Unknown, |p| p.dialect)
}

fn new_entry(payload_b64: String, now_ms: u64) -> OutEntry {
    OutEntry {
        payload_b64,
        attempts: 0,
        next_ms: now_ms,
        last_attempt_ms: 0,
        sent: false,
        sig_b64: None,
    }
}

/// Delay after attempt number `attempts` (1-based): base, doubling, capped.
fn backoff(cfg: &ClientConfig, attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(30);
    cfg.retry_base_ms
        .saturating_mul(1u64 << shift)
        .min(cfg.retry_max_ms.max(cfg.retry_base_ms))
}
