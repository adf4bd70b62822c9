//! The test harness: several client machines and a fake ring server on a simulated
//! network with a simulated clock, each client with an in-memory stand-in for its
//! database that applies the machine's store effects in order.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use flock_crypto::rand_core::{TryCryptoRng, TryRng};
use flock_crypto::{PrivateKey, PublicKey, verify_b64};
use flock_proto::client::{Action, Client, ClientConfig, Event, Part, Status, StoreOp, Transmit};
use flock_proto::signed_text as registration_text;
use flock_proto::{Frame, OkReply};

/// A deterministic generator for tests (splitmix64): not for production use.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    fn step(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.step() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.step())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.step().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

pub const VECTORS: &str = include_str!("../../../testdata/interop.json");

pub fn vectors() -> serde_json::Value {
    serde_json::from_str(VECTORS).expect("vectors parse")
}

/// Key 0 is the interop vector key; the others are generated once per test binary.
pub fn key(i: usize) -> PrivateKey {
    static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let v = vectors();
        let pem = v["keys"]["private_pkcs8_pem"].as_str().expect("pem");
        let mut keys = vec![PrivateKey::from_pem(pem).expect("vector key")];
        let mut rng = TestRng::new(0xF10C);
        for _ in 0..4 {
            keys.push(PrivateKey::generate(&mut rng).expect("keygen"));
        }
        keys
    })[i]
        .clone()
}

pub fn addr(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
}

pub const SERVER_A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 1), 12345);
pub const SERVER_B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 12345);

/// What the client database would hold.
#[derive(Debug, Default, Clone)]
pub struct FakeDb {
    /// Outgoing messages by (peer, msg_id): text and status.
    pub outgoing: BTreeMap<(String, u64), (String, Status)>,
    /// The sealed outbox: payload, next attempt.
    pub outbox: BTreeMap<(String, u64), (String, u32, u64)>,
    /// Outbox entries that are parts of a long text.
    pub parts: BTreeMap<(String, u64), Part>,
    /// Every part that joined the outbox, in order: (recipient, part id, text id).
    pub parts_log: Vec<(String, u64, u64)>,
    /// Received messages in order: (from, text, msg_id, authenticated).
    pub incoming: Vec<(String, String, Option<u64>, bool)>,
    pub seen: BTreeSet<(String, u64)>,
    /// Contacts: pinned key, pending key.
    pub contacts: BTreeMap<String, (String, Option<String>)>,
    /// Contacts known to sign their messages.
    pub signers: BTreeSet<String>,
    /// Contacts the user verified.
    pub verified: BTreeSet<String>,
}

