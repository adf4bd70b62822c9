//! The ring node: a pure state machine (see the crate docs for the run loop).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{self, FindError, FindOp, Outcome, Peer, RingFrame};
use flock_proto::{ErrorReply, Frame, OkReply, Record};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::api::{Action, Config, Counters, Event, HopStats, Now};
use crate::verify::{self, Apply, RecordVerifier, fnv64};
use crate::{StoreOp, Table};
use flock_proto::ring_hash;
use flock_proto::space::{
    MODULUS, dist, in_half_open, in_inclusive, owned_range, split_point, strictly_between,
};

/// Number of finger entries: `2^59 < MODULUS < 2^60`.
const FINGERS: usize = 60;
/// Delay before retrying a FIND that got `BUSY`.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// How long an incomplete incoming transfer is kept.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dead peer is remembered and probed.
const GHOST_TTL: Duration = Duration::from_secs(600);
/// Most cookies remembered (cleared when full).
const MAX_COOKIES: usize = 8192;
/// Most unconfirmed predecessor claims remembered at once.
const MAX_PRED_CLAIMS: usize = 16;

/// Where the node is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Collecting `HERE` answers.
    Discovering {
        offers: BTreeMap<SocketAddrV4, (u64, u64)>,
        until: Now,
    },
    /// `JOIN` sent to `target`; waiting for `WELCOME` and the records.
    Joining { target: SocketAddrV4, rid: u64 },
    /// A ring member.
    Member,
    /// Handing everything over before going silent.
    Leaving,
    /// Gone (graceful leave finished).
    Left,
}

/// One stored record with bookkeeping.
#[derive(Debug, Clone)]
struct Entry {
    hash: u64,
    record: Record,
    table: Table,
    /// Last time a write or an owner's push touched it (for replica leases).
    touched: Now,
    /// The record's contribution to range digests.
    fp: u64,
}

/// A replica lease: `owner` said at `SYNC` time that we replicate `[lo, hi]`.
#[derive(Debug, Clone, Copy)]
struct Lease {
    lo: u64,
    hi: u64,
    until: Now,
}

/// Why we sent a request (what to do with the answer or the failure).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    Join,
    Stabilize,
    /// Checking the successor's predecessor before adopting it.
    Adopt,
    Rectify,
    PingPred,
    /// Checking the predecessor before replacing it by `candidate`.
    PredCheck {
        candidate: Peer,
    },
    /// Asking the live predecessor for its successor list: a node that claims to lie
    /// between it and us is adopted only if the predecessor lists it.
    PredConfirm,
    Lookup {
        lid: u64,
    },
    Replicate {
        commit: Option<u64>,
    },
    Sync,
    Fetch,
    /// A chunk of an outgoing transfer.
    Chunk {
        xfer: u64,
    },
    Fix,
    Leave,
}

#[derive(Debug, Clone)]
struct Pending {
    frame: RingFrame,
    purpose: Purpose,
    tries: u32,
    deadline: Now,
}

/// Key of an outstanding request: (peer, rid, chunk seq).
type PKey = (SocketAddrV4, u64, u32);

/// What a lookup is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LookupFor {
    /// A client request, answered to `client`.
    Client { client: SocketAddrV4 },
    /// Finger refresh.
    Finger { index: usize },
    /// Who owns the key just below our id, i.e. who really is our predecessor: confirms
    /// a claim when there is no live predecessor to ask.
    PredClaim,
}

#[derive(Debug, Clone)]
struct Lookup {
    purpose: LookupFor,
    key: u64,
    op: FindOp,
    hops: u32,
    failed: BTreeSet<SocketAddrV4>,
    deadline: Now,
}

/// An owner waiting for replica acknowledgements before answering a registration.
#[derive(Debug, Clone)]
struct Commit {
    waiting: u32,
    reply: Reply,
}

/// Where a registration's `OK` goes once replicated.
#[derive(Debug, Clone)]
enum Reply {
    /// A FIND from a peer.
    Peer { to: SocketAddrV4, rid: u64 },
    /// A client of ours (the key was ours).
    Client { to: SocketAddrV4, record: Record },
}

/// What an incoming transfer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inbound {
    Welcome,
    Fetch,
    SyncPush { lo: u64, hi: u64 },
    Leave,
}

#[derive(Debug, Clone)]
struct Incoming {
    purpose: Inbound,
    total: Option<u32>,
    chunks: BTreeMap<u32, Vec<Record>>,
    deadline: Now,
}

/// The welcome a joiner got (chunks may still be missing).
#[derive(Debug, Clone)]
struct Welcome {
    id: u64,
    pred: Peer,
    succs: Vec<Peer>,
}

/// A join we are serving: resent on duplicate `JOIN`.
#[derive(Debug, Clone)]
struct Serving {
    rid: u64,
    welcome: RingFrame,
    xfer: u64,
    until: Now,
}

/// A range we grew into and are fetching from the replicas.
#[derive(Debug, Clone)]
struct Takeover {
    lo: u64,
    /// Exclusive end.
    end: u64,
    fetches: BTreeSet<(SocketAddrV4, u64)>,
    received: usize,
    /// FINDs waiting for the range (from, frame).
    queued: Vec<(SocketAddrV4, RingFrame)>,
}

/// Periodic timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Discover,
    Stabilize,
    PingPred,
    FixFinger,
    Sync,
    Housekeeping,
}

/// A Flock ring node. See the crate docs.
pub struct Node {
    cfg: Config,
    me: SocketAddrV4,
    rng: ChaCha8Rng,
    secret: [u8; 32],
    verifier: Box<dyn RecordVerifier + Send>,
    phase: Phase,
    id: u64,
    succs: Vec<Peer>,
    pred: Option<Peer>,
    fingers: Vec<Option<Peer>>,
    next_finger: usize,
    records: BTreeMap<String, Entry>,
    leases: BTreeMap<SocketAddrV4, Lease>,
    pending: BTreeMap<PKey, Pending>,
    deadlines: BTreeSet<(Now, PKey)>,
    timers: BTreeMap<Timer, Now>,
    lookups: BTreeMap<u64, Lookup>,
    commits: BTreeMap<u64, Commit>,
    incoming: BTreeMap<(SocketAddrV4, u64), Incoming>,
    /// Outgoing transfers: xfer id -> chunks not yet acknowledged.
    outgoing: BTreeMap<u64, (SocketAddrV4, u32)>,
    welcome: Option<Welcome>,
    serving: BTreeMap<SocketAddrV4, Serving>,
    takeover: Option<Takeover>,
    cookies: BTreeMap<SocketAddrV4, u64>,
    failures: BTreeMap<SocketAddrV4, u32>,
    /// Buffered client requests while not yet a member.
    early: VecDeque<(SocketAddrV4, Frame<'static>)>,
    actions: VecDeque<Action>,
    counters: Counters,
    hops: HopStats,
    last_fix: Option<Now>,
    leave_xfer: Option<u64>,
    discover_rid: u64,
    /// Peers declared dead, probed now and then: a partition that healed shows up as a
    /// live node between us and our successor, which Zave's rule then adopts (this merges
    /// rings that a long partition split). Value: when to forget it.
    ghosts: BTreeMap<SocketAddrV4, Now>,
    /// Stabilize rounds, to pace ghost probes.
    rounds: u64,
    /// Set while serving a JOIN: the joiner gets the records in its WELCOME.
    no_handover: bool,
    /// Nodes that sent `RECTIFY` and are not confirmed yet (addr -> claimed id). A claim
    /// is adopted only once the predecessor lists it, or, with no live predecessor, a ring
    /// lookup of `id - 1` ends at it: an unknown host cannot make itself our predecessor.
    pred_claims: BTreeMap<SocketAddrV4, u64>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.me)
            .field("phase", &self.phase)
            .field("id", &self.id)
            .field("succs", &self.succs)
            .field("pred", &self.pred)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

// ======================================================================================
// Public API
// ======================================================================================

impl Node {
    /// A node at `me` (its identity, `ip:port`), starting at `now`, with all randomness
    /// drawn from `seed`. With an empty [`Config::bootstrap`] it founds a ring and owns the
    /// whole hash space; otherwise it discovers the ring and joins it.
    pub fn new(
        config: Config,
        me: SocketAddrV4,
        seed: u64,
        now: Now,
        verifier: Box<dyn RecordVerifier + Send>,
    ) -> Self {
        Self::restore(config, me, seed, now, verifier, Vec::new())
    }

    /// Like [`Node::new`], with the records a previous run stored (both tables). The node
    /// joins like a new one; once a member it keeps the records it now owns or replicates
    /// and offers the rest to their owners (every copy is re-verified by its receiver).
    pub fn restore(
        config: Config,
        me: SocketAddrV4,
        seed: u64,
        now: Now,
        verifier: Box<dyn RecordVerifier + Send>,
        records: Vec<Record>,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let mut node = Self {
            cfg: config,
            me,
            rng,
            secret,
            verifier,
            phase: Phase::Left,
            id: 0,
            succs: Vec::new(),
            pred: None,
            fingers: vec![None; FINGERS],
            next_finger: 0,
            records: BTreeMap::new(),
            leases: BTreeMap::new(),
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            timers: BTreeMap::new(),
            lookups: BTreeMap::new(),
            commits: BTreeMap::new(),
            incoming: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            welcome: None,
            serving: BTreeMap::new(),
            takeover: None,
            cookies: BTreeMap::new(),
            failures: BTreeMap::new(),
            early: VecDeque::new(),
            actions: VecDeque::new(),
            counters: Counters::default(),
            hops: HopStats::default(),
            last_fix: None,
            leave_xfer: None,
            discover_rid: 0,
            ghosts: BTreeMap::new(),
            rounds: 0,
            no_handover: false,
            pred_claims: BTreeMap::new(),
        };
        for r in records {
            if verify::check(None, &r, node.verifier.as_ref()).is_ok() {
                let hash = ring_hash(&r.user);
                node.records.insert(
                    r.user.clone(),
                    Entry {
                        hash,
                        fp: fingerprint(&r),
                        record: r,
                        table: Table::Owned,
                        touched: now,
                    },
                );
            }
        }
        if node.cfg.bootstrap.is_empty() {
            node.become_founder(now);
        } else {
            node.start_discovery(now);
        }
        node
    }

