//! A deterministic, seeded network simulator for [`Node`]s.
//!
//! Many nodes run in one thread on a virtual clock. An event queue ordered by (time,
//! sequence number) delivers datagrams with seeded latency (which also reorders them),
//! loss and duplication, honours symmetric and one-way partitions, and lets a test crash
//! nodes, restart them with or without their stored records, or make them leave. Ring
//! frames go through the text codec on the way (`RingFrame::encode` then `ring::decode`),
//! so every simulated datagram is also a codec round trip.
//!
//! Invariants are checked after every step ([`Sim::step`]): every live member has a live
//! entry in its successor list, and (at most every `check_every` steps, and only if a
//! member or a successor list changed since the last check) there is at most one ring.
//! [`Sim::check_ideal`] checks the quiescent state: one ordered ring, exact successor
//! lists and predecessors, ranges covering the whole hash space, nothing being taken
//! over, and [`Sim::check_records`] that every acknowledged registration resolves from
//! every live node with its newest version. [`Sim::traffic`] counts what the nodes sent,
//! per message type.
//!
//! | module | concern |
//! | --- | --- |
//! | this file | the hosts, starting, crashing and restarting nodes, clients, running |
//! | `net` | the event queue, delivery, partitions, loss, the codec round trip |
//! | `check` | the invariants |
//! | `traffic` | datagrams per message type |
//!
//! Same seed, same run: a failing test prints its seed and replays exactly.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flock_proto::{Frame, Record, Register};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::{Config, FakeVerifier, Node, RecordVerifier, Table};

mod check;
mod net;
mod traffic;

pub use net::NetConfig;
use net::{Queued, ring_shape};
pub use traffic::{CLIENT_VERB, Traffic};

/// Something the simulator reports as broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

/// One simulated server.
struct Host {
    /// Boxed: hosts stay small, so the address map stays cache-friendly.
    node: Option<Box<Node>>,
    /// What the node persisted (the driver's job in production).
    stored: BTreeMap<String, (Record, Table)>,
    /// Incarnation counter (restarts).
    inc: u64,
    /// Earliest wake-up queued for this incarnation.
    wake: Option<Duration>,
}

/// The simulator. See the module docs.
pub struct Sim {
    /// Virtual time.
    pub now: Duration,
    /// Network behaviour (may be changed between steps).
    pub net: NetConfig,
    /// Template configuration for new nodes (bootstrap is filled in by the simulator).
    pub node_config: Config,
    /// Check "at most one ring" every this many steps (1: every step).
    pub check_every: u64,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Queued>,
    seq: u64,
    hosts: BTreeMap<SocketAddrV4, Host>,
    /// Blocked directed links, until a time.
    blocked: BTreeMap<(SocketAddrV4, SocketAddrV4), Duration>,
    /// Datagrams that reached client addresses (not hosts).
    inbox: BTreeMap<SocketAddrV4, Vec<Frame<'static>>>,
    /// Datagrams (with their source) that reached outside hosts ([`Sim::add_outside`]).
    outside: BTreeMap<SocketAddrV4, Vec<(SocketAddrV4, Frame<'static>)>>,
    /// Newest acknowledged version per user (what must survive).
    acked: BTreeMap<String, Record>,
    /// Registrations in flight: client address -> record.
    inflight: BTreeMap<SocketAddrV4, Record>,
    next_client: u32,
    steps: u64,
    /// Whether a member or a successor list changed since the last ring check.
    ring_dirty: bool,
    /// Datagrams sent so far, by type.
    traffic: Traffic,
    /// Datagrams delivered so far.
    pub delivered: u64,
    /// Datagrams dropped by loss, partitions or dead destinations.
    pub dropped: u64,
    /// Events fired (datagrams and wake-ups).
    pub events: u64,
    /// Print every datagram to or from this address (also `FLOCK_TRACE=ip:port`).
    pub trace: Option<SocketAddrV4>,
    /// Makes the signature checker of each new node ([`FakeVerifier`] by default).
    pub make_verifier: fn() -> Box<dyn RecordVerifier + Send>,
}

impl Sim {
    /// An empty network with seed `seed`.
    pub fn new(seed: u64, net: NetConfig, node_config: Config) -> Self {
        Self {
            now: Duration::ZERO,
            net,
            node_config,
            check_every: 1,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            ring_dirty: true,
            traffic: Traffic::default(),
            seq: 0,
            hosts: BTreeMap::new(),
            blocked: BTreeMap::new(),
            inbox: BTreeMap::new(),
            outside: BTreeMap::new(),
            acked: BTreeMap::new(),
            inflight: BTreeMap::new(),
            next_client: 0,
            steps: 0,
            delivered: 0,
            dropped: 0,
            events: 0,
            trace: std::env::var("FLOCK_TRACE")
                .ok()
                .and_then(|s| s.parse().ok()),
            make_verifier: || Box::new(FakeVerifier),
        }
    }