impl FakeDb {
    /// Applies one effect; returns the datagrams to send once it is durable.
    pub fn apply(&mut self, op: StoreOp) -> Vec<Transmit> {
        match op {
            StoreOp::QueueOutgoing {
                to,
                text,
                msg_id,
                payload_b64,
                at_ms,
            } => {
                self.outgoing
                    .insert((to.clone(), msg_id), (text, Status::Queued));
                self.outbox.insert((to, msg_id), (payload_b64, 0, at_ms));
            }
            StoreOp::SaveOutgoing {
                to, text, msg_id, ..
            } => {
                self.outgoing.insert((to, msg_id), (text, Status::Queued));
            }
            StoreOp::Enqueue {
                to,
                msg_id,
                payload_b64,
                at_ms,
                part,
            } => {
                let row = part.as_ref().map_or(msg_id, |p| p.of);
                assert!(self.outgoing.contains_key(&(to.clone(), row)));
                if let Some(part) = part {
                    self.parts_log.push((to.clone(), msg_id, part.of));
                    self.parts.insert((to.clone(), msg_id), part);
                }
                self.outbox.insert((to, msg_id), (payload_b64, 0, at_ms));
            }
            StoreOp::PartDone { to, msg_id, of } => {
                assert!(self.outgoing.contains_key(&(to.clone(), of)));
                assert!(self.outbox.remove(&(to.clone(), msg_id)).is_some());
                self.parts.remove(&(to, msg_id));
            }
            StoreOp::Attempt {
                to,
                msg_id,
                next_attempt_at_ms,
            } => {
                let e = self.outbox.get_mut(&(to, msg_id)).expect("outbox entry");
                e.1 += 1;
                e.2 = next_attempt_at_ms;
            }
            StoreOp::Sent { to, msg_id } => {
                self.set(&to, msg_id, Status::Sent);
            }
            StoreOp::SentFinal { to, msg_id } => {
                self.outbox.remove(&(to.clone(), msg_id));
                self.set(&to, msg_id, Status::Sent);
            }
            StoreOp::Delivered { to, msg_id } => {
                self.outbox.remove(&(to.clone(), msg_id));
                self.set(&to, msg_id, Status::Delivered);
            }
            StoreOp::Failed { to, msg_id } => {
                // A failed long text takes every part of it out of the outbox.
                let parts: Vec<u64> = self
                    .parts
                    .iter()
                    .filter(|((t, _), p)| *t == to && p.of == msg_id)
                    .map(|((_, id), _)| *id)
                    .collect();
                for id in parts {
                    self.parts.remove(&(to.clone(), id));
                    self.outbox.remove(&(to.clone(), id));
                }
                self.outbox.remove(&(to.clone(), msg_id));
                self.set(&to, msg_id, Status::Failed);
            }
            StoreOp::Incoming {
                from,
                text,
                msg_id,
                authenticated,
                acks,
                ..
            } => {
                let fresh = msg_id.is_none_or(|id| self.seen.insert((from.clone(), id)));
                if fresh {
                    self.incoming.push((from, text, msg_id, authenticated));
                }
                return acks;
            }
            StoreOp::PinKey {
                user, pubkey_b64, ..
            } => {
                self.contacts.entry(user).or_insert((pubkey_b64, None));
            }
            StoreOp::PendingKey {
                user, pubkey_b64, ..
            } => {
                self.contacts.get_mut(&user).expect("contact").1 = Some(pubkey_b64);
            }
            StoreOp::AcceptKey { user, .. } => {
                let c = self.contacts.get_mut(&user).expect("contact");
                c.0 = c.1.take().expect("pending");
                self.signers.remove(&user);
                self.verified.remove(&user);
            }
            StoreOp::RejectKey { user } => {
                self.contacts.get_mut(&user).expect("contact").1 = None;
            }
            StoreOp::Verified { user, verified } => {
                assert!(self.contacts.contains_key(&user), "a contact");
                if verified {
                    self.verified.insert(user);
                } else {
                    self.verified.remove(&user);
                }
            }
            StoreOp::Signs { user } => {
                assert!(self.contacts.contains_key(&user), "a contact");
                self.signers.insert(user);
            }
        }
        Vec::new()
    }

    fn set(&mut self, to: &str, msg_id: u64, status: Status) {
        self.outgoing
            .get_mut(&(to.to_owned(), msg_id))
            .expect("message")
            .1 = status;
    }

    pub fn status(&self, to: &str, msg_id: u64) -> Option<Status> {
        self.outgoing.get(&(to.to_owned(), msg_id)).map(|m| m.1)
    }

    /// The ids of the parts text `of` to `to` was sent in, in order.
    pub fn parts_of(&self, to: &str, of: u64) -> Vec<u64> {
        self.parts_log
            .iter()
            .filter(|(t, _, o)| t == to && *o == of)
            .map(|(_, id, _)| *id)
            .collect()
    }

    pub fn texts_from(&self, from: &str) -> Vec<String> {
        self.incoming
            .iter()
            .filter(|m| m.0 == from)
            .map(|m| m.1.clone())
            .collect()
    }
}

/// The statuses `events` report for message `id`, in order.
pub fn statuses_of(events: &[Event], id: u64) -> Vec<Status> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Status { msg_id, status, .. } if *msg_id == id => Some(*status),
            _ => None,
        })
        .collect()
}

pub struct Node {
    pub user: String,
    pub key: PrivateKey,
    pub addr: SocketAddrV4,
    pub cfg: ClientConfig,
    pub client: Client<TestRng>,
    pub db: FakeDb,
    pub up: bool,
    pub events: Vec<Event>,
}

/// A ring record in the fake server.
#[derive(Debug, Clone)]
pub struct Rec {
    pub addr: SocketAddrV4,
    pub pubkey_b64: String,
    pub version: u64,
    pub sig_b64: String,
}

pub struct Sim {
    pub now: u64,
    pub nodes: Vec<Node>,
    pub servers: BTreeMap<SocketAddrV4, bool>,
    pub records: BTreeMap<String, Rec>,
    /// Let a name be registered again with a different key (a wiped ring).
    pub allow_rekey: bool,
    /// The fake ring is an original one: it ignores the lookup extension (`LOOKUP`).
    pub original_servers: bool,
    pub queue: VecDeque<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Every datagram delivered: (from, to, bytes).
    pub log: Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Sees every datagram before delivery; may change it; `false` drops it.
    pub filter: Option<Filter>,
    seed: u64,
}