    /// Feeds one parsed datagram that arrived from `from`.
    pub fn handle_datagram(&mut self, now: Now, from: SocketAddrV4, frame: Frame<'_>) {
        if matches!(self.phase, Phase::Left) {
            self.counters.inc("drop_left");
            return;
        }
        match frame {
            Frame::Ring(rf) => self.on_ring(now, from, rf),
            Frame::Ping => self.send(from, Frame::Pong),
            Frame::Discover => self.event(Event::Discovery {
                from,
                reply_to: from,
                name: true,
            }),
            Frame::DiscoverServer { reply_to } => self.event(Event::Discovery {
                from,
                reply_to: reply_to.unwrap_or(from),
                name: false,
            }),
            Frame::Range => {
                if self.is_member() {
                    let (lo, hi) = self.range();
                    self.send(from, Frame::Ok(OkReply::Range { lo, hi }));
                }
            }
            Frame::Register(_) | Frame::RegisterLegacy { .. } | Frame::Resolve { .. } => {
                self.on_client(now, from, into_static(frame))
            }
            Frame::Status => {
                let json = self.status_json();
                self.send(from, Frame::Ok(OkReply::Json(Cow::Owned(json))));
            }
            Frame::Snapshot => {
                let json = self.snapshot_json();
                self.send(from, Frame::Ok(OkReply::Json(Cow::Owned(json))));
            }
            Frame::Checksum => {
                let json = self.checksum_json();
                self.send(from, Frame::Ok(OkReply::Json(Cow::Owned(json))));
            }
            Frame::ForwardRegister { .. } | Frame::ForwardResolve { .. } => {
                // The original's forwarded forms reflect answers to any address: refused.
                self.counters.inc("refused_forward");
            }
            Frame::Join
            | Frame::PredChange { .. }
            | Frame::Succ { .. }
            | Frame::Fix
            | Frame::Replic(_)
            | Frame::Takeover(_)
            | Frame::DropReplics { .. }
            | Frame::Kill => self.counters.inc("refused_legacy_ring"),
            _ => self.counters.inc("drop_unexpected"),
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        if matches!(self.phase, Phase::Left) {
            return;
        }
        // Request timeouts first: they may reschedule timers.
        while let Some(&(t, key)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            self.on_request_timeout(now, key);
        }
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| *k)
            .collect();
        for t in due {
            self.timers.remove(&t);
            self.on_timer(now, t);
        }
    }

    /// The next effect to perform, in order; `None` when drained.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Node::handle_timeout`] wants to run next (`None`: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Now> {
        let a = self.deadlines.first().map(|(t, _)| *t);
        let b = self.timers.values().min().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a graceful leave: the owned records go to the predecessor, the neighbours
    /// are told, then the node falls silent ([`Event::Left`]).
    pub fn leave(&mut self, now: Now) {
        if !self.is_member() {
            self.phase = Phase::Left;
            self.event(Event::Left);
            return;
        }
        let Some(pred) = self.pred.filter(|p| p.addr != self.me) else {
            self.phase = Phase::Left;
            self.event(Event::Left);
            return;
        };
        self.phase = Phase::Leaving;
        let (lo, hi) = self.range();
        let owned: Vec<Record> = self
            .records
            .values()
            .filter(|e| in_inclusive(e.hash, lo, hi))
            .map(|e| e.record.clone())
            .collect();
        let chunks = chunk_records(owned);
        let rid = self.rng.next_u64();
        let frame = RingFrame::Leave {
            rid,
            cookie: 0,
            chunks: chunks.len() as u32,
            pred: self.pred,
            succs: self.succs.clone(),
        };
        self.request(now, pred.addr, frame, Purpose::Leave);
        let xfer = self.send_chunks(now, pred.addr, rid, chunks);
        self.leave_xfer = Some(xfer);
        if let Some(s) = self.succs.first().copied() {
            if s.addr != pred.addr {
                let rid = self.rng.next_u64();
                let frame = RingFrame::Leave {
                    rid,
                    cookie: 0,
                    chunks: 0,
                    pred: self.pred,
                    succs: Vec::new(),
                };
                self.request(now, s.addr, frame, Purpose::Leave);
            }
        }
    }

    /// This node's identity.
    pub fn addr(&self) -> SocketAddrV4 {
        self.me
    }

    /// Whether the node is a ring member (joined, not left).
    pub fn is_member(&self) -> bool {
        matches!(self.phase, Phase::Member)
    }

    /// Whether the node has finished a graceful leave.
    pub fn has_left(&self) -> bool {
        matches!(self.phase, Phase::Left)
    }

    /// Ring position (the first hash of the range); meaningful once a member.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Owned range `[lo, hi]`, inclusive; `hi < lo` when it wraps.
    pub fn range(&self) -> (u64, u64) {
        owned_range(self.id, self.succs.first().map(|p| p.id))
    }

    /// Whether part of the range is still being taken over from replicas.
    pub fn is_settled(&self) -> bool {
        self.takeover.is_none()
    }

    /// The successor list (empty: alone).
    pub fn successors(&self) -> &[Peer] {
        &self.succs
    }

    /// The predecessor, if known.
    pub fn predecessor(&self) -> Option<Peer> {
        self.pred
    }

    /// The distinct nodes of the finger table.
    pub fn fingers(&self) -> Vec<Peer> {
        let set: BTreeSet<Peer> = self.fingers.iter().flatten().copied().collect();
        set.into_iter().collect()
    }

    /// Every record held, with whether this node owns it.
    pub fn records(&self) -> impl Iterator<Item = (&Record, bool)> + '_ {
        self.records
            .values()
            .map(|e| (&e.record, e.table == Table::Owned))
    }

    /// The record for `user`, if held (owned or replica).
    pub fn record(&self, user: &str) -> Option<&Record> {
        self.records.get(user).map(|e| &e.record)
    }

    /// Counters (frames refused, peers declared dead, ...).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Hop statistics of client lookups started here.
    pub fn hop_stats(&self) -> &HopStats {
        &self.hops
    }

    /// Switches finger routing on or off at run time (off: successor list only), e.g. to
    /// compare both on the same ring.
    pub fn set_finger_routing(&mut self, on: bool) {
        self.cfg.fingers = on;
    }

    /// Sets the hop and time limits of lookups (benchmarks of successor-only routing need
    /// more than the client's 3 s).
    pub fn set_lookup_limits(&mut self, max_hops: u32, timeout: Duration) {
        self.cfg.max_hops = max_hops;
        self.cfg.lookup_timeout = timeout;
    }

    /// Forgets the hop statistics.
    pub fn reset_hop_stats(&mut self) {
        self.hops = HopStats::default();
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the node has no outstanding ring work (no transfer, takeover, lookup or
    /// commit in flight): used by the simulator to detect quiescence.
    pub fn is_idle(&self) -> bool {
        self.takeover.is_none()
            && self.incoming.is_empty()
            && self.outgoing.is_empty()
            && self.lookups.is_empty()
            && self.commits.is_empty()
    }
}

// ======================================================================================
// Lifecycle: founding, discovery, joining
// ======================================================================================

impl Node {
    fn become_founder(&mut self, now: Now) {
        self.id = 0;
        self.succs.clear();
        self.pred = None;
        self.become_member(now);
    }

    fn become_member(&mut self, now: Now) {
        self.phase = Phase::Member;
        let (lo, hi) = self.range();
        self.event(Event::Joined {
            id: self.id,
            lo,
            hi,
        });
        self.reclassify(now, None);
        self.timers.insert(Timer::Stabilize, now);
        self.timers
            .insert(Timer::PingPred, now + self.cfg.ping_interval);
        self.timers
            .insert(Timer::FixFinger, now + self.cfg.fix_fingers_interval);
        self.timers
            .insert(Timer::Sync, now + self.cfg.sync_interval / 4);
        self.timers
            .insert(Timer::Housekeeping, now + self.cfg.sync_interval);
        // Restored records we no longer own or replicate go to their owners.
        let foreign: Vec<Record> = self
            .records
            .values()
            .filter(|e| e.table != Table::Owned)
            .map(|e| e.record.clone())
            .collect();
        for r in foreign {
            let key = ring_hash(&r.user);
            self.start_lookup(
                now,
                LookupFor::Finger { index: usize::MAX },
                key,
                FindOp::Register { record: r },
            );
        }
        let early: Vec<_> = self.early.drain(..).collect();
        for (from, f) in early {
            self.on_client(now, from, f);
        }
    }

    fn start_discovery(&mut self, now: Now) {
        self.phase = Phase::Discovering {
            offers: BTreeMap::new(),
            until: now + self.cfg.discover_window,
        };
        let rid = self.rng.next_u64();
        for b in self.cfg.bootstrap.clone() {
            if b != self.me {
                self.send_ring(b, RingFrame::Discover { rid });
            }
        }
        // Remember the rid so HERE answers can be matched.
        self.discover_rid = rid;
        self.timers
            .insert(Timer::Discover, now + self.cfg.discover_window);
        self.timers
            .entry(Timer::Housekeeping)
            .or_insert(now + self.cfg.sync_interval);
    }
}

// ======================================================================================
// Timers
// ======================================================================================

impl Node {
    fn on_timer(&mut self, now: Now, t: Timer) {
        match t {
            Timer::Discover => self.finish_discovery(now),
            Timer::Stabilize => {
                if self.is_member() {
                    self.stabilize(now);
                    self.rounds += 1;
                    if self.rounds.is_multiple_of(4) {
                        self.probe_ghost(now);
                    }
                }
                self.timers
                    .insert(Timer::Stabilize, now + self.cfg.stabilize_interval);
            }
            Timer::PingPred => {
                if self.is_member() {
                    if let Some(p) = self.pred.filter(|p| p.addr != self.me) {
                        if !self.has_pending_purpose(p.addr, &Purpose::PingPred) {
                            let rid = self.rng.next_u64();
                            self.request(
                                now,
                                p.addr,
                                RingFrame::Ping { rid, cookie: 0 },
                                Purpose::PingPred,
                            );
                        }
                    }
                }
                self.timers
                    .insert(Timer::PingPred, now + self.cfg.ping_interval);
            }
            Timer::FixFinger => {
                if self.is_member() && self.cfg.fingers {
                    self.fix_one_finger(now);
                }
                self.timers
                    .insert(Timer::FixFinger, now + self.cfg.fix_fingers_interval);
            }
            Timer::Sync => {
                if self.is_member() {
                    self.sync_replicas(now);
                }
                self.timers
                    .insert(Timer::Sync, now + self.cfg.sync_interval);
            }
            Timer::Housekeeping => {
                self.housekeeping(now);
                self.timers
                    .insert(Timer::Housekeeping, now + self.cfg.sync_interval);
            }
        }
    }

    fn finish_discovery(&mut self, now: Now) {
        let Phase::Discovering { offers, .. } = &self.phase else {
            return;
        };
        // Widest range wins; ties go to the lowest address (deterministic).
        let best = offers
            .iter()
            .max_by(|a, b| {
                let wa = dist(a.1.0, a.1.1);
                let wb = dist(b.1.0, b.1.1);
                wa.cmp(&wb).then(b.0.cmp(a.0))
            })
            .map(|(a, _)| *a);
        match best {
            Some(target) => {
                let rid = self.rng.next_u64();
                self.phase = Phase::Joining { target, rid };
                self.welcome = None;
                self.incoming.insert(
                    (target, rid),
                    Incoming {
                        purpose: Inbound::Welcome,
                        total: None,
                        chunks: BTreeMap::new(),
                        deadline: now + TRANSFER_TIMEOUT,
                    },
                );
                self.request(
                    now,
                    target,
                    RingFrame::Join { rid, cookie: 0 },
                    Purpose::Join,
                );
            }
            None => {
                // Nobody answered: keep looking (never found a second ring by accident).
                self.counters.inc("discover_retry");
                self.start_discovery(now);
                self.timers
                    .insert(Timer::Discover, now + self.cfg.discover_window * 3);
            }
        }
    }

    fn join_failed(&mut self, now: Now) {
        if let Phase::Joining { target, rid } = self.phase {
            self.incoming.remove(&(target, rid));
        }
        self.counters.inc("join_retry");
        self.welcome = None;
        self.start_discovery(now);
        // Back off a little so a refusing node can finish its other join.
        let jitter = Duration::from_millis(self.rng.next_u64() % 500);
        self.timers
            .insert(Timer::Discover, now + self.cfg.discover_window + jitter);
    }

    fn housekeeping(&mut self, now: Now) {
        // Drop incoming transfers that never completed.
        let stale: Vec<_> = self
            .incoming
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(inc) = self.incoming.remove(&k) {
                self.counters.inc("transfer_abandoned");
                if inc.purpose == Inbound::Fetch {
                    self.fetch_finished(now, k);
                }
                if inc.purpose == Inbound::Welcome {
                    self.join_failed(now);
                }
            }
        }
        self.serving.retain(|_, s| s.until > now);
        self.ghosts.retain(|_, t| *t > now);
        self.lookups_expire(now);
        if !self.is_member() {
            return;
        }
        // Replicas no owner vouches for any more are dropped (responsibility moved).
        self.leases.retain(|_, l| l.until > now);
        let (lo, hi) = self.range();
        let mut drop = Vec::new();
        for (user, e) in &self.records {
            if in_inclusive(e.hash, lo, hi) {
                continue;
            }
            if let Some(t) = &self.takeover {
                if in_half_open(e.hash, t.lo, t.end) {
                    continue;
                }
            }
            let covered = self
                .leases
                .values()
                .any(|l| in_inclusive(e.hash, l.lo, l.hi));
            if !covered && now.saturating_sub(e.touched) > self.cfg.lease {
                drop.push(user.clone());
            }
        }
        for user in drop {
            self.records.remove(&user);
            self.counters.inc("replica_dropped");
            self.store(StoreOp::Delete { user });
        }
    }

    fn lookups_expire(&mut self, now: Now) {
        let expired: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for lid in expired {
            self.lookups.remove(&lid);
            self.counters.inc("lookup_expired");
        }
    }
}

// ======================================================================================
// Ring frames
// ======================================================================================

impl Node {
    fn on_ring(&mut self, now: Now, from: SocketAddrV4, rf: RingFrame) {
        self.counters.inc("ring_in");
        if from == self.me {
            self.counters.inc("drop_self");
            return;
        }
        // Requests must carry the cookie we issued to their source address: proof that the
        // sender receives at that address, so spoofed sources cannot move state or reflect.
        if let Some(cookie) = rf.cookie() {
            if cookie != self.cookie_for(from) {
                self.counters.inc("cookie_challenge");
                let c = self.cookie_for(from);
                self.send_ring(
                    from,
                    RingFrame::Cookie {
                        rid: rf.rid(),
                        cookie: c,
                    },
                );
                return;
            }
            self.on_request(now, from, rf);
            return;
        }
        self.on_reply(now, from, rf);
    }