    /// The address of server number `i`: four servers share each host IP.
    pub fn addr(i: usize) -> SocketAddrV4 {
        let host = (i / 4) as u32;
        let ip = Ipv4Addr::from(0x0a00_0000u32 + 1 + host);
        SocketAddrV4::new(ip, 12345 + (i % 4) as u16)
    }

    /// A uniformly random number in `0..n` from the simulator's seed.
    pub fn rand(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.rng.next_u64() % n }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// Starts a node at `addr`. With `bootstrap` empty it founds a ring.
    pub fn start(&mut self, addr: SocketAddrV4, bootstrap: Vec<SocketAddrV4>) {
        self.start_with(addr, bootstrap, Vec::new());
    }

    fn start_with(
        &mut self,
        addr: SocketAddrV4,
        bootstrap: Vec<SocketAddrV4>,
        records: Vec<Record>,
    ) {
        let mut cfg = self.node_config.clone();
        cfg.bootstrap = bootstrap;
        let seed = self.rng.next_u64();
        let node = Node::restore(cfg, addr, seed, self.now, (self.make_verifier)(), records);
        let host = self.hosts.entry(addr).or_insert_with(|| Host {
            node: None,
            stored: BTreeMap::new(),
            inc: 0,
            wake: None,
        });
        host.inc += 1;
        host.node = Some(Box::new(node));
        host.wake = None;
        self.settle(addr);
    }

    /// Starts a node that joins through up to `k` random live members.
    pub fn start_joining(&mut self, addr: SocketAddrV4, k: usize) {
        let boot = self.random_members(k);
        self.start(addr, boot);
    }

    /// Up to `k` distinct random live members.
    pub fn random_members(&mut self, k: usize) -> Vec<SocketAddrV4> {
        let members: Vec<SocketAddrV4> = self.members();
        let mut out = BTreeSet::new();
        if members.is_empty() {
            return Vec::new();
        }
        for _ in 0..(k * 3) {
            if out.len() >= k.min(members.len()) {
                break;
            }
            let i = self.rand(members.len() as u64) as usize;
            out.insert(members[i]);
        }
        out.into_iter().collect()
    }

    /// Kills a node at once (no goodbye). Its stored records stay on its "disk".
    pub fn crash(&mut self, addr: SocketAddrV4) {
        if let Some(h) = self.hosts.get_mut(&addr) {
            h.node = None;
            h.wake = None;
            self.ring_dirty = true;
        }
    }

    /// Restarts a crashed node, with its stored records or with an empty disk; it joins
    /// through random live members.
    pub fn restart(&mut self, addr: SocketAddrV4, keep_state: bool) {
        let records: Vec<Record> = match self.hosts.get_mut(&addr) {
            Some(h) => {
                if !keep_state {
                    h.stored.clear();
                }
                h.stored.values().map(|(r, _)| r.clone()).collect()
            }
            None => Vec::new(),
        };
        let boot = self.random_members(3);
        let boot = if boot.is_empty() { vec![addr] } else { boot };
        self.start_with(addr, boot, records);
    }

    /// Starts a graceful leave.
    pub fn leave(&mut self, addr: SocketAddrV4) {
        let now = self.now;
        if let Some(n) = self.node_mut(addr) {
            n.leave(now);
        }
        self.settle(addr);
    }

    /// Blocks `a -> b` (and `b -> a` unless `one_way`) for `dur`.
    pub fn partition(&mut self, a: SocketAddrV4, b: SocketAddrV4, one_way: bool, dur: Duration) {
        let until = self.now + dur;
        self.blocked.insert((a, b), until);
        if !one_way {
            self.blocked.insert((b, a), until);
        }
    }

    /// Cuts every link between the two groups (both ways) for `dur`.
    pub fn split(&mut self, a: &[SocketAddrV4], b: &[SocketAddrV4], dur: Duration) {
        for x in a {
            for y in b {
                self.partition(*x, *y, false, dur);
            }
        }
    }