pub type Filter = Box<dyn FnMut(SocketAddrV4, SocketAddrV4, &mut Vec<u8>) -> bool>;

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Self {
        let mut servers = BTreeMap::new();
        servers.insert(SERVER_A, true);
        servers.insert(SERVER_B, true);
        Self {
            now: 1_700_000_000_000,
            nodes: Vec::new(),
            servers,
            records: BTreeMap::new(),
            allow_rekey: false,
            original_servers: false,
            queue: VecDeque::new(),
            log: Vec::new(),
            filter: None,
            seed: 1,
        }
    }

    /// Adds a client and connects it to `SERVER_A`.
    pub fn add(&mut self, user: &str, key: PrivateKey, host: u8, extension: bool) -> usize {
        self.add_with(user, key, host, |cfg| cfg.extension = extension)
    }

    /// Adds a client with the test timings changed by `tune` and connects it to
    /// `SERVER_A`.
    pub fn add_with(
        &mut self,
        user: &str,
        key: PrivateKey,
        host: u8,
        tune: impl FnOnce(&mut ClientConfig),
    ) -> usize {
        let a = addr(host, 40000);
        let mut cfg = ClientConfig::new(user, *a.ip(), a.port());
        cfg.retry_base_ms = 500;
        cfg.retry_max_ms = 4_000;
        tune(&mut cfg);
        self.seed += 1;
        let client =
            Client::new(cfg.clone(), key.clone(), TestRng::new(self.seed)).expect("client");
        self.nodes.push(Node {
            user: user.to_owned(),
            key,
            addr: a,
            cfg,
            client,
            db: FakeDb::default(),
            up: true,
            events: Vec::new(),
        });
        let i = self.nodes.len() - 1;
        let now = self.now;
        self.nodes[i].client.connect(now, SERVER_A);
        self.drain(i);
        i
    }

    /// Replaces node `i`'s machine by a fresh one restored from its database (a restart),
    /// connected to `server`.
    pub fn restart(&mut self, i: usize, server: SocketAddrV4) {
        self.seed += 1;
        let n = &mut self.nodes[i];
        let mut client =
            Client::new(n.cfg.clone(), n.key.clone(), TestRng::new(self.seed)).expect("client");
        for (user, (pinned, pending)) in &n.db.contacts {
            client
                .restore_contact(user, pinned, pending.as_deref())
                .expect("restore contact");
        }
        for user in &n.db.signers {
            assert!(client.restore_signer(user));
        }
        for user in &n.db.verified {
            assert!(client.restore_verified(user));
        }
        for ((to, id), (payload, attempts, next)) in &n.db.outbox {
            client.restore_outbox(to, *id, payload, *attempts, *next);
            if let Some(part) = n.db.parts.get(&(to.clone(), *id)) {
                assert!(client.restore_part(to, *id, part.clone()));
            }
        }
        n.client = client;
        n.up = true;
        n.events.clear();
        let now = self.now;
        self.nodes[i].client.connect(now, server);
        self.drain(i);
    }

    pub fn node(&mut self, user: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.user == user)
            .expect("node")
    }

    pub fn idx(&self, user: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.user == user)
            .expect("node")
    }

    pub fn drain(&mut self, i: usize) {
        let mut bound = 0;
        while let Some(action) = self.nodes[i].client.poll_action() {
            bound += 1;
            assert!(bound < 100_000, "action livelock");
            let from = self.nodes[i].addr;
            match action {
                Action::Send(t) => self.queue.push_back((from, t.to, t.datagram)),
                Action::Store(op) => {
                    for t in self.nodes[i].db.apply(op) {
                        self.queue.push_back((from, t.to, t.datagram));
                    }
                }
                Action::Event(e) => self.nodes[i].events.push(e),
            }
        }
    }

    pub fn send(&mut self, from: &str, to: &str, text: &str) -> u64 {
        let i = self.idx(from);
        let now = self.now;
        let id = self.nodes[i].client.send(now, to, text).expect("send");
        self.drain(i);
        id
    }

    /// Injects a datagram as if `from` sent it.
    pub fn inject(&mut self, from: SocketAddrV4, to: SocketAddrV4, datagram: Vec<u8>) {
        self.queue.push_back((from, to, datagram));
    }

    fn deliver(&mut self, from: SocketAddrV4, to: SocketAddrV4, mut datagram: Vec<u8>) {
        if let Some(f) = self.filter.as_mut() {
            if !f(from, to, &mut datagram) {
                return;
            }
        }
        self.log.push((from, to, datagram.clone()));
        if let Some(up) = self.servers.get(&to).copied() {
            if up {
                if let Some(reply) = self.serve(from, &datagram) {
                    self.queue.push_back((to, from, reply));
                }
            }
            return;
        }
        let Some(i) = self.nodes.iter().position(|n| n.addr == to && n.up) else {
            return;
        };
        let now = self.now;
        // Decoded once, as the driver does; what does not decode never reaches the
        // machine.
        if let Ok(frame) = Frame::decode(&datagram) {
            self.nodes[i].client.handle_frame(now, from, frame);
        }
        self.drain(i);
    }

    /// The fake ring: REGISTER (signature checked, first key pins the name), RESOLVE,
    /// LOOKUP (unless [`Sim::original_servers`]), PING.
    fn serve(&mut self, from: SocketAddrV4, datagram: &[u8]) -> Option<Vec<u8>> {
        let frame = Frame::decode(datagram).ok()?;
        match frame {
            Frame::Ping => Some(Frame::Pong.encode_to_vec()),
            Frame::Register(r) => {
                let key = PublicKey::from_b64(&r.pubkey_b64).ok()?;
                let text = registration_text(&r.user, r.ip, r.port, r.version, &r.pubkey_b64);
                if verify_b64(&key, text.as_bytes(), &r.sig_b64).is_err() {
                    return Some(Frame::error("Invalid registration signature").encode_to_vec());
                }
                if let Some(old) = self.records.get(&*r.user) {
                    if old.pubkey_b64 != r.pubkey_b64 && !self.allow_rekey {
                        return Some(
                            Frame::error("Username belongs to a different identity key")
                                .encode_to_vec(),
                        );
                    }
                    if old.version > r.version && old.pubkey_b64 == r.pubkey_b64 {
                        return Some(Frame::error("Stale registration version").encode_to_vec());
                    }
                }
                self.records.insert(
                    r.user.to_string(),
                    Rec {
                        addr: SocketAddrV4::new(r.ip, r.port),
                        pubkey_b64: r.pubkey_b64.to_string(),
                        version: r.version,
                        sig_b64: r.sig_b64.to_string(),
                    },
                );
                let _ = from;
                Some(Frame::registered(r.user.to_string(), r.ip, r.port).encode_to_vec())
            }
            Frame::Resolve { user } => Some(match self.records.get(&*user) {
                Some(rec) => Frame::Ok(OkReply::Resolved {
                    ip: *rec.addr.ip(),
                    port: rec.addr.port(),
                    pubkey_b64: rec.pubkey_b64.clone().into(),
                    version: rec.version,
                })
                .encode_to_vec(),
                None => Frame::not_found().encode_to_vec(),
            }),
            Frame::Lookup { user, rid } if !self.original_servers => {
                Some(match self.records.get(&*user) {
                    Some(rec) => Frame::Found {
                        rid,
                        record: flock_proto::Register {
                            user: user.clone(),
                            ip: *rec.addr.ip(),
                            port: rec.addr.port(),
                            version: rec.version,
                            pubkey_b64: rec.pubkey_b64.clone().into(),
                            sig_b64: rec.sig_b64.clone().into(),
                        },
                    }
                    .encode_to_vec(),
                    None => Frame::NotFound { rid }.encode_to_vec(),
                })
            }
            _ => None,
        }
    }

    /// Delivers queued datagrams and fires timers until `done` holds or `max_ms` of
    /// simulated time pass. Returns whether `done` held.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.now + max_ms;
        for _ in 0..1_000_000 {
            let mut n = 0;
            while let Some((from, to, d)) = self.queue.pop_front() {
                n += 1;
                if n >= 100_000 {
                    for (f, t, d) in self.log.iter().rev().take(12) {
                        let d = String::from_utf8_lossy(d);
                        eprintln!("{f} -> {t}: {}", &d[..d.len().min(60)]);
                    }
                    panic!("datagram livelock");
                }
                self.deliver(from, to, d);
            }
            if done(self) {
                return true;
            }
            let next = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.client.poll_timeout())
                .min();
            let Some(next) = next else {
                return false;
            };
            if next > deadline {
                self.now = deadline;
                return done(self);
            }
            self.now = self.now.max(next);
            let now = self.now;
            for i in 0..self.nodes.len() {
                if self.nodes[i].up
                    && self.nodes[i]
                        .client
                        .poll_timeout()
                        .is_some_and(|t| t <= now)
                {
                    self.nodes[i].client.handle_timeout(now);
                    self.drain(i);
                    let next = self.nodes[i].client.poll_timeout();
                    assert!(
                        next.is_none_or(|t| t > now),
                        "timeout stuck at {next:?} <= {now}"
                    );
                }
            }
        }
        panic!("run_until did not settle");
    }

    /// Runs for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(ms, |_| false);
    }

    pub fn registered(&self, user: &str) -> bool {
        self.nodes
            .iter()
            .find(|n| n.user == user)
            .is_some_and(|n| n.client.server().is_some_and(|(_, r)| r))
    }
}