    fn on_request(&mut self, now: Now, from: SocketAddrV4, rf: RingFrame) {
        match rf {
            RingFrame::Ping { rid, .. } => {
                if self.is_member() {
                    self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
                }
            }
            RingFrame::GetState { rid, .. } => {
                if self.is_member() {
                    let frame = RingFrame::State {
                        rid,
                        id: self.id,
                        pred: self.pred,
                        succs: self.succs.clone(),
                    };
                    self.send_ring(from, frame);
                }
            }
            RingFrame::Rectify { rid, id, .. } => {
                if self.is_member() {
                    self.rectify(now, Peer { id, addr: from });
                    self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
                }
            }
            RingFrame::Join { rid, .. } => self.on_join(now, from, rid),
            RingFrame::Find { rid, key, op, .. } => self.on_find(now, from, rid, key, op),
            RingFrame::Replicate { rid, records, .. } => {
                if matches!(
                    self.phase,
                    Phase::Member | Phase::Joining { .. } | Phase::Leaving
                ) {
                    for r in records {
                        self.apply_record(now, r, Some(from));
                    }
                    self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
                }
            }
            RingFrame::Sync {
                rid,
                lo,
                hi,
                count,
                digest,
                ..
            } => {
                if !self.is_member()
                    || (self.leases.len() >= self.cfg.max_pending
                        && !self.leases.contains_key(&from))
                {
                    return;
                }
                self.leases.insert(
                    from,
                    Lease {
                        lo,
                        hi,
                        until: now + self.cfg.lease,
                    },
                );
                let (c, d) = self.digest(lo, hi);
                let want = (c, d) != (count, digest);
                if want && self.incoming.len() < self.cfg.max_pending {
                    self.incoming.insert(
                        (from, rid),
                        Incoming {
                            purpose: Inbound::SyncPush { lo, hi },
                            total: None,
                            chunks: BTreeMap::new(),
                            deadline: now + TRANSFER_TIMEOUT,
                        },
                    );
                }
                self.send_ring(from, RingFrame::Synced { rid, want });
            }
            RingFrame::Fetch { rid, lo, hi, .. } => {
                if !matches!(self.phase, Phase::Member | Phase::Leaving) {
                    return;
                }
                if self.outgoing.len() >= self.cfg.max_pending {
                    self.counters.inc("fetch_overload");
                    return;
                }
                let recs: Vec<Record> = self
                    .records
                    .values()
                    .filter(|e| in_inclusive(e.hash, lo, hi))
                    .map(|e| e.record.clone())
                    .collect();
                let chunks = chunk_records(recs);
                self.send_chunks(now, from, rid, chunks);
            }
            RingFrame::Fix { rid, .. } => {
                self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
                if self.is_member() && self.is_neighbour(from) {
                    self.immediate_round(now);
                }
            }
            RingFrame::Leave {
                rid,
                chunks,
                pred,
                succs,
                ..
            } => self.on_leave(now, from, rid, chunks, pred, succs),
            RingFrame::Drop { rid, .. } => {
                // Replicas expire by lease; an explicit DROP is acknowledged only.
                self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
            }
            _ => self.counters.inc("drop_unexpected_ring"),
        }
    }

    fn on_reply(&mut self, now: Now, from: SocketAddrV4, rf: RingFrame) {
        match rf {
            RingFrame::Discover { rid } => {
                if self.is_member() {
                    let (lo, hi) = self.range();
                    self.send_ring(from, RingFrame::Here { rid, lo, hi });
                }
            }
            RingFrame::Here { rid, lo, hi } => {
                if rid != self.discover_rid {
                    self.counters.inc("drop_unmatched");
                    return;
                }
                if let Phase::Discovering { offers, .. } = &mut self.phase {
                    if offers.len() < 256 {
                        offers.insert(from, (lo, hi));
                    }
                }
            }
            RingFrame::Cookie { rid, cookie } => {
                let key = (from, rid, 0);
                if let Some(mut p) = self.pending.remove(&key) {
                    self.deadlines.remove(&(p.deadline, key));
                    if self.cookies.len() >= MAX_COOKIES {
                        self.cookies.clear();
                    }
                    self.cookies.insert(from, cookie);
                    p.frame.set_cookie(cookie);
                    self.send_ring(from, p.frame.clone());
                    p.deadline = now + self.cfg.rto;
                    self.deadlines.insert((p.deadline, key));
                    self.pending.insert(key, p);
                } else {
                    self.counters.inc("drop_unmatched");
                }
            }
            RingFrame::Ack { rid, seq } => {
                let Some(p) = self.take_pending((from, rid, seq)) else {
                    self.counters.inc("drop_unmatched");
                    return;
                };
                self.failures.remove(&from);
                self.on_ack(now, from, p);
            }
            RingFrame::State {
                rid,
                id,
                pred,
                succs,
            } => {
                let Some(p) = self.take_pending((from, rid, 0)) else {
                    self.counters.inc("drop_unmatched");
                    return;
                };
                self.failures.remove(&from);
                match p.purpose {
                    Purpose::Stabilize => {
                        self.on_succ_state(now, Peer { id, addr: from }, pred, succs)
                    }
                    Purpose::Adopt => {
                        self.ghosts.remove(&from);
                        self.on_adopt_state(now, Peer { id, addr: from }, succs)
                    }
                    Purpose::PredConfirm => self.on_pred_state(now, from, &succs),
                    _ => {}
                }
            }
            RingFrame::Welcome {
                rid,
                id,
                pred,
                succs,
                ..
            } => {
                let Phase::Joining { target, rid: jrid } = self.phase else {
                    self.counters.inc("drop_unmatched");
                    return;
                };
                if target != from || rid != jrid || pred.addr != from {
                    self.counters.inc("drop_unmatched");
                    return;
                }
                self.take_pending((from, rid, 0));
                self.welcome = Some(Welcome { id, pred, succs });
                self.try_complete_incoming(now, (from, rid));
            }
            RingFrame::Refuse { rid } => {
                if let Phase::Joining { target, rid: jrid } = self.phase {
                    if target == from && rid == jrid {
                        self.take_pending((from, rid, 0));
                        self.join_failed(now);
                        return;
                    }
                }
                self.counters.inc("drop_unmatched");
            }
            RingFrame::Records {
                rid,
                seq,
                total,
                records,
            } => self.on_records(now, from, rid, seq, total, records),
            RingFrame::Refer { rid, peer } => {
                let Some(p) = self.take_pending((from, rid, 0)) else {
                    self.counters.inc("drop_unmatched");
                    return;
                };
                self.failures.remove(&from);
                if let Purpose::Lookup { lid } = p.purpose {
                    let key = match &p.frame {
                        RingFrame::Find { key, .. } => *key,
                        _ => return,
                    };
                    // Referrals must make progress towards the key, or they could loop.
                    let from_id = self.known_id(from);
                    let progress = match from_id {
                        Some(fid) => dist(peer.id, key) < dist(fid, key),
                        None => true,
                    };
                    if peer.addr == self.me || !progress {
                        self.counters.inc("lookup_bad_referral");
                        self.lookup_fail_hop(now, lid, from);
                    } else {
                        self.note_id(peer);
                        self.lookup_send(now, lid, peer.addr);
                    }
                }
            }
            RingFrame::Found { rid, id, outcome } => {
                let Some(p) = self.take_pending((from, rid, 0)) else {
                    self.counters.inc("drop_unmatched");
                    return;
                };
                self.failures.remove(&from);
                if let Purpose::Lookup { lid } = p.purpose {
                    self.lookup_done(now, lid, Peer { id, addr: from }, outcome);
                }
            }
            RingFrame::Busy { rid } => {
                let key = (from, rid, 0);
                if let Some(mut p) = self.pending.remove(&key) {
                    self.deadlines.remove(&(p.deadline, key));
                    // Retry the same node shortly, without counting a failure.
                    p.deadline = now + BUSY_RETRY;
                    p.tries = p.tries.saturating_sub(1);
                    self.deadlines.insert((p.deadline, key));
                    self.pending.insert(key, p);
                } else {
                    self.counters.inc("drop_unmatched");
                }
            }
            RingFrame::Synced { rid, want } => {
                let Some(p) = self.take_pending((from, rid, 0)) else {
                    self.counters.inc("drop_unmatched");
                    return;
                };
                if let RingFrame::Sync { lo, hi, .. } = p.frame {
                    if want && self.is_member() {
                        self.counters.inc("sync_push");
                        let recs: Vec<Record> = self
                            .records
                            .values()
                            .filter(|e| in_inclusive(e.hash, lo, hi))
                            .map(|e| e.record.clone())
                            .collect();
                        let chunks = chunk_records(recs);
                        self.send_chunks(now, from, rid, chunks);
                    }
                }
            }
            _ => self.counters.inc("drop_unexpected_ring"),
        }
    }