    /// Live (not crashed, not left) hosts.
    pub fn live(&self) -> Vec<SocketAddrV4> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.node.as_ref().is_some_and(|n| !n.has_left()))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Live ring members.
    pub fn members(&self) -> Vec<SocketAddrV4> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.node.as_ref().is_some_and(|n| n.is_member()))
            .map(|(a, _)| *a)
            .collect()
    }

    /// The node at `addr`, if alive.
    pub fn node(&self, addr: SocketAddrV4) -> Option<&Node> {
        self.hosts.get(&addr).and_then(|h| h.node.as_deref())
    }

    /// The node at `addr`, mutably (to change its routing mode, start a leave, ...).
    pub fn node_mut(&mut self, addr: SocketAddrV4) -> Option<&mut Node> {
        self.hosts
            .get_mut(&addr)
            .and_then(|h| h.node.as_deref_mut())
    }

    /// The records `addr` persisted.
    pub fn stored(&self, addr: SocketAddrV4) -> Option<&BTreeMap<String, (Record, Table)>> {
        self.hosts.get(&addr).map(|h| &h.stored)
    }

    // ---- clients ----------------------------------------------------------------------

    fn client_addr(&mut self) -> SocketAddrV4 {
        self.next_client += 1;
        let n = self.next_client;
        SocketAddrV4::new(
            Ipv4Addr::new(172, 16, (n >> 16) as u8, (n >> 8) as u8),
            (5000 + (n & 0xff)) as u16 + ((n >> 24) as u16) * 256,
        )
    }

    /// A signed (fake-signed) record for `user` with `version`.
    pub fn make_record(user: &str, version: u64) -> Record {
        let mut r = Record {
            user: user.to_owned(),
            ip: Ipv4Addr::new(192, 168, (version % 200) as u8, 7),
            port: 5000 + (version % 1000) as u16,
            version,
            pubkey_b64: format!("KEY{user}"),
            sig_b64: String::new(),
        };
        r.sig_b64 = FakeVerifier::sign(&r);
        r
    }

    /// Sends a client REGISTER for `record` to node `via`; returns the client address the
    /// answer will arrive at. Acknowledged registrations are tracked for
    /// [`Sim::check_records`].
    pub fn register(&mut self, via: SocketAddrV4, record: Record) -> SocketAddrV4 {
        let c = self.client_addr();
        let f = Frame::Register(Register {
            user: record.user.clone().into(),
            ip: record.ip,
            port: record.port,
            version: record.version,
            pubkey_b64: record.pubkey_b64.clone().into(),
            sig_b64: record.sig_b64.clone().into(),
        });
        self.inflight.insert(c, record);
        self.send_from_client(c, via, f);
        c
    }

    /// Sends a client RESOLVE; returns the client address the answer arrives at.
    pub fn resolve(&mut self, via: SocketAddrV4, user: &str) -> SocketAddrV4 {
        let c = self.client_addr();
        self.send_from_client(
            c,
            via,
            Frame::Resolve {
                user: user.to_owned().into(),
            },
        );
        c
    }

    /// Sends any frame from a client address.
    pub fn send_from_client(
        &mut self,
        client: SocketAddrV4,
        to: SocketAddrV4,
        frame: Frame<'static>,
    ) {
        self.enqueue(client, to, frame);
    }

    /// What arrived at a client address.
    pub fn replies(&self, client: SocketAddrV4) -> &[Frame<'static>] {
        self.inbox.get(&client).map(|v| &v[..]).unwrap_or(&[])
    }

    /// Makes `addr` an outside host driven by the test (an attacker, say): what arrives
    /// there is kept with its source for [`Sim::take_outside`]; send with
    /// [`Sim::send_from_client`].
    pub fn add_outside(&mut self, addr: SocketAddrV4) {
        self.outside.entry(addr).or_default();
    }

    /// Takes the `(source, frame)` datagrams that reached an outside host so far.
    pub fn take_outside(&mut self, addr: SocketAddrV4) -> Vec<(SocketAddrV4, Frame<'static>)> {
        self.outside
            .get_mut(&addr)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Newest acknowledged record per user.
    pub fn acked(&self) -> &BTreeMap<String, Record> {
        &self.acked
    }

    /// Runs until virtual time `t` (events at `t` included).
    pub fn run_until(&mut self, t: Duration) -> Result<(), Violation> {
        while let Some(Queued { at: next, .. }) = self.queue.peek() {
            if *next > t {
                break;
            }
            self.step()?;
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), Violation> {
        let t = self.now + d;
        self.run_until(t)
    }

    /// Runs at most `max_events` events or until `t`; a livelock (more events than the
    /// bound) is a violation.
    pub fn drive_bounded(&mut self, t: Duration, max_events: u64) -> Result<(), Violation> {
        let start = self.events;
        while let Some(Queued { at: next, .. }) = self.queue.peek() {
            if *next > t {
                break;
            }
            if self.events - start > max_events {
                return Err(Violation(format!(
                    "livelock: more than {max_events} events before {t:?}"
                )));
            }
            self.step()?;
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs until the ring is ideal and every acknowledged record resolves locally at its
    /// owner, checking every `every`; returns the time it took, or the last violation.
    pub fn run_until_ideal(
        &mut self,
        limit: Duration,
        every: Duration,
    ) -> Result<Duration, Violation> {
        let start = self.now;
        let mut last = Violation("not checked".into());
        while self.now < start + limit {
            self.run_for(every)?;
            match self.check_ideal().and_then(|_| self.check_owners()) {
                Ok(()) => return Ok(self.now - start),
                Err(v) => last = v,
            }
        }
        Err(Violation(format!("not ideal after {limit:?}: {last}")))
    }

    /// Performs the actions of `addr`'s node after an input from outside the event loop
    /// (start, leave), and marks the ring for the next check.
    fn settle(&mut self, addr: SocketAddrV4) {
        self.ring_dirty = true;
        let shape = self.node(addr).map(ring_shape).unwrap_or(0);
        self.drain(addr, shape);
    }

    /// Datagrams the nodes sent so far, by type (snapshot it and use
    /// [`Traffic::since`] for a period).
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Events still queued.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}
