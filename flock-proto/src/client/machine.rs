//! The client protocol machine: [`Client`], its commands, inputs, outputs and queries.
//! The protocol's parts, each an `impl` block of its own:
//! - `server`: requests to the ring (`REGISTER`, `RESOLVE`, the keepalive), one at a time;
//! - `handshake`: each peer's key, dialect and probe (the states are in `super::peer`);
//! - `outbox`: when a peer is due, sending, retries with backoff, acknowledgements;
//! - `incoming`: opening, verifying, storing and acknowledging messages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use flock_crypto::{CryptoRng, PrivateKey, PublicKey, seal_b64};

use super::limiter::Limiter;
use super::parts::{self, Mark, Reassembly};
use super::peer::{Dialect, Expired, Peer};
use super::safety::SafetyNumber;
use super::types::{
    Action, ClientConfig, ConnectionState, Counters, Event, Part, SendError, Status, StoreOp,
    Transmit, Warning,
};
use super::{MAX_TEXT_BYTES, max_text_len};
use crate::frame::Frame;
use crate::validate::validate_username;

mod handshake;
mod incoming;
mod outbox;
mod restore;
mod server;

use incoming::Signed;
use outbox::new_entry;

/// The keys of `user`'s entries in a map keyed by `(user, msg_id)`.
fn of_user(user: &str) -> std::ops::RangeInclusive<(String, u64)> {
    (user.to_owned(), 0)..=(user.to_owned(), u64::MAX)
}

/// The keys of `user`'s entries with ids `first..=last`.
fn of_user_ids(user: &str, first: u64, last: u64) -> std::ops::RangeInclusive<(String, u64)> {
    (user.to_owned(), first)..=(user.to_owned(), last)
}

/// `text` cut on character boundaries into parts of at most `max` bytes (at least one
/// character each, so a part is never empty).
fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max.max(1));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            // `max` is smaller than one character: that character alone.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// Each part's id, text and mark (none for a text of one part): part `i` has id
/// `first + i`.
fn part_ids<'t>(first: u64, parts: &[&'t str]) -> Vec<(u64, &'t str, Option<Mark>)> {
    let count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
    (0u32..)
        .zip(parts)
        .map(|(index, part)| {
            let mark = (count > 1).then_some(Mark {
                of: first,
                index,
                count,
            });
            (first.wrapping_add(u64::from(index)), *part, mark)
        })
        .collect()
}

#[derive(Debug)]
struct OutEntry {
    payload_b64: String,
    attempts: u32,
    next_ms: u64,
    sent: bool,
    /// The signature of the payload last sent: `(marked, sig)`, `marked` when it was
    /// the part's marked payload.
    sig_b64: Option<(bool, String)>,
    /// One part of a long text.
    part: Option<Part>,
}