    fn on_ack(&mut self, now: Now, from: SocketAddrV4, p: Pending) {
        match p.purpose {
            Purpose::Replicate { commit } => self.commit_progress(commit),
            Purpose::Chunk { xfer } => self.chunk_done(now, xfer),
            Purpose::PingPred | Purpose::Rectify | Purpose::Fix => {}
            Purpose::PredCheck { .. } => {
                // The old predecessor lives: keep it (Zave's rectify).
                let _ = from;
            }
            Purpose::Leave => {}
            _ => {}
        }
    }
}

// ======================================================================================
// Zave's ring maintenance
// ======================================================================================

impl Node {
    /// Stabilize from the first successor (or, alone, from a predecessor that appeared).
    fn stabilize(&mut self, now: Now) {
        let target = match self.succs.first() {
            Some(s) => Some(s.addr),
            None => self.pred.filter(|p| p.addr != self.me).map(|p| p.addr),
        };
        if let Some(t) = target {
            if self.has_pending_purpose(t, &Purpose::Stabilize) {
                return;
            }
            let rid = self.rng.next_u64();
            let purpose = if self.succs.is_empty() {
                Purpose::Adopt
            } else {
                Purpose::Stabilize
            };
            self.request(now, t, RingFrame::GetState { rid, cookie: 0 }, purpose);
        }
    }

    /// Asks one remembered dead peer for its state; if it is alive again and lies between
    /// us and our successor, [`Self::on_adopt_state`] adopts it.
    fn probe_ghost(&mut self, now: Now) {
        let pick = self.rounds / 4;
        let n = self.ghosts.len() as u64;
        if n == 0 {
            return;
        }
        let Some(addr) = self.ghosts.keys().nth((pick % n) as usize).copied() else {
            return;
        };
        if self.succs.iter().any(|p| p.addr == addr) {
            self.ghosts.remove(&addr);
            return;
        }
        // A check already in flight (stabilize saw it as our successor's predecessor) is
        // no reason to forget it: after a partition this probe is what brings it back.
        if self.has_pending_purpose(addr, &Purpose::Adopt) {
            return;
        }
        let rid = self.rng.next_u64();
        self.request(
            now,
            addr,
            RingFrame::GetState { rid, cookie: 0 },
            Purpose::Adopt,
        );
    }

    /// An immediate round (FIX, or a failure just seen), rate limited.
    fn immediate_round(&mut self, now: Now) {
        if let Some(t) = self.last_fix {
            if now < t + self.cfg.rto / 2 {
                return;
            }
        }
        self.last_fix = Some(now);
        self.stabilize(now);
    }

    /// `STATE` of our first successor `s`.
    fn on_succ_state(&mut self, now: Now, s: Peer, pred: Option<Peer>, succs: Vec<Peer>) {
        if self.succs.first().map(|p| p.addr) != Some(s.addr) {
            return; // stale answer
        }
        let list = self.merge_list(s, &succs);
        self.set_succs(now, list);
        match pred {
            Some(p) if p.addr != self.me && strictly_between(self.id, p.id, s.id) => {
                // Adopt only a live node: ask it first.
                if !self.has_pending_purpose(p.addr, &Purpose::Adopt) {
                    let rid = self.rng.next_u64();
                    self.request(
                        now,
                        p.addr,
                        RingFrame::GetState { rid, cookie: 0 },
                        Purpose::Adopt,
                    );
                }
            }
            _ => self.send_rectify(now, s.addr),
        }
    }

    /// `STATE` of a candidate successor that lies between us and our successor.
    fn on_adopt_state(&mut self, now: Now, p: Peer, succs: Vec<Peer>) {
        let ok = match self.succs.first() {
            Some(s) => strictly_between(self.id, p.id, s.id) || s.addr == p.addr,
            None => true,
        };
        if !ok || p.addr == self.me {
            return;
        }
        let list = self.merge_list(p, &succs);
        self.set_succs(now, list);
        self.send_rectify(now, p.addr);
    }

    fn send_rectify(&mut self, now: Now, to: SocketAddrV4) {
        if self.has_pending_purpose(to, &Purpose::Rectify) {
            return;
        }
        let rid = self.rng.next_u64();
        self.request(
            now,
            to,
            RingFrame::Rectify {
                rid,
                cookie: 0,
                id: self.id,
            },
            Purpose::Rectify,
        );
    }

    /// `head :: list`, cut at ourselves, without duplicates, at most `r` long.
    fn merge_list(&self, head: Peer, rest: &[Peer]) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::with_capacity(self.cfg.r);
        for p in std::iter::once(&head).chain(rest.iter()) {
            if p.addr == self.me || out.len() >= self.cfg.r {
                break;
            }
            if out.iter().any(|q| q.addr == p.addr) {
                continue;
            }
            out.push(*p);
        }
        out
    }

    /// Zave's rectify: adopt the notifier if it lies between the predecessor and us;
    /// otherwise replace the predecessor only once it is found dead.
    ///
    /// The notifier's claim is not taken on its word (anyone who answers a cookie can send
    /// `RECTIFY`): between a live predecessor and us it is adopted only once that
    /// predecessor lists it among its successors ([`Self::on_pred_state`]); with no
    /// predecessor, only once a ring lookup of `id - 1` ends at it
    /// ([`Self::confirm_by_lookup`]). A node alone (no successor) adopts at once.
    fn rectify(&mut self, now: Now, n: Peer) {
        match self.pred {
            None if self.succs.is_empty() => self.set_pred(Some(n)),
            None => self.confirm_by_lookup(now, n),
            Some(p) if p.addr == n.addr => {
                if p.id != n.id {
                    self.set_pred(Some(n));
                }
            }
            Some(p) if strictly_between(p.id, n.id, self.id) => self.confirm_with_pred(now, p, n),
            Some(p) => {
                if !self.has_pending_to(p.addr) {
                    let rid = self.rng.next_u64();
                    self.request(
                        now,
                        p.addr,
                        RingFrame::Ping { rid, cookie: 0 },
                        Purpose::PredCheck { candidate: n },
                    );
                }
            }
        }
        // Alone until now: the notifier (adopted above) is our successor too.
        if self.succs.is_empty() && n.addr != self.me && self.pred == Some(n) {
            self.set_succs(now, vec![n]);
        }
    }

    /// Remembers an unconfirmed predecessor claim (bounded; a random one makes room).
    fn note_claim(&mut self, n: Peer) {
        if !self.pred_claims.contains_key(&n.addr) && self.pred_claims.len() >= MAX_PRED_CLAIMS {
            let i = (self.rng.next_u64() % self.pred_claims.len() as u64) as usize;
            if let Some(k) = self.pred_claims.keys().nth(i).copied() {
                self.pred_claims.remove(&k);
            }
        }
        self.pred_claims.insert(n.addr, n.id);
    }

    /// `n` claims to lie between our live predecessor `p` and us: ask `p` whether it
    /// lists `n` (a joiner that `p` split its range for is `p`'s first successor).
    fn confirm_with_pred(&mut self, now: Now, p: Peer, n: Peer) {
        self.note_claim(n);
        if !self.has_pending_purpose(p.addr, &Purpose::PredConfirm) {
            let rid = self.rng.next_u64();
            self.request(
                now,
                p.addr,
                RingFrame::GetState { rid, cookie: 0 },
                Purpose::PredConfirm,
            );
        }
    }

    /// `STATE` of our predecessor, asked by [`Self::confirm_with_pred`]: adopt the closest
    /// claimant it lists between itself and us. If it lists none (after a partition the
    /// two sides' lists know nothing of each other), ask the ring.
    fn on_pred_state(&mut self, now: Now, from: SocketAddrV4, succs: &[Peer]) {
        let Some(p) = self.pred.filter(|p| p.addr == from) else {
            return; // the predecessor changed meanwhile; claims are repeated every round
        };
        let best = self
            .pred_claims
            .iter()
            .map(|(a, id)| Peer { id: *id, addr: *a })
            .filter(|c| strictly_between(p.id, c.id, self.id) && succs.contains(c))
            .max_by_key(|c| dist(p.id, c.id));
        match best {
            Some(c) => {
                self.pred_claims.clear();
                self.set_pred(Some(c));
            }
            None if !self.pred_claims.is_empty() => self.start_pred_lookup(now),
            None => {}
        }
    }

    /// No live predecessor: the node the ring routes `id - 1` to is our predecessor. Look
    /// it up (through members only) and adopt a claimant once the lookup ends at it.
    fn confirm_by_lookup(&mut self, now: Now, n: Peer) {
        self.note_claim(n);
        self.start_pred_lookup(now);
    }

    /// Starts the lookup of [`Self::confirm_by_lookup`] unless one is running.
    fn start_pred_lookup(&mut self, now: Now) {
        if self
            .lookups
            .values()
            .any(|l| l.purpose == LookupFor::PredClaim)
        {
            return;
        }
        let key = (self.id + MODULUS - 1) % MODULUS;
        self.start_lookup(now, LookupFor::PredClaim, key, FindOp::Locate);
    }

    fn set_pred(&mut self, p: Option<Peer>) {
        if self.pred != p {
            self.pred = p;
            self.event(Event::PredecessorChanged { pred: p });
        }
    }

    /// Installs a new successor list and handles the range change it implies.
    fn set_succs(&mut self, now: Now, list: Vec<Peer>) {
        if list == self.succs {
            return;
        }
        let old_first = self.succs.first().copied();
        let old_range = self.range();
        let old_window: Vec<SocketAddrV4> = self
            .succs
            .iter()
            .take(self.cfg.r.saturating_sub(1))
            .map(|p| p.addr)
            .collect();
        self.succs = list;
        for p in self.succs.clone() {
            self.note_id(p);
        }
        let new_first = self.succs.first().copied();
        if old_first.map(|p| p.addr) != new_first.map(|p| p.addr) {
            self.event(Event::SuccessorChanged { succ: new_first });
        }
        let new_range = self.range();
        if new_range != old_range {
            self.on_range_change(now, old_range, new_range);
        }
        // New replica holders get our records at once.
        let new_window: Vec<SocketAddrV4> = self
            .succs
            .iter()
            .take(self.cfg.r.saturating_sub(1))
            .map(|p| p.addr)
            .collect();
        if new_window != old_window && self.is_member() && self.takeover.is_none() {
            for a in new_window {
                if !old_window.contains(&a) {
                    self.sync_one(now, a);
                }
            }
        }
    }

