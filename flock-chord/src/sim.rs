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
//! entry in its successor list, and (at most every `check_every` steps) there is at most
//! one ring. [`Sim::check_ideal`] checks the quiescent state: one ordered ring, exact
//! successor lists and predecessors, ranges covering the whole hash space, nothing being
//! taken over, and [`Sim::check_records`] that every acknowledged registration resolves
//! from every live node with its newest version.
//!
//! Same seed, same run: a failing test prints its seed and replays exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flock_proto::ring::{self, RingFrame};
use flock_proto::{Frame, OkReply, Record, Register};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::{Action, Config, FakeVerifier, Node, Peer, RecordVerifier, StoreOp, Table, ring_hash};

/// Network behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way latency.
    pub latency_min: Duration,
    /// Largest one-way latency (a spread reorders datagrams).
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Round-trip ring frames through the text codec.
    pub codec: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            loss: 0.0,
            dup: 0.0,
            codec: true,
        }
    }
}

/// Something the simulator reports as broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver {
        to: SocketAddrV4,
        from: SocketAddrV4,
        /// Index into `Sim::frames`.
        frame: u64,
    },
    Wake {
        to: SocketAddrV4,
        /// Incarnation the wake-up is for.
        inc: u64,
    },
}

/// One simulated server.
struct Host {
    node: Option<Node>,
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
    queue: BinaryHeap<Reverse<(Duration, u64, Ev)>>,
    frames: BTreeMap<u64, Frame<'static>>,
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
            frames: BTreeMap::new(),
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
        host.node = Some(node);
        host.wake = None;
        self.drain(addr);
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
        self.drain(addr);
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
        self.hosts.get(&addr).and_then(|h| h.node.as_ref())
    }

    /// The node at `addr`, mutably (to change its routing mode, start a leave, ...).
    pub fn node_mut(&mut self, addr: SocketAddrV4) -> Option<&mut Node> {
        self.hosts.get_mut(&addr).and_then(|h| h.node.as_mut())
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

    // ---- running ----------------------------------------------------------------------

    fn enqueue(&mut self, from: SocketAddrV4, to: SocketAddrV4, frame: Frame<'static>) {
        if self.chance(self.net.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.chance(self.net.dup) { 2 } else { 1 };
        let mut frame = Some(frame);
        for copy in 0..copies {
            let f = if copy + 1 == copies {
                frame.take()
            } else {
                frame.clone()
            };
            let Some(f) = f else { break };
            let span = self
                .net
                .latency_max
                .saturating_sub(self.net.latency_min)
                .as_micros() as u64;
            let lat = self.net.latency_min + Duration::from_micros(self.rand(span + 1));
            let id = self.seq;
            self.seq += 1;
            self.frames.insert(id, f);
            self.queue.push(Reverse((
                self.now + lat,
                id,
                Ev::Deliver {
                    to,
                    from,
                    frame: id,
                },
            )));
        }
    }

    fn schedule_wake(&mut self, addr: SocketAddrV4) {
        let Some(h) = self.hosts.get_mut(&addr) else {
            return;
        };
        let Some(n) = h.node.as_ref() else {
            return;
        };
        let Some(t) = n.poll_timeout() else {
            return;
        };
        let t = t.max(self.now);
        if h.wake.is_some_and(|w| w <= t && w >= self.now) {
            return;
        }
        h.wake = Some(t);
        let inc = h.inc;
        let id = self.seq;
        self.seq += 1;
        self.queue
            .push(Reverse((t, id, Ev::Wake { to: addr, inc })));
    }

    /// Performs every action of `addr`'s node.
    fn drain(&mut self, addr: SocketAddrV4) {
        while let Some(a) = self.node_mut(addr).and_then(|n| n.poll_action()) {
            match a {
                Action::Send { to, frame } => {
                    let frame = if self.net.codec {
                        codec_roundtrip(frame)
                    } else {
                        Some(frame)
                    };
                    match frame {
                        Some(f) => self.enqueue(addr, to, f),
                        None => panic!("codec round trip failed for a frame from {addr}"),
                    }
                }
                Action::Store(op) => {
                    if let Some(h) = self.hosts.get_mut(&addr) {
                        match op {
                            StoreOp::Put { record, table } => {
                                h.stored.insert(record.user.clone(), (record, table));
                            }
                            StoreOp::Delete { user } => {
                                h.stored.remove(&user);
                            }
                            StoreOp::DropReplicas { owner } => {
                                h.stored.retain(|_, (_, t)| {
                                    *t != Table::Replica {
                                        owner: owner.clone(),
                                    }
                                });
                            }
                        }
                    }
                }
                Action::Event(_) => {}
            }
        }
        self.schedule_wake(addr);
    }

    /// Processes the next event. `false` when the queue is empty.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let Some(Reverse((t, _, ev))) = self.queue.pop() else {
            return Ok(false);
        };
        self.now = self.now.max(t);
        self.events += 1;
        let touched = match ev {
            Ev::Deliver { to, from, frame } => {
                let Some(f) = self.frames.remove(&frame) else {
                    return Ok(true);
                };
                if let Some(until) = self.blocked.get(&(from, to)).copied() {
                    if until > self.now {
                        self.dropped += 1;
                        return Ok(true);
                    }
                    self.blocked.remove(&(from, to));
                }
                if self.trace.is_some_and(|x| x == to || x == from) {
                    eprintln!("{:?} {from} -> {to}: {f:?}", self.now);
                }
                if self.hosts.contains_key(&to) {
                    let now = self.now;
                    match self.node_mut(to) {
                        Some(n) => n.handle_datagram(now, from, f),
                        None => {
                            self.dropped += 1;
                            return Ok(true);
                        }
                    }
                    self.delivered += 1;
                    self.drain(to);
                    Some(to)
                } else if let Some(v) = self.outside.get_mut(&to) {
                    self.delivered += 1;
                    v.push((from, f));
                    None
                } else {
                    self.delivered += 1;
                    self.client_receives(to, f);
                    None
                }
            }
            Ev::Wake { to, inc } => {
                let now = self.now;
                let ok = self
                    .hosts
                    .get(&to)
                    .is_some_and(|h| h.inc == inc && h.node.is_some());
                if !ok {
                    return Ok(true);
                }
                if let Some(h) = self.hosts.get_mut(&to) {
                    if h.wake == Some(t) {
                        h.wake = None;
                    }
                }
                let due = self
                    .node(to)
                    .and_then(|n| n.poll_timeout())
                    .is_some_and(|d| d <= now);
                if due {
                    if let Some(n) = self.node_mut(to) {
                        n.handle_timeout(now);
                    }
                }
                self.drain(to);
                Some(to)
            }
        };
        self.steps += 1;
        if let Some(a) = touched {
            self.check_local(a)?;
        }
        if self.check_every > 0 && self.steps.is_multiple_of(self.check_every) {
            self.check_one_ring()?;
        }
        Ok(true)
    }

    fn client_receives(&mut self, client: SocketAddrV4, f: Frame<'static>) {
        if let Some(rec) = self.inflight.remove(&client) {
            if matches!(f, Frame::Ok(OkReply::Registered { .. })) {
                let newer = self
                    .acked
                    .get(&rec.user)
                    .is_none_or(|old| old.version <= rec.version);
                if newer {
                    self.acked.insert(rec.user.clone(), rec);
                }
            }
        }
        let v = self.inbox.entry(client).or_default();
        if v.len() < 16 {
            v.push(f);
        }
    }

    /// Runs until virtual time `t` (events at `t` included).
    pub fn run_until(&mut self, t: Duration) -> Result<(), Violation> {
        while let Some(Reverse((next, _, _))) = self.queue.peek() {
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
        while let Some(Reverse((next, _, _))) = self.queue.peek() {
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

    // ---- invariants -------------------------------------------------------------------

    fn is_live_member(&self, a: SocketAddrV4) -> bool {
        self.node(a).is_some_and(|n| n.is_member())
    }

    /// Every live member has a live entry in its successor list (or is alone).
    fn check_local(&self, a: SocketAddrV4) -> Result<(), Violation> {
        let Some(n) = self.node(a) else {
            return Ok(());
        };
        if !n.is_member() || n.successors().is_empty() {
            return Ok(());
        }
        // The whole rest of a small ring may die at once; then "alone" is right.
        if n.successors().iter().any(|p| self.is_live(p.addr))
            || !self
                .hosts
                .iter()
                .any(|(x, h)| *x != a && h.node.as_ref().is_some_and(|n| n.is_member()))
        {
            Ok(())
        } else {
            Err(Violation(format!(
                "t={:?}: {a} has no live successor in {:?}",
                self.now,
                n.successors()
            )))
        }
    }

    fn is_live(&self, a: SocketAddrV4) -> bool {
        self.node(a).is_some_and(|n| !n.has_left())
    }

    /// First live entry of a member's successor list (itself when alone).
    fn best_succ(&self, a: SocketAddrV4) -> SocketAddrV4 {
        self.node(a)
            .and_then(|n| {
                n.successors()
                    .iter()
                    .find(|p| self.is_live_member(p.addr))
                    .map(|p| p.addr)
            })
            .unwrap_or(a)
    }

    /// At most one ring among live members (cycles of the best-successor graph).
    pub fn check_one_ring(&self) -> Result<(), Violation> {
        let members = self.members();
        let mut ring_of: BTreeMap<SocketAddrV4, usize> = BTreeMap::new();
        let mut rings = 0usize;
        for &m in &members {
            if ring_of.contains_key(&m) {
                continue;
            }
            // Walk until we meet a visited node.
            let mut path = Vec::new();
            let mut on_path = BTreeMap::new();
            let mut cur = m;
            let found = loop {
                if let Some(&r) = ring_of.get(&cur) {
                    break r;
                }
                if let Some(&i) = on_path.get(&cur) {
                    // New cycle: path[i..].
                    rings += 1;
                    let _ = i;
                    break rings;
                }
                on_path.insert(cur, path.len());
                path.push(cur);
                cur = self.best_succ(cur);
            };
            for p in path {
                ring_of.insert(p, found);
            }
        }
        if rings > 1 {
            return Err(Violation(format!("t={:?}: {rings} rings", self.now)));
        }
        Ok(())
    }

    /// The quiescent ideal: one ordered ring of all live members, exact successor lists
    /// and predecessors, ranges covering the hash space, and nothing left to take over.
    pub fn check_ideal(&self) -> Result<(), Violation> {
        let live = self.live();
        let members = self.members();
        if live.len() != members.len() {
            return Err(Violation(format!(
                "{} live nodes but {} members",
                live.len(),
                members.len()
            )));
        }
        if members.is_empty() {
            return Ok(());
        }
        let mut ring: Vec<Peer> = members
            .iter()
            .map(|a| Peer {
                id: self.node(*a).map(|n| n.id()).unwrap_or(0),
                addr: *a,
            })
            .collect();
        ring.sort();
        for w in ring.windows(2) {
            if w[0].id == w[1].id {
                return Err(Violation(format!(
                    "duplicate id {} ({} and {})",
                    w[0].id, w[0].addr, w[1].addr
                )));
            }
        }
        let n = ring.len();
        let r = self.node_config.r;
        let mut covered: u128 = 0;
        for (i, p) in ring.iter().enumerate() {
            let Some(node) = self.node(p.addr) else {
                continue;
            };
            let want: Vec<Peer> = (1..n).map(|k| ring[(i + k) % n]).take(r).collect();
            if node.successors() != &want[..] {
                return Err(Violation(format!(
                    "{} (id {}) successors {:?}, want {:?}",
                    p.addr,
                    p.id,
                    node.successors(),
                    want
                )));
            }
            let want_pred = if n > 1 {
                Some(ring[(i + n - 1) % n])
            } else {
                None
            };
            if n > 1 && node.predecessor() != want_pred {
                return Err(Violation(format!(
                    "{} predecessor {:?}, want {:?}",
                    p.addr,
                    node.predecessor(),
                    want_pred
                )));
            }
            if !node.is_settled() {
                return Err(Violation(format!("{} still taking over", p.addr)));
            }
            let (lo, hi) = node.range();
            covered += u128::from(crate::dist(lo, hi)) + 1;
        }
        if covered != u128::from(crate::MODULUS) {
            return Err(Violation(format!(
                "ranges cover {covered} hashes, not the whole space"
            )));
        }
        Ok(())
    }

    /// Every acknowledged registration is held, with its newest version, by the member that
    /// owns its hash and by the owner's next `r - 1` successors (those alive).
    pub fn check_owners(&self) -> Result<(), Violation> {
        let members = self.members();
        for (user, rec) in &self.acked {
            let h = ring_hash(user);
            let owner = members.iter().find(|a| {
                self.node(**a).is_some_and(|n| {
                    let (lo, hi) = n.range();
                    crate::dist(lo, h) <= crate::dist(lo, hi)
                })
            });
            let Some(owner) = owner else {
                return Err(Violation(format!("no owner for {user}")));
            };
            let node = self.node(*owner).expect("member");
            match node.record(user) {
                Some(r) if r.version >= rec.version => {}
                other => {
                    return Err(Violation(format!(
                        "{user}: owner {owner} holds {:?}, acked version {}",
                        other.map(|r| r.version),
                        rec.version
                    )));
                }
            }
            for s in node.successors().iter().take(self.node_config.r - 1) {
                if let Some(sn) = self.node(s.addr) {
                    if sn.record(user).is_none_or(|r| r.version < rec.version) {
                        return Err(Violation(format!(
                            "{user}: replica {} lacks version {}",
                            s.addr, rec.version
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Acknowledged users whose newest version no live member holds.
    pub fn lost_records(&self) -> usize {
        let members = self.members();
        self.acked
            .iter()
            .filter(|(u, rec)| {
                !members.iter().any(|a| {
                    self.node(*a)
                        .and_then(|n| n.record(u))
                        .is_some_and(|r| r.version >= rec.version)
                })
            })
            .count()
    }

    /// Sends a RESOLVE for every acknowledged user through each of `via` (all live members
    /// when `None`), runs `wait`, and checks each answer carries the newest version.
    pub fn check_records(
        &mut self,
        via: Option<Vec<SocketAddrV4>>,
        wait: Duration,
    ) -> Result<(), Violation> {
        let via = via.unwrap_or_else(|| self.members());
        let users: Vec<(String, u64)> = self
            .acked
            .iter()
            .map(|(u, r)| (u.clone(), r.version))
            .collect();
        let mut asks = Vec::new();
        for v in &via {
            for (u, ver) in &users {
                let c = self.resolve(*v, u);
                asks.push((c, *v, u.clone(), *ver));
            }
        }
        self.run_for(wait)?;
        for (c, v, u, ver) in asks {
            let got = self.replies(c).first().cloned();
            match got {
                Some(Frame::Ok(OkReply::Resolved { version, .. })) if version >= ver => {}
                other => {
                    return Err(Violation(format!(
                        "RESOLVE {u} via {v}: got {other:?}, want version {ver}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Events still queued.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// Encodes a ring frame to text and parses it back (other frames pass through).
fn codec_roundtrip(f: Frame<'static>) -> Option<Frame<'static>> {
    match f {
        Frame::Ring(rf) => {
            let mut buf = Vec::new();
            rf.encode(&mut buf);
            if buf.len() > ring::MAX_DATAGRAM {
                return None;
            }
            let text = std::str::from_utf8(&buf).ok()?;
            let rest = text.strip_prefix("RING ")?;
            let back: RingFrame = ring::decode(rest).ok()?;
            if back != rf {
                return None;
            }
            Some(Frame::Ring(back))
        }
        other => Some(other),
    }
}