#[derive(Debug)]
struct AwaitingKey {
    text: String,
    /// One part of a long text (its marked payload is sealed with the plain one).
    part: Option<Mark>,
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
    /// The request id of a `LOOKUP` (the answer must echo it); `None` for `RESOLVE`
    /// and `REGISTER`.
    rid: Option<u64>,
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
    /// Whether the server answers the lookup extension (`LOOKUP`): unknown until it
    /// answers one (`Some(true)`) or lets one time out while otherwise answering
    /// (`Some(false)`: an original server, asked with `RESOLVE` from then on).
    lookup_ext: Option<bool>,
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
    reassembly: Reassembly,
    /// Another client of our identity registered there after us ([`Event::Displaced`]).
    displaced: Option<SocketAddrV4>,
    /// Another client of our identity there stopped re-registering
    /// ([`Event::AlsoRunning`]).
    also_running: Option<SocketAddrV4>,
    undecodable: u64,
    open_limiter: Limiter,
    open_global: Limiter,
    lookup_limiter: Limiter,
    signed_limiter: Limiter,
    reply_limiter: Limiter,
    counters: Counters,
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
            open_global: Limiter::new(cfg.open_rate_global),
            lookup_limiter: Limiter::new(cfg.lookup_rate),
            counters: Counters::default(),
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
            reassembly: Reassembly::default(),
            displaced: None,
            also_running: None,
            undecodable: 0,
        })
    }

    /// `text` in the parts it is sent in to `to` (one if it fits an original client's
    /// datagram).
    fn split_for<'t>(&self, to: &str, text: &'t str) -> Vec<&'t str> {
        let wrapped = self
            .peers
            .get(to)
            .and_then(|p| p.key.pinned())
            .map_or(256, |k| k.bits().div_ceil(8));
        split_text(text, max_text_len(&self.cfg.user, wrapped))
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
            lookup_ext: if self.cfg.lookup_extension {
                None
            } else {
                Some(false)
            },
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
    /// message id that [`Event::Status`] refers to (see [`Client::send_parts`]).
    ///
    /// # Errors
    /// See [`Client::send_parts`].
    pub fn send(&mut self, now_ms: u64, to: &str, text: &str) -> Result<u64, SendError> {
        self.send_parts(now_ms, to, text).map(|parts| parts[0].0)
    }

    /// Sends `text` to `to` like [`Client::send`], returning the message id and text of
    /// what the sender shows: one message, the whole text. Text up to
    /// [`MAX_TEXT_BYTES`] (UTF-8 bytes) is accepted; what does not fit one datagram an
    /// original client can receive ([`max_text_len`]) is split on character boundaries
    /// into parts with consecutive ids (the first is the message's id), sent in order.
    /// A peer that reassembles ([`ClientConfig::parts`]) shows one message and
    /// acknowledges it once whole; anyone else gets the parts as separate messages. The
    /// statuses are the message's: sent with its first part, delivered once every part
    /// is, failed if any part fails. Nothing is ever cut.
    ///
    /// # Errors
    /// See [`SendError`]: an invalid recipient, empty text, text over
    /// [`MAX_TEXT_BYTES`] (nothing is sent), or a changed key the user has not accepted.
    pub fn send_parts(
        &mut self,
        now_ms: u64,
        to: &str,
        text: &str,
    ) -> Result<Vec<(u64, String)>, SendError> {
        validate_username(to).map_err(|_| SendError::InvalidRecipient(to.to_owned()))?;
        if to == self.cfg.user {
            return Err(SendError::ToSelf);
        }
        if text.is_empty() {
            return Err(SendError::Empty);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(SendError::TooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let peer = self.peers.entry(to.to_owned()).or_default();
        if peer.key.pending().is_some() {
            return Err(SendError::KeyChanged {
                user: to.to_owned(),
            });
        }
        let pinned = peer.key.pinned().cloned();
        let parts = self.split_for(to, text);
        let first = self.fresh_ids(to, parts.len());
        let parts = part_ids(first, &parts);
        // Seal every part first: a failure sends nothing.
        let sealed = match &pinned {
            Some(key) => Some(
                parts
                    .iter()
                    .map(|(_, part, mark)| self.seal_part(key, part, *mark))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        if let (Some(sealed), [_]) = (&sealed, parts.as_slice()) {
            let payload_b64 = sealed[0].0.clone();
            self.store(StoreOp::QueueOutgoing {
                to: to.to_owned(),
                text: text.to_owned(),
                msg_id: first,
                payload_b64: payload_b64.clone(),
                at_ms: now_ms,
            });
            self.status(to, first, Status::Queued);
            self.outbox
                .insert((to.to_owned(), first), new_entry(payload_b64, now_ms, None));
        } else {
            // The history row first, then an outbox entry per part (or, before the
            // key is known, each part waits for it).
            self.store(StoreOp::SaveOutgoing {
                to: to.to_owned(),
                text: text.to_owned(),
                msg_id: first,
                at_ms: now_ms,
            });
            self.status(to, first, Status::Queued);
            match sealed {
                Some(sealed) => {
                    for ((id, _, _), (payload_b64, part)) in parts.iter().zip(sealed) {
                        self.enqueue(now_ms, to, *id, payload_b64, part);
                    }
                }
                None => {
                    for (id, part, mark) in &parts {
                        self.awaiting_key.insert(
                            (to.to_owned(), *id),
                            AwaitingKey {
                                text: (*part).to_owned(),
                                part: *mark,
                            },
                        );
                    }
                    self.request_resolve(to);
                }
            }
        }
        self.pump(now_ms);
        Ok(vec![(first, text.to_owned())])
    }

    /// One part sealed for `key`: its plain payload and, for a part of a long text, the
    /// marked one.
    fn seal_part(
        &mut self,
        key: &PublicKey,
        text: &str,
        mark: Option<Mark>,
    ) -> Result<(String, Option<Part>), flock_crypto::Error> {
        let payload_b64 = seal_b64(&mut self.rng, key, text.as_bytes())?;
        let part = match mark {
            Some(mark) => Some(Part {
                of: mark.of,
                index: mark.index,
                count: mark.count,
                ext_payload_b64: seal_b64(
                    &mut self.rng,
                    key,
                    parts::marked(mark, text).as_bytes(),
                )?,
            }),
            None => None,
        };
        Ok((payload_b64, part))
    }

    /// A sealed message or part joins the outbox (its history row is stored already).
    fn enqueue(&mut self, now_ms: u64, to: &str, id: u64, payload_b64: String, part: Option<Part>) {
        self.store(StoreOp::Enqueue {
            to: to.to_owned(),
            msg_id: id,
            payload_b64: payload_b64.clone(),
            at_ms: now_ms,
            part: part.clone(),
        });
        self.outbox
            .insert((to.to_owned(), id), new_entry(payload_b64, now_ms, part));
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
        peer.parts = false;
        peer.signs = false;
        peer.verified = false;
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
            self.give_up(user, id);
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

    /// The user compared safety numbers with `user` ([`Client::safety_number`]) and
    /// marks them verified, or takes the mark back. `false` if `user` has no pinned key,
    /// or a key change is pending (decide on it first).
    pub fn set_verified(&mut self, user: &str, verified: bool) -> bool {
        let Some(peer) = self.peers.get_mut(user) else {
            return false;
        };
        if peer.key.pinned().is_none() || peer.key.pending().is_some() {
            return false;
        }
        if peer.verified != verified {
            peer.verified = verified;
            self.store(StoreOp::Verified {
                user: user.to_owned(),
                verified,
            });
        }
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
            Frame::Ok(reply) => self.on_ok(now_ms, from, reply),
            Frame::Error(reply) => self.on_error(now_ms, from, reply),
            Frame::Found { rid, record } => self.on_found(now_ms, from, rid, &record),
            Frame::NotFound { rid } => self.on_not_found(now_ms, from, rid),
            Frame::Message {
                sender,
                payload_b64,
            } => self.on_message(now_ms, from, &sender, &payload_b64),
            Frame::SecureMessage {
                sender,
                id,
                payload_b64,
                sig_b64,
            } => self.on_smessage(
                now_ms,
                Signed {
                    from,
                    sender: &sender,
                    id,
                    payload_b64: &payload_b64,
                    sig_b64: &sig_b64,
                },
            ),
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
        self.expire_parts(now_ms);
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
        if let Some(deadline) = self.reassembly.deadline(self.cfg.reassembly_timeout_ms) {
            at(deadline);
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

    /// Where another client of our identity registered after us, if one did (and we
    /// have not registered since): this client no longer re-registers
    /// ([`Event::Displaced`]).
    pub fn displaced(&self) -> Option<SocketAddrV4> {
        self.displaced
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

    /// The safety number of our conversation with `user` (our name and key, theirs as
    /// pinned): what both people compare. `None` without a pinned key.
    pub fn safety_number(&self, user: &str) -> Option<SafetyNumber> {
        let theirs = self.pinned_key(user)?;
        Some(SafetyNumber::new(
            &self.cfg.user,
            self.key.public_key(),
            user,
            theirs,
        ))
    }

    /// Whether the user marked `user` verified (and no new key was accepted since).
    pub fn is_verified(&self, user: &str) -> bool {
        self.peers.get(user).is_some_and(|p| p.verified)
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

    /// What was refused or limited so far (forged answers, decryption caps, evictions).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Incoming long texts being reassembled, and the bytes of their parts held
    /// (bounded by [`ClientConfig::reassembly_per_peer`] and
    /// [`ClientConfig::reassembly_bytes`]).
    pub fn reassembling(&self) -> (usize, usize) {
        (self.reassembly.len(), self.reassembly.bytes())
    }

    /// Datagrams given to [`Client::handle_datagram`] that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// The address cached for `user`.
    pub fn peer_addr(&self, user: &str) -> Option<SocketAddrV4> {
        self.peers.get(user).and_then(|p| p.addr)
    }

    // ---- small helpers ------------------------------------------------------------------

    /// Makes sure the machine has state for `user`, named by a datagram from the network:
    /// when the table is full ([`ClientConfig::max_peers`]) a peer with nothing pinned,
    /// queued, held or being looked up is forgotten first. `false`: nothing could be
    /// forgotten, so the datagram is refused. Pinned contacts are never evicted.
    fn admit_peer(&mut self, user: &str) -> bool {
        if self.peers.contains_key(user) {
            return true;
        }
        if self.peers.len() >= self.cfg.max_peers.max(1) {
            let victim = self
                .peers
                .iter()
                .find(|(u, p)| {
                    p.key.pinned().is_none()
                        && !p.resolving
                        && !self.held.contains_key(*u)
                        && self.outbox.range(of_user(u)).next().is_none()
                        && self.awaiting_key.range(of_user(u)).next().is_none()
                })
                .map(|(u, _)| u.clone());
            let Some(victim) = victim else {
                self.counters.peers_refused = self.counters.peers_refused.saturating_add(1);
                return false;
            };
            self.peers.remove(&victim);
            self.counters.peers_evicted = self.counters.peers_evicted.saturating_add(1);
        }
        self.peers.insert(user.to_owned(), Peer::default());
        true
    }

    /// Peers the machine keeps state for (bounded by [`ClientConfig::max_peers`] for
    /// names that come from the network).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Ids of `user`'s messages waiting for their key.
    fn awaiting_ids(&self, user: &str) -> Vec<u64> {
        self.awaiting_key
            .range(of_user(user))
            .map(|((_, id), _)| *id)
            .collect()
    }

    /// The first of `n` consecutive unused message ids to `to` (parts of one text keep
    /// their order in the outbox, which is sent in id order).
    fn fresh_ids(&mut self, to: &str, n: usize) -> u64 {
        let n = n.max(1) as u64;
        loop {
            let first = self.rng.next_u64();
            let Some(last) = first.checked_add(n - 1) else {
                continue;
            };
            let taken = first == 0
                || self
                    .outbox
                    .range(of_user_ids(to, first, last))
                    .next()
                    .is_some()
                || self
                    .awaiting_key
                    .range(of_user_ids(to, first, last))
                    .next()
                    .is_some();
            if !taken {
                return first;
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

    /// `user` proved they sign their messages: remembered (and stored) once.
    fn signer(&mut self, user: &str) {
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        if !peer.signs {
            peer.signs = true;
            self.store(StoreOp::Signs {
                user: user.to_owned(),
            });
        }
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