    /// Our range went from `old` to `new` (inclusive bounds; `id` is fixed, so only the end
    /// moves). Growth is taken over from the replicas; shrinkage is handed to the new owner.
    fn on_range_change(&mut self, now: Now, old: (u64, u64), new: (u64, u64)) {
        let (lo, _) = new;
        let old_end = (old.1 + 1) % MODULUS;
        let new_end = (new.1 + 1) % MODULUS;
        let old_w = dist(lo, old.1);
        let new_w = dist(lo, new.1);
        self.event(Event::RangeChanged {
            lo: new.0,
            hi: new.1,
        });
        if new_w > old_w {
            // Grew: [old_end, new_end) was someone else's. Fetch it from the replicas.
            let (t_lo, mut queued) = match self.takeover.take() {
                Some(t) => (t.lo, t.queued),
                None => (old_end, Vec::new()),
            };
            // A takeover only ever covers the part of our range past our own records.
            let t_lo = if in_half_open(t_lo, lo, new_end) || t_lo == new_end {
                t_lo
            } else {
                old_end
            };
            let mut t = Takeover {
                lo: t_lo,
                end: new_end,
                fetches: BTreeSet::new(),
                received: 0,
                queued: Vec::new(),
            };
            std::mem::swap(&mut t.queued, &mut queued);
            let targets: Vec<SocketAddrV4> = self
                .succs
                .iter()
                .take(self.cfg.r.saturating_sub(1).max(1))
                .map(|p| p.addr)
                .collect();
            let hi_incl = (new_end + MODULUS - 1) % MODULUS;
            for a in targets {
                let rid = self.rng.next_u64();
                self.incoming.insert(
                    (a, rid),
                    Incoming {
                        purpose: Inbound::Fetch,
                        total: None,
                        chunks: BTreeMap::new(),
                        deadline: now + TRANSFER_TIMEOUT,
                    },
                );
                t.fetches.insert((a, rid));
                self.request(
                    now,
                    a,
                    RingFrame::Fetch {
                        rid,
                        cookie: 0,
                        lo: t.lo,
                        hi: hi_incl,
                    },
                    Purpose::Fetch,
                );
            }
            self.counters.inc("takeover_started");
            let empty = t.fetches.is_empty();
            self.takeover = Some(t);
            if empty {
                self.finish_takeover(now);
            }
        } else {
            // Shrank: [new_end, old_end) belongs to our new successor. Hand it over.
            if let Some(t) = &mut self.takeover {
                if !in_half_open(t.lo, lo, new_end) {
                    t.lo = new_end;
                }
                t.end = new_end;
                if dist(lo, t.lo) >= dist(lo, t.end) && t.lo != t.end {
                    // nothing left to take over
                }
            }
            if let Some(s) = self.succs.first().copied().filter(|_| !self.no_handover) {
                let mut moved: Vec<Record> = self
                    .records
                    .values()
                    .filter(|e| in_half_open(e.hash, new_end, old_end))
                    .map(|e| e.record.clone())
                    .collect();
                self.counters.add("handover_records", moved.len() as u64);
                // Each record goes to its owner through the ring (after a merge the part
                // we give up spans several owners); the owner applies the record rules.
                let room = (self.cfg.max_pending / 2).saturating_sub(self.lookups.len());
                let rest = moved.split_off(moved.len().min(room));
                for r in moved {
                    let key = ring_hash(&r.user);
                    self.start_lookup(
                        now,
                        LookupFor::Finger { index: usize::MAX },
                        key,
                        FindOp::Register { record: r },
                    );
                }
                if !rest.is_empty() {
                    for chunk in chunk_records(rest) {
                        let rid = self.rng.next_u64();
                        self.request(
                            now,
                            s.addr,
                            RingFrame::Replicate {
                                rid,
                                cookie: 0,
                                records: chunk,
                            },
                            Purpose::Replicate { commit: None },
                        );
                    }
                }
            }
            // Requests queued for the part that moved are re-examined (they will be referred).
            if let Some(t) = &mut self.takeover {
                let q = std::mem::take(&mut t.queued);
                let done = t.lo == t.end;
                if done {
                    self.takeover = None;
                }
                for (from, f) in q {
                    self.on_ring_requeued(now, from, f);
                }
            }
        }
        self.reclassify(now, self.succs.first().map(|p| p.addr));
    }

    fn on_ring_requeued(&mut self, now: Now, from: SocketAddrV4, f: RingFrame) {
        if let RingFrame::Find { rid, key, op, .. } = f {
            self.on_find(now, from, rid, key, op);
        }
    }

    fn fetch_finished(&mut self, now: Now, key: (SocketAddrV4, u64)) {
        let done = match &mut self.takeover {
            Some(t) => {
                t.fetches.remove(&key);
                t.fetches.is_empty()
            }
            None => false,
        };
        if done {
            self.finish_takeover(now);
        }
    }

    fn finish_takeover(&mut self, now: Now) {
        let Some(t) = self.takeover.take() else {
            return;
        };
        self.counters.inc("takeover_done");
        let hi = (t.end + MODULUS - 1) % MODULUS;
        self.event(Event::TakeoverDone {
            lo: t.lo,
            hi,
            records: t.received,
        });
        self.reclassify(now, None);
        for (from, f) in t.queued {
            self.on_ring_requeued(now, from, f);
        }
        // Our (bigger) range goes to our replica holders now.
        self.sync_replicas(now);
    }

    /// A successor did not answer `dead_after` tries: drop it, shift, repair at once.
    fn peer_dead(&mut self, now: Now, addr: SocketAddrV4) {
        self.counters.inc("peer_dead");
        if self.ghosts.len() < 4 * self.cfg.r {
            self.ghosts.insert(addr, now + GHOST_TTL);
        }
        self.failures.remove(&addr);
        self.event(Event::PeerDead { addr });
        for f in self.fingers.iter_mut() {
            if f.map(|p| p.addr) == Some(addr) {
                *f = None;
            }
        }
        if self.pred.map(|p| p.addr) == Some(addr) {
            self.set_pred(None);
        }
        if self.succs.iter().any(|p| p.addr == addr) {
            let list: Vec<Peer> = self
                .succs
                .iter()
                .filter(|p| p.addr != addr)
                .copied()
                .collect();
            self.set_succs(now, list);
            // Tell the predecessor so it repairs now rather than at its next round.
            if let Some(p) = self.pred.filter(|p| p.addr != self.me && p.addr != addr) {
                let rid = self.rng.next_u64();
                self.request(now, p.addr, RingFrame::Fix { rid, cookie: 0 }, Purpose::Fix);
            }
            self.last_fix = None;
            self.immediate_round(now);
        }
    }

    fn on_join(&mut self, now: Now, from: SocketAddrV4, rid: u64) {
        if let Some(s) = self.serving.get(&from) {
            if s.rid == rid {
                let w = s.welcome.clone();
                self.send_ring(from, w);
                return;
            }
        }
        let refuse = !self.is_member()
            || self.takeover.is_some()
            || self
                .serving
                .values()
                .any(|s| self.outgoing.contains_key(&s.xfer))
            || self.is_neighbour(from);
        let (lo, hi) = self.range();
        let mid = split_point(lo, hi);
        let Some(mid) = mid.filter(|_| !refuse) else {
            self.counters.inc("join_refused");
            self.send_ring(from, RingFrame::Refuse { rid });
            return;
        };
        self.counters.inc("join_served");
        let joiner = Peer {
            id: mid,
            addr: from,
        };
        let me = Peer {
            id: self.id,
            addr: self.me,
        };
        // Zave: the joiner copies our successor list (we close it in small rings).
        let mut jl: Vec<Peer> = Vec::new();
        for p in self.succs.iter().chain(std::iter::once(&me)) {
            if jl.len() >= self.cfg.r || p.addr == from {
                break;
            }
            if !jl.iter().any(|q| q.addr == p.addr) {
                jl.push(*p);
            }
        }
        // Everything we hold: owned (its part of our range) and replicas (it is now a
        // successor of the same owners). Extras expire by lease.
        let recs: Vec<Record> = self.records.values().map(|e| e.record.clone()).collect();
        let chunks = chunk_records(recs);
        let welcome = RingFrame::Welcome {
            rid,
            id: mid,
            chunks: chunks.len() as u32,
            pred: me,
            succs: jl,
        };
        self.send_ring(from, welcome.clone());
        let xfer = self.send_chunks(now, from, rid, chunks);
        self.serving.insert(
            from,
            Serving {
                rid,
                welcome,
                xfer,
                until: now + TRANSFER_TIMEOUT,
            },
        );
        let mut list = vec![joiner];
        list.extend(self.succs.iter().copied());
        let list = self.merge_list(joiner, &list[1..]);
        self.no_handover = true;
        self.set_succs(now, list);
        self.no_handover = false;
    }

    fn on_leave(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        chunks: u32,
        pred: Option<Peer>,
        succs: Vec<Peer>,
    ) {
        self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
        if !self.is_member() {
            return;
        }
        let is_succ = self.succs.first().map(|p| p.addr) == Some(from);
        let is_pred = self.pred.map(|p| p.addr) == Some(from);
        if is_succ {
            self.counters.inc("leave_from_succ");
            if chunks > 0 && !self.incoming.contains_key(&(from, rid)) {
                self.incoming.insert(
                    (from, rid),
                    Incoming {
                        purpose: Inbound::Leave,
                        total: Some(chunks),
                        chunks: BTreeMap::new(),
                        deadline: now + TRANSFER_TIMEOUT,
                    },
                );
            }
            // Adopt its successors; the range grows with records arriving in this transfer
            // (and the usual fetch from the replicas, in case the transfer is lost).
            let list: Vec<Peer> = succs.iter().filter(|p| p.addr != from).copied().collect();
            let list = match list.first() {
                Some(h) => self.merge_list(*h, &list[1..]),
                None => Vec::new(),
            };
            self.set_succs(now, list);
        } else if is_pred {
            self.counters.inc("leave_from_pred");
            let p = pred.filter(|p| p.addr != self.me && p.addr != from);
            self.set_pred(p);
        }
    }
}

// ======================================================================================
// Lookups (FIND), client requests
// ======================================================================================

impl Node {
    fn on_client(&mut self, now: Now, from: SocketAddrV4, frame: Frame<'static>) {
        if !self.is_member() {
            if self.early.len() < self.cfg.max_pending {
                self.early.push_back((from, frame));
            }
            return;
        }
        let (key, op) = match frame {
            Frame::Resolve { user } => (
                ring_hash(&user),
                FindOp::Resolve {
                    user: user.into_owned(),
                },
            ),
            Frame::Register(reg) => {
                let record = Record {
                    user: reg.user.into_owned(),
                    ip: reg.ip,
                    port: reg.port,
                    version: reg.version,
                    pubkey_b64: reg.pubkey_b64.into_owned(),
                    sig_b64: reg.sig_b64.into_owned(),
                };
                // Payload checks at the entry; the owner checks key, signature and version
                // in the original's order (payload, key, signature, version).
                if !verify::valid_payload(&record) || !record.is_signed() {
                    self.send(from, Frame::Error(ErrorReply::InvalidPayload));
                    return;
                }
                (ring_hash(&record.user), FindOp::Register { record })
            }
            Frame::RegisterLegacy { user, ip, port } => {
                let record = Record {
                    user: user.into_owned(),
                    ip,
                    port,
                    version: 0,
                    pubkey_b64: String::new(),
                    sig_b64: String::new(),
                };
                if !verify::valid_payload(&record) {
                    self.send(from, Frame::Error(ErrorReply::InvalidPayload));
                    return;
                }
                (ring_hash(&record.user), FindOp::Register { record })
            }
            _ => return,
        };
        self.counters.inc("client_requests");
        self.start_lookup(now, LookupFor::Client { client: from }, key, op);
    }

    fn start_lookup(&mut self, now: Now, purpose: LookupFor, key: u64, op: FindOp) {
        if self.lookups.len() >= self.cfg.max_pending {
            self.counters.inc("lookup_overload");
            return;
        }
        let lid = self.rng.next_u64();
        self.lookups.insert(
            lid,
            Lookup {
                purpose,
                key,
                op,
                hops: 0,
                failed: BTreeSet::new(),
                deadline: now + self.cfg.lookup_timeout,
            },
        );
        self.lookup_step(now, lid);
    }

    /// Next step of a lookup from our own table: answer locally or ask the closest node.
    fn lookup_step(&mut self, now: Now, lid: u64) {
        let Some(l) = self.lookups.get(&lid) else {
            return;
        };
        let key = l.key;
        if self.owns(key) {
            if self.in_takeover(key) {
                // Wait for the takeover: a self-addressed deferral re-runs this step.
                let rid = self.rng.next_u64();
                // A self-addressed deferral: re-run this step shortly.
                let key_p = (self.me, rid, 0);
                let p = Pending {
                    frame: RingFrame::Busy { rid },
                    purpose: Purpose::Lookup { lid },
                    tries: 0,
                    deadline: now + BUSY_RETRY,
                };
                self.deadlines.insert((p.deadline, key_p));
                self.pending.insert(key_p, p);
                return;
            }
            let Some(l) = self.lookups.remove(&lid) else {
                return;
            };
            let me = Peer {
                id: self.id,
                addr: self.me,
            };
            match l.op {
                FindOp::Locate => self.lookup_finish(now, l, me, Outcome::Node),
                FindOp::Resolve { ref user } => {
                    let outcome = self.resolve_local(user);
                    self.lookup_finish(now, l, me, outcome);
                }
                FindOp::Register { ref record } => {
                    let reply_to = match l.purpose {
                        LookupFor::Client { client } => Some(Reply::Client {
                            to: client,
                            record: record.clone(),
                        }),
                        LookupFor::Finger { .. } | LookupFor::PredClaim => None,
                    };
                    let record = record.clone();
                    self.hops.record(l.hops);
                    self.register_local(now, record, reply_to);
                }
            }
            return;
        }
        let exclude = l.failed.clone();
        match self.closest_preceding(key, &exclude) {
            Some(next) => self.lookup_send(now, lid, next.addr),
            None => {
                self.lookups.remove(&lid);
                self.counters.inc("lookup_no_route");
            }
        }
    }

    fn lookup_send(&mut self, now: Now, lid: u64, to: SocketAddrV4) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        if l.hops >= self.cfg.max_hops || now >= l.deadline {
            self.lookups.remove(&lid);
            self.counters.inc("lookup_too_long");
            return;
        }
        l.hops += 1;
        let frame = RingFrame::Find {
            rid: 0,
            cookie: 0,
            key: l.key,
            op: l.op.clone(),
        };
        let rid = self.rng.next_u64();
        let frame = match frame {
            RingFrame::Find { key, op, .. } => RingFrame::Find {
                rid,
                cookie: 0,
                key,
                op,
            },
            f => f,
        };
        self.request(now, to, frame, Purpose::Lookup { lid });
    }

    /// A hop failed (no answer, or a bad referral): try another route.
    fn lookup_fail_hop(&mut self, now: Now, lid: u64, failed: SocketAddrV4) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        l.failed.insert(failed);
        if l.failed.len() > 16 {
            self.lookups.remove(&lid);
            self.counters.inc("lookup_failed");
            return;
        }
        self.lookup_step(now, lid);
    }

    fn lookup_done(&mut self, now: Now, lid: u64, owner: Peer, outcome: Outcome) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        self.lookup_finish(now, l, owner, outcome);
    }

    fn lookup_finish(&mut self, _now: Now, l: Lookup, owner: Peer, outcome: Outcome) {
        match l.purpose {
            LookupFor::PredClaim => {
                let claims = std::mem::take(&mut self.pred_claims);
                let confirmed = matches!(outcome, Outcome::Node)
                    && claims.get(&owner.addr) == Some(&owner.id)
                    && self
                        .pred
                        .is_none_or(|p| strictly_between(p.id, owner.id, self.id));
                let refused = claims.len() - usize::from(confirmed);
                if refused > 0 {
                    self.counters.add("pred_claim_refused", refused as u64);
                }
                if confirmed {
                    self.set_pred(Some(owner));
                }
            }
            LookupFor::Finger { index } => {
                if index < FINGERS && owner.addr != self.me && matches!(outcome, Outcome::Node) {
                    self.fingers[index] = Some(owner);
                }
            }
            LookupFor::Client { client } => {
                self.hops.record(l.hops);
                self.counters.inc("lookups_done");
                self.counters.add("lookup_hops", u64::from(l.hops));
                let reply = match (&l.op, outcome) {
                    (_, Outcome::Error(e)) => Frame::Error(error_reply(e)),
                    (FindOp::Resolve { .. }, Outcome::Record(r)) => {
                        if r.is_signed() && !self.verifier.verify(&r) {
                            self.counters.inc("bad_record_from_owner");
                            return;
                        }
                        resolved(&r)
                    }
                    (FindOp::Register { record }, Outcome::Registered) => registered(record),
                    _ => {
                        self.counters.inc("lookup_odd_outcome");
                        return;
                    }
                };
                self.send(client, reply);
            }
        }
    }

    fn resolve_local(&self, user: &str) -> Outcome {
        match self.records.get(user) {
            Some(e) => Outcome::Record(e.record.clone()),
            None => Outcome::Error(FindError::NotFound),
        }
    }

    /// A FIND from a peer.
    fn on_find(&mut self, now: Now, from: SocketAddrV4, rid: u64, key: u64, op: FindOp) {
        match self.phase {
            Phase::Member => {}
            Phase::Joining { .. } => {
                self.send_ring(from, RingFrame::Busy { rid });
                return;
            }
            _ => return,
        }
        if self.owns(key) {
            if self.in_takeover(key) {
                if let Some(t) = &mut self.takeover {
                    if t.queued.len() < self.cfg.max_pending {
                        t.queued.push((
                            from,
                            RingFrame::Find {
                                rid,
                                cookie: 0,
                                key,
                                op,
                            },
                        ));
                    } else {
                        self.send_ring(from, RingFrame::Busy { rid });
                    }
                }
                return;
            }
            let outcome = match op {
                FindOp::Locate => Outcome::Node,
                FindOp::Resolve { user } => self.resolve_local(&user),
                FindOp::Register { record } => {
                    self.register_local(now, record, Some(Reply::Peer { to: from, rid }));
                    return;
                }
            };
            self.send_ring(
                from,
                RingFrame::Found {
                    rid,
                    id: self.id,
                    outcome,
                },
            );
            return;
        }
        match self.closest_preceding(key, &BTreeSet::new()) {
            Some(p) => self.send_ring(from, RingFrame::Refer { rid, peer: p }),
            None => self.counters.inc("find_no_route"),
        }
    }

    /// The owner stores a registration, replicates it, then answers.
    fn register_local(&mut self, now: Now, record: Record, reply: Option<Reply>) {
        let old = self.records.get(&record.user).map(|e| &e.record);
        let res = verify::check(old, &record, self.verifier.as_ref());
        match res {
            Err(e) => {
                self.counters.inc("register_refused");
                self.answer_register(reply, Err(e));
            }
            Ok(apply) => {
                if apply == Apply::Store {
                    self.counters.inc("register_stored");
                    self.put(now, record.clone(), None);
                }
                // Replicate (also on an idempotent repeat: cheap and heals a lost replica).
                let targets: Vec<SocketAddrV4> = self
                    .succs
                    .iter()
                    .take(self.cfg.r.saturating_sub(1))
                    .map(|p| p.addr)
                    .collect();
                let stored = self
                    .records
                    .get(&record.user)
                    .map(|e| e.record.clone())
                    .unwrap_or(record);
                if targets.is_empty() || self.commits.len() >= self.cfg.max_pending {
                    self.answer_register(reply, Ok(()));
                    return;
                }
                let cid = self.rng.next_u64();
                self.commits.insert(
                    cid,
                    Commit {
                        waiting: targets.len() as u32,
                        reply: reply.unwrap_or(Reply::Peer {
                            to: self.me,
                            rid: 0,
                        }),
                    },
                );
                for a in targets {
                    let rid = self.rng.next_u64();
                    self.request(
                        now,
                        a,
                        RingFrame::Replicate {
                            rid,
                            cookie: 0,
                            records: vec![stored.clone()],
                        },
                        Purpose::Replicate { commit: Some(cid) },
                    );
                }
            }
        }
    }

    fn commit_progress(&mut self, commit: Option<u64>) {
        let Some(cid) = commit else {
            return;
        };
        let done = match self.commits.get_mut(&cid) {
            Some(c) => {
                c.waiting = c.waiting.saturating_sub(1);
                c.waiting == 0
            }
            None => false,
        };
        if done {
            if let Some(c) = self.commits.remove(&cid) {
                self.answer_register(Some(c.reply), Ok(()));
            }
        }
    }

    fn answer_register(&mut self, reply: Option<Reply>, res: Result<(), FindError>) {
        match reply {
            None => {}
            Some(Reply::Peer { to, rid }) => {
                if to == self.me {
                    return;
                }
                let outcome = match res {
                    Ok(()) => Outcome::Registered,
                    Err(e) => Outcome::Error(e),
                };
                self.send_ring(
                    to,
                    RingFrame::Found {
                        rid,
                        id: self.id,
                        outcome,
                    },
                );
            }
            Some(Reply::Client { to, record }) => {
                self.counters.inc("lookups_done");
                let f = match res {
                    Ok(()) => registered(&record),
                    Err(e) => Frame::Error(error_reply(e)),
                };
                self.send(to, f);
            }
        }
    }

    fn fix_one_finger(&mut self, now: Now) {
        let Some(s) = self.succs.first().copied() else {
            self.fingers.iter_mut().for_each(|f| *f = None);
            return;
        };
        // Fingers inside our own range are ourselves: skip to the first useful index.
        let span = dist(self.id, s.id).max(1);
        let min_i = (63 - span.leading_zeros()) as usize;
        if self.next_finger < min_i || self.next_finger >= FINGERS {
            self.next_finger = min_i;
        }
        let i = self.next_finger;
        self.next_finger += 1;
        for f in self.fingers.iter_mut().take(min_i) {
            *f = None;
        }
        let target = ((u128::from(self.id) + (1u128 << i)) % u128::from(MODULUS)) as u64;
        if self
            .lookups
            .values()
            .any(|l| l.purpose == LookupFor::Finger { index: i })
        {
            return;
        }
        self.start_lookup(now, LookupFor::Finger { index: i }, target, FindOp::Locate);
    }

    /// The known node closest before or at `key` (never past it), excluding `exclude`.
    fn closest_preceding(&self, key: u64, exclude: &BTreeSet<SocketAddrV4>) -> Option<Peer> {
        let limit = dist(self.id, key);
        let fingers = if self.cfg.fingers {
            &self.fingers[..]
        } else {
            &[][..]
        };
        self.succs
            .iter()
            .chain(fingers.iter().flatten())
            .filter(|p| p.addr != self.me && !exclude.contains(&p.addr))
            .filter(|p| {
                let d = dist(self.id, p.id);
                d <= limit && d > 0
            })
            .max_by_key(|p| dist(self.id, p.id))
            .copied()
            .or_else(|| {
                // Everything known lies past the key (stale view): ask the first successor.
                self.succs
                    .iter()
                    .find(|p| !exclude.contains(&p.addr))
                    .copied()
            })
    }
}

// ======================================================================================
// Records, transfers, replica sync
// ======================================================================================

impl Node {
    /// Applies a record that came from a peer (replication, transfer): same rules as a
    /// client's registration, so nothing unauthenticated overwrites anything.
    fn apply_record(&mut self, now: Now, r: Record, from: Option<SocketAddrV4>) -> bool {
        let old = self.records.get(&r.user).map(|e| &e.record);
        match verify::check(old, &r, self.verifier.as_ref()) {
            Ok(Apply::Store) => {
                self.put(now, r, from);
                true
            }
            Ok(Apply::Same) => {
                if let Some(e) = self.records.get_mut(&r.user) {
                    e.touched = now;
                }
                false
            }
            Err(_) => {
                self.counters.inc("record_refused");
                false
            }
        }
    }

    fn put(&mut self, now: Now, r: Record, owner_hint: Option<SocketAddrV4>) {
        let hash = ring_hash(&r.user);
        let table = self.table_for(hash, owner_hint);
        self.store(StoreOp::Put {
            record: r.clone(),
            table: table.clone(),
        });
        self.records.insert(
            r.user.clone(),
            Entry {
                hash,
                fp: fingerprint(&r),
                record: r,
                table,
                touched: now,
            },
        );
    }

    fn table_for(&self, hash: u64, owner_hint: Option<SocketAddrV4>) -> Table {
        if (self.is_member() || matches!(self.phase, Phase::Leaving)) && self.owns(hash) {
            return Table::Owned;
        }
        let owner = owner_hint
            .or_else(|| self.pred.map(|p| p.addr))
            .map(|a| a.to_string())
            .unwrap_or_default();
        Table::Replica { owner }
    }

    /// Recomputes which table each record belongs to after a range change.
    fn reclassify(&mut self, _now: Now, new_owner: Option<SocketAddrV4>) {
        let (lo, hi) = self.range();
        let member = self.is_member();
        let mut ops = Vec::new();
        for e in self.records.values_mut() {
            let owned = member && in_inclusive(e.hash, lo, hi);
            let want = if owned {
                Table::Owned
            } else {
                match (&e.table, new_owner) {
                    (Table::Replica { .. }, _) => e.table.clone(),
                    (Table::Owned, Some(a)) => Table::Replica {
                        owner: a.to_string(),
                    },
                    (Table::Owned, None) => Table::Replica {
                        owner: String::new(),
                    },
                }
            };
            if want != e.table {
                e.table = want.clone();
                ops.push(StoreOp::Put {
                    record: e.record.clone(),
                    table: want,
                });
            }
        }
        for op in ops {
            self.store(op);
        }
    }

    /// Count and order-independent digest of the records hashing into `[lo, hi]`.
    fn digest(&self, lo: u64, hi: u64) -> (u64, u64) {
        let mut n = 0u64;
        let mut d = 0u64;
        for e in self.records.values() {
            if in_inclusive(e.hash, lo, hi) {
                n += 1;
                d = d.wrapping_add(e.fp);
            }
        }
        (n, d)
    }

    fn sync_replicas(&mut self, now: Now) {
        if !self.is_member() || self.takeover.is_some() {
            return;
        }
        let targets: Vec<SocketAddrV4> = self
            .succs
            .iter()
            .take(self.cfg.r.saturating_sub(1))
            .map(|p| p.addr)
            .collect();
        for a in targets {
            self.sync_one(now, a);
        }
    }

    fn sync_one(&mut self, now: Now, to: SocketAddrV4) {
        if self.has_pending_purpose(to, &Purpose::Sync) {
            return;
        }
        let (lo, hi) = self.range();
        let (count, digest) = self.digest(lo, hi);
        let rid = self.rng.next_u64();
        self.request(
            now,
            to,
            RingFrame::Sync {
                rid,
                cookie: 0,
                lo,
                hi,
                count,
                digest,
            },
            Purpose::Sync,
        );
    }

    /// Sends `chunks` as `RECORDS rid seq total` with per-chunk acknowledgement.
    fn send_chunks(
        &mut self,
        now: Now,
        to: SocketAddrV4,
        rid: u64,
        chunks: Vec<Vec<Record>>,
    ) -> u64 {
        let xfer = self.rng.next_u64();
        let total = chunks.len().max(1) as u32;
        let chunks = if chunks.is_empty() {
            vec![Vec::new()]
        } else {
            chunks
        };
        self.outgoing.insert(xfer, (to, total));
        for (seq, records) in chunks.into_iter().enumerate() {
            let frame = RingFrame::Records {
                rid,
                seq: seq as u32,
                total,
                records,
            };
            self.send_ring(to, frame.clone());
            // Chunk k is acknowledged by `ACK rid k+1` (`ACK rid 0` is for the request).
            let key = (to, rid, seq as u32 + 1);
            let p = Pending {
                frame,
                purpose: Purpose::Chunk { xfer },
                tries: 1,
                deadline: now + self.cfg.rto * 2,
            };
            if let Some(old) = self.pending.remove(&key) {
                self.deadlines.remove(&(old.deadline, key));
                // A repeated request restarts its transfer: the old one is superseded.
                if let Purpose::Chunk { xfer: ox } = old.purpose {
                    if ox != xfer {
                        self.chunk_done(now, ox);
                    }
                }
            }
            self.deadlines.insert((p.deadline, key));
            self.pending.insert(key, p);
        }
        xfer
    }

    fn chunk_done(&mut self, now: Now, xfer: u64) {
        let finished = match self.outgoing.get_mut(&xfer) {
            Some((_, left)) => {
                *left = left.saturating_sub(1);
                *left == 0
            }
            None => false,
        };
        if finished {
            self.outgoing.remove(&xfer);
            if self.leave_xfer == Some(xfer) {
                self.finish_leave(now);
            }
        }
    }

    fn finish_leave(&mut self, _now: Now) {
        self.leave_xfer = None;
        self.phase = Phase::Left;
        self.pending.clear();
        self.deadlines.clear();
        self.timers.clear();
        self.event(Event::Left);
    }

    fn on_records(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        seq: u32,
        total: u32,
        records: Vec<Record>,
    ) {
        let key = (from, rid);
        let Some(inc) = self.incoming.get_mut(&key) else {
            self.counters.inc("drop_unmatched");
            return;
        };
        if total == 0
            || seq >= total
            || inc.total.is_some_and(|t| t != total) && inc.purpose != Inbound::Leave
        {
            self.counters.inc("drop_bad_chunk");
            return;
        }
        inc.total = Some(total);
        let purpose = inc.purpose.clone();
        let fresh = !inc.chunks.contains_key(&seq);
        // A FETCH is answered by its first chunk (a JOIN only by its WELCOME).
        if purpose == Inbound::Fetch {
            self.take_pending((from, rid, 0));
        }
        self.send_ring(
            from,
            RingFrame::Ack {
                rid,
                seq: seq.saturating_add(1),
            },
        );
        if !fresh {
            return;
        }
        match purpose {
            Inbound::Welcome => {
                if let Some(inc) = self.incoming.get_mut(&key) {
                    inc.chunks.insert(seq, records);
                }
            }
            _ => {
                let n = records.len();
                for r in records {
                    self.apply_record(now, r, Some(from));
                }
                if let Some(t) = &mut self.takeover {
                    if purpose == Inbound::Fetch || purpose == Inbound::Leave {
                        t.received += n;
                    }
                }
                if let Some(inc) = self.incoming.get_mut(&key) {
                    inc.chunks.insert(seq, Vec::new());
                }
            }
        }
        self.try_complete_incoming(now, key);
    }

    fn try_complete_incoming(&mut self, now: Now, key: (SocketAddrV4, u64)) {
        let complete = match self.incoming.get(&key) {
            Some(inc) => inc.total.is_some_and(|t| inc.chunks.len() as u32 >= t),
            None => false,
        };
        let Some(purpose) = self.incoming.get(&key).map(|i| i.purpose.clone()) else {
            return;
        };
        match purpose {
            Inbound::Welcome => {
                if complete && self.welcome.is_some() {
                    let inc = self.incoming.remove(&key);
                    self.complete_join(now, inc.map(|i| i.chunks).unwrap_or_default());
                }
            }
            Inbound::Fetch => {
                if complete {
                    self.incoming.remove(&key);
                    self.fetch_finished(now, key);
                }
            }
            Inbound::SyncPush { lo, hi } => {
                if complete {
                    self.incoming.remove(&key);
                    self.counters.inc("sync_pulled");
                    let _ = (lo, hi);
                }
            }
            Inbound::Leave => {
                if complete {
                    self.incoming.remove(&key);
                    self.counters.inc("leave_received");
                }
            }
        }
    }

    fn complete_join(&mut self, now: Now, chunks: BTreeMap<u32, Vec<Record>>) {
        let Some(w) = self.welcome.take() else {
            return;
        };
        self.id = w.id;
        self.pred = Some(w.pred);
        self.succs = self.merge_list_raw(&w.succs);
        for p in self.succs.clone() {
            self.note_id(p);
        }
        self.phase = Phase::Member;
        for (_, recs) in chunks {
            for r in recs {
                self.apply_record(now, r, Some(w.pred.addr));
            }
        }
        self.phase = Phase::Joining {
            target: w.pred.addr,
            rid: 0,
        };
        self.become_member(now);
        self.event(Event::PredecessorChanged { pred: self.pred });
        self.event(Event::SuccessorChanged {
            succ: self.succs.first().copied(),
        });
    }

    fn merge_list_raw(&self, list: &[Peer]) -> Vec<Peer> {
        match list.first() {
            Some(h) => self.merge_list(*h, &list[1..]),
            None => Vec::new(),
        }
    }
}

// ======================================================================================
// Requests: retransmission, failure detection
// ======================================================================================

impl Node {
    /// Sends a request and remembers it until answered or given up.
    fn request(&mut self, now: Now, to: SocketAddrV4, mut frame: RingFrame, purpose: Purpose) {
        if self.pending.len() >= self.cfg.max_pending {
            self.counters.inc("pending_overload");
            return;
        }
        frame.set_cookie(self.cookies.get(&to).copied().unwrap_or(0));
        let key = (to, frame.rid(), 0);
        self.send_ring(to, frame.clone());
        let p = Pending {
            frame,
            purpose,
            tries: 1,
            deadline: now + self.cfg.rto,
        };
        if let Some(old) = self.pending.remove(&key) {
            self.deadlines.remove(&(old.deadline, key));
        }
        self.deadlines.insert((p.deadline, key));
        self.pending.insert(key, p);
    }

    fn take_pending(&mut self, key: PKey) -> Option<Pending> {
        let p = self.pending.remove(&key)?;
        self.deadlines.remove(&(p.deadline, key));
        Some(p)
    }

    fn has_pending_purpose(&self, to: SocketAddrV4, purpose: &Purpose) -> bool {
        self.pending
            .range((to, 0, 0)..=(to, u64::MAX, u32::MAX))
            .any(|(_, p)| &p.purpose == purpose)
    }

    fn has_pending_to(&self, to: SocketAddrV4) -> bool {
        self.pending
            .range((to, 0, 0)..=(to, u64::MAX, u32::MAX))
            .any(|(_, p)| matches!(p.purpose, Purpose::PredCheck { .. } | Purpose::PingPred))
    }

    fn on_request_timeout(&mut self, now: Now, key: PKey) {
        let Some(mut p) = self.pending.remove(&key) else {
            return;
        };
        let to = key.0;
        if to == self.me {
            // A deferred lookup step.
            if let Purpose::Lookup { lid } = p.purpose {
                self.lookup_step(now, lid);
            }
            return;
        }
        let max_tries = match p.purpose {
            Purpose::Chunk { .. } | Purpose::Leave => self.cfg.dead_after * 3,
            Purpose::Lookup { .. } => 2,
            _ => self.cfg.dead_after,
        };
        if p.tries < max_tries && self.phase != Phase::Left {
            p.tries += 1;
            // Exponential-ish backoff for bulk transfers only.
            let rto = match p.purpose {
                Purpose::Chunk { .. } => self.cfg.rto * 2,
                _ => self.cfg.rto,
            };
            p.deadline = now + rto;
            self.send_ring(to, p.frame.clone());
            self.deadlines.insert((p.deadline, key));
            self.pending.insert(key, p);
            return;
        }
        // Given up.
        match p.purpose {
            Purpose::Stabilize => self.peer_dead(now, to),
            Purpose::PingPred => {
                if self.pred.map(|p| p.addr) == Some(to) {
                    self.counters.inc("pred_dead");
                    self.set_pred(None);
                    self.event(Event::PeerDead { addr: to });
                }
            }
            Purpose::PredCheck { candidate } => {
                // The old predecessor is dead: the candidate still has to be confirmed.
                if self.pred.map(|p| p.addr) == Some(to) {
                    self.counters.inc("pred_dead");
                    self.set_pred(None);
                    self.confirm_by_lookup(now, candidate);
                }
            }
            Purpose::PredConfirm => {
                // The predecessor died before confirming: ask the ring instead.
                if self.pred.map(|p| p.addr) == Some(to) {
                    self.counters.inc("pred_dead");
                    self.set_pred(None);
                    if !self.pred_claims.is_empty() {
                        self.start_pred_lookup(now);
                    }
                }
            }
            Purpose::Adopt | Purpose::Rectify | Purpose::Fix | Purpose::Sync => {}
            Purpose::Join => self.join_failed(now),
            Purpose::Lookup { lid } => self.lookup_fail_hop(now, lid, to),
            Purpose::Replicate { commit } => self.commit_progress(commit),
            Purpose::Fetch => {
                self.incoming.remove(&(to, key.1));
                self.fetch_finished(now, (to, key.1));
            }
            Purpose::Chunk { xfer } => {
                self.counters.inc("chunk_lost");
                self.chunk_done(now, xfer);
            }
            Purpose::Leave => {
                if self.leave_xfer.is_some()
                    && self
                        .pending
                        .values()
                        .all(|q| !matches!(q.purpose, Purpose::Chunk { .. }))
                {
                    self.finish_leave(now);
                }
            }
        }
    }
}

// ======================================================================================
// Helpers
// ======================================================================================

impl Node {
    /// Whether `key` is in our range (members only).
    fn owns(&self, key: u64) -> bool {
        let (lo, hi) = self.range();
        in_inclusive(key, lo, hi)
    }

    fn in_takeover(&self, key: u64) -> bool {
        self.takeover
            .as_ref()
            .is_some_and(|t| in_half_open(key, t.lo, t.end) && t.lo != t.end)
    }

    /// Successor list, predecessor or finger.
    fn is_neighbour(&self, a: SocketAddrV4) -> bool {
        self.succs.iter().any(|p| p.addr == a)
            || self.pred.is_some_and(|p| p.addr == a)
            || self.fingers.iter().flatten().any(|p| p.addr == a)
    }

    fn known_id(&self, a: SocketAddrV4) -> Option<u64> {
        self.succs
            .iter()
            .chain(self.pred.iter())
            .chain(self.fingers.iter().flatten())
            .find(|p| p.addr == a)
            .map(|p| p.id)
    }

    /// Refreshes the id we know for a peer (ids are fixed, but a restarted node at the same
    /// address gets a new one).
    fn note_id(&mut self, p: Peer) {
        for f in self.fingers.iter_mut().flatten() {
            if f.addr == p.addr {
                f.id = p.id;
            }
        }
    }

    /// The address-validation cookie we expect from `a`: a keyed hash only we can compute.
    fn cookie_for(&self, a: SocketAddrV4) -> u64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(a.ip().octets());
        h.update(a.port().to_be_bytes());
        let out = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&out[..8]);
        u64::from_le_bytes(b) | 1
    }

    fn send(&mut self, to: SocketAddrV4, frame: Frame<'static>) {
        self.actions.push_back(Action::Send { to, frame });
    }

    fn send_ring(&mut self, to: SocketAddrV4, frame: RingFrame) {
        self.counters.inc("ring_out");
        self.actions.push_back(Action::Send {
            to,
            frame: Frame::Ring(frame),
        });
    }

    fn store(&mut self, op: StoreOp) {
        self.actions.push_back(Action::Store(op));
    }

    fn event(&mut self, e: Event) {
        self.actions.push_back(Action::Event(e));
    }

    fn status_json(&self) -> String {
        use serde_json::Value;
        let (lo, hi) = self.range();
        // BTreeMaps: keys come out sorted whatever serde_json's features are.
        let mut m: BTreeMap<&str, Value> = BTreeMap::new();
        m.insert("node", self.me.to_string().into());
        m.insert("name", self.cfg.name.clone().into());
        m.insert("member", self.is_member().into());
        m.insert("id", self.id.to_string().into());
        m.insert("lo", lo.to_string().into());
        m.insert("hi", hi.to_string().into());
        m.insert(
            "pred",
            self.pred
                .map(|p| p.addr.to_string())
                .unwrap_or_default()
                .into(),
        );
        m.insert(
            "succs",
            self.succs
                .iter()
                .map(|p| Value::from(p.addr.to_string()))
                .collect::<Vec<_>>()
                .into(),
        );
        m.insert("records", self.records.len().into());
        m.insert(
            "owned",
            self.records
                .values()
                .filter(|e| e.table == Table::Owned)
                .count()
                .into(),
        );
        let counters: BTreeMap<&str, u64> = self.counters.iter().collect();
        m.insert(
            "counters",
            serde_json::to_value(counters).unwrap_or(Value::Null),
        );
        serde_json::to_string(&m).unwrap_or_default()
    }

    fn snapshot_json(&self) -> String {
        use serde_json::Value;
        let mut users: BTreeMap<&str, BTreeMap<&str, Value>> = BTreeMap::new();
        let mut size = 0usize;
        for e in self.records.values() {
            size += e.record.user.len() + 64;
            if size > 48_000 {
                break;
            }
            let r = &e.record;
            let mut o = BTreeMap::new();
            o.insert("ip", Value::from(r.ip.to_string()));
            o.insert("port", r.port.into());
            o.insert("version", r.version.into());
            o.insert("owned", (e.table == Table::Owned).into());
            users.insert(&r.user, o);
        }
        let mut m: BTreeMap<&str, Value> = BTreeMap::new();
        m.insert("node", self.me.to_string().into());
        m.insert("records", self.records.len().into());
        m.insert("users", serde_json::to_value(users).unwrap_or(Value::Null));
        serde_json::to_string(&m).unwrap_or_default()
    }

    fn checksum_json(&self) -> String {
        let (lo, hi) = self.range();
        let (n, d) = self.digest(lo, hi);
        let mut m: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
        m.insert("checksum", format!("{d:016x}").into());
        m.insert("records", n.into());
        serde_json::to_string(&m).unwrap_or_default()
    }
}

/// A record's contribution to the order-independent digest of a range.
fn fingerprint(r: &Record) -> u64 {
    let text = format!("{}|{}|{}|{}|{}", r.user, r.ip, r.port, r.version, r.sig_b64);
    fnv64(text.as_bytes())
}

/// Splits records into chunks that fit one datagram.
fn chunk_records(recs: Vec<Record>) -> Vec<Vec<Record>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0usize;
    for r in recs {
        let n = ring::record_encoded_len(&r);
        if size + n > ring::CHUNK_BUDGET && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn into_static(f: Frame<'_>) -> Frame<'static> {
    match f {
        Frame::Resolve { user } => Frame::Resolve {
            user: Cow::Owned(user.into_owned()),
        },
        Frame::RegisterLegacy { user, ip, port } => Frame::RegisterLegacy {
            user: Cow::Owned(user.into_owned()),
            ip,
            port,
        },
        Frame::Register(r) => Frame::Register(flock_proto::Register {
            user: Cow::Owned(r.user.into_owned()),
            ip: r.ip,
            port: r.port,
            version: r.version,
            pubkey_b64: Cow::Owned(r.pubkey_b64.into_owned()),
            sig_b64: Cow::Owned(r.sig_b64.into_owned()),
        }),
        _ => Frame::Ping,
    }
}

fn error_reply(e: FindError) -> ErrorReply<'static> {
    match e {
        FindError::NotFound => ErrorReply::NotFound,
        FindError::InvalidPayload => ErrorReply::InvalidPayload,
        FindError::DifferentKey => ErrorReply::DifferentKey,
        FindError::InvalidSignature => ErrorReply::InvalidSignature,
        FindError::StaleVersion => ErrorReply::StaleVersion,
    }
}

fn resolved(r: &Record) -> Frame<'static> {
    Frame::Ok(OkReply::Resolved {
        ip: r.ip,
        port: r.port,
        pubkey_b64: Cow::Owned(if r.pubkey_b64.is_empty() {
            "-".to_owned()
        } else {
            r.pubkey_b64.clone()
        }),
        version: r.version,
    })
}

fn registered(r: &Record) -> Frame<'static> {
    Frame::Ok(OkReply::Registered {
        user: Cow::Owned(r.user.clone()),
        ip: r.ip,
        port: r.port,
    })
}
