//! The ring node: one pure state machine (see the crate docs for the run loop).
//!
//! [`Node`] is one type whose `impl` blocks live by concern, in the manner of
//! quinn-proto's `connection/`:
//!
//! | module | concern |
//! | --- | --- |
//! | `requests` | pending requests, retransmission, failure detection, cookies |
//! | `routing` | lookups, client requests, `FIND` / `REFER` / `FOUND`, fingers |
//! | `membership` | probing (found or join), discovery, `JOIN` / `WELCOME`, leaving |
//! | `maintenance` | Zave's stabilize and rectify, predecessor checks, dead peers |
//! | `records` | registrations, replica writes, anti-entropy (`SYNC`), leases |
//! | `authority` | which sender may give us which record; takeover conflicts |
//! | `confirm` | answers confirmed by a majority of the record's holders (open ring) |
//! | `transfer` | chunked transfers, takeover of a grown range, handover |
//! | this file | the state, the public API, timers, and the frame dispatch |

mod authority;
mod confirm;
mod maintenance;
mod membership;
mod reads;
mod records;
mod requests;
mod routing;
#[cfg(test)]
mod testing;
mod transfer;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{Peer, RingFrame};
use flock_proto::space::owned_range;
use flock_proto::{Frame, Record};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::api::{Action, Config, Counters, Event, HopStats, Now};
use crate::status::{NodePhase, Status};
use crate::verify::{self, RecordVerifier};
use crate::{StoreOp, Table};
use maintenance::Pace;
use membership::{Probe, Serving, Welcome};
use reads::ReplicaRead;
use records::{Commit, Entry, Lease};
use requests::{Pending, RequestKey};
use routing::{FINGERS, Lookup};
use transfer::{IncomingTransfer, Takeover};

/// Delay before retrying a FIND that got `BUSY`.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// Most cookies remembered (cleared when full).
const MAX_COOKIES: usize = 8192;

/// Where the node is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Deciding whether to found a ring or join one (see `membership`).
    Probing(Probe),
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
    pending: BTreeMap<RequestKey, Pending>,
    deadlines: BTreeSet<(Now, RequestKey)>,
    timers: BTreeMap<Timer, Now>,
    lookups: BTreeMap<u64, Lookup>,
    /// Reads answered from the replicas of a successor that stopped answering.
    reads: BTreeMap<u64, ReplicaRead>,
    commits: BTreeMap<u64, Commit>,
    incoming: BTreeMap<(SocketAddrV4, u64), IncomingTransfer>,
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
    /// How fast upkeep runs now (fast while something changes, slower when quiet).
    pace: Pace,
    /// Set while serving a JOIN: the joiner gets the records in its WELCOME.
    no_handover: bool,
    /// Nodes that sent `RECTIFY` and are not confirmed yet (addr -> claimed id). A claim
    /// is adopted only once the predecessor lists it, or, with no live predecessor, a ring
    /// lookup of `id - 1` ends at it: an unknown host cannot make itself our predecessor.
    pred_claims: BTreeMap<SocketAddrV4, u64>,
    /// Who may push which records (see `authority`).
    authority: authority::Authority,
    /// Client answers waiting for their holders (see `confirm`).
    confirm: confirm::Confirms,
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

impl Node {
    /// A node at `me` (its identity, `ip:port`), starting at `now`, with all randomness
    /// drawn from `seed`. With an empty [`Config::bootstrap`] it founds a ring and owns the
    /// whole hash space; otherwise it discovers the ring and joins it, or, with
    /// [`Config::may_found`], probes for [`Config::probe_window`] and founds a ring if no
    /// member answers.
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
            reads: BTreeMap::new(),
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
            pace: Pace::default(),
            no_handover: false,
            pred_claims: BTreeMap::new(),
            authority: authority::Authority::default(),
            confirm: confirm::Confirms::default(),
        };
        for r in records {
            if verify::check(None, &r, node.verifier.as_ref()).is_ok() {
                let user = r.user.clone();
                node.records.insert(user, Entry::new(r, Table::Owned, now));
            }
        }
        if node.cfg.bootstrap.is_empty() {
            node.become_founder(now);
        } else if node.cfg.may_found {
            node.start_probing(now);
        } else {
            node.start_discovery(now);
        }
        node
    }

    /// Feeds one parsed datagram that arrived from `from`.
    ///
    /// `STATUS`, `SNAPSHOT` and `CHECKSUM` are the driver's: it answers them from
    /// [`Node::status`] and [`Node::records`] (the node counts them as unexpected).
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
                    self.send(from, Frame::range_reply(lo, hi));
                }
            }
            Frame::Register(_)
            | Frame::RegisterLegacy { .. }
            | Frame::Resolve { .. }
            | Frame::Lookup { .. } => self.on_client(now, from, frame.into_owned()),
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
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Node::handle_timeout`] wants to run next (`None`: nothing scheduled).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Now> {
        let a = self.deadlines.first().map(|(t, _)| *t);
        let b = self.timers.values().min().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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

    /// A typed snapshot of the node's state (what `STATUS` and `CHECKSUM` report).
    pub fn status(&self) -> Status {
        let (lo, hi) = self.range();
        let (digest_records, digest) = self.digest(lo, hi);
        Status {
            name: self.cfg.name.clone(),
            addr: self.me,
            phase: match self.phase {
                Phase::Probing(_) => NodePhase::Probing,
                Phase::Discovering { .. } => NodePhase::Discovering,
                Phase::Joining { .. } => NodePhase::Joining,
                Phase::Member => NodePhase::Member,
                Phase::Leaving => NodePhase::Leaving,
                Phase::Left => NodePhase::Left,
            },
            id: self.id,
            range: (lo, hi),
            predecessor: self.pred,
            successors: self.succs.clone(),
            fingers: self.fingers(),
            records: self.records.len(),
            owned: self
                .records
                .values()
                .filter(|e| e.table == Table::Owned)
                .count(),
            digest_records,
            digest,
            settled: self.is_settled(),
            counters: self.counters.clone(),
            hops: self.hops.clone(),
        }
    }
}

// ======================================================================================
// Timers and dispatch
// ======================================================================================

impl Node {
    fn on_timer(&mut self, now: Now, t: Timer) {
        match t {
            Timer::Discover => match self.phase {
                Phase::Probing(_) => self.probe_tick(now),
                _ => self.finish_discovery(now),
            },
            Timer::Stabilize => {
                if self.is_member() {
                    self.stabilize(now);
                    self.pace.calm_rounds = self.pace.calm_rounds.saturating_add(1);
                    // Ghosts are probed on the clock, however quiet the rounds: a healed
                    // partition is found as fast on a quiet ring as on a busy one.
                    if self.pace.ghost_at.is_none_or(|t| now >= t) {
                        self.pace.ghost_at = Some(now + self.cfg.stabilize_interval * 4);
                        self.pace.ghost_probes += 1;
                        self.probe_ghost(now);
                    }
                }
                let next = now + self.stabilize_delay();
                self.timers.insert(Timer::Stabilize, next);
            }
            Timer::PingPred => {
                if self.is_member() {
                    self.ping_pred(now);
                }
                let next = self.next_pred_check(now);
                self.timers.insert(Timer::PingPred, next);
            }
            Timer::FixFinger => {
                if self.is_member() && self.cfg.fingers {
                    self.fix_one_finger(now);
                }
                let next = now + self.finger_delay();
                self.timers.insert(Timer::FixFinger, next);
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

    fn housekeeping(&mut self, now: Now) {
        self.drop_stale_transfers(now);
        self.serving.retain(|_, s| s.until > now);
        self.ghosts.retain(|_, t| *t > now);
        self.lookups_expire(now);
        if self.is_member() {
            self.drop_unleased_replicas(now);
        }
        self.authority_housekeeping(now);
        self.confirm_housekeeping(now);
    }

    fn on_ring(&mut self, now: Now, from: SocketAddrV4, rf: RingFrame) {
        self.counters.inc("ring_in");
        if from == self.me {
            self.counters.inc("drop_self");
            return;
        }
        // Requests must carry the cookie we issued to their source address: proof that the
        // sender receives at that address, so spoofed sources cannot move state or reflect.
        match rf.cookie() {
            Some(cookie) if !self.cfg.authenticated && cookie != self.cookie_for(from) => {
                self.counters.inc("cookie_challenge");
                let c = self.cookie_for(from);
                self.send_ring(
                    from,
                    RingFrame::Cookie {
                        rid: rf.rid(),
                        cookie: c,
                    },
                );
            }
            Some(_) => self.on_request(now, from, rf),
            // The one request without a cookie: anyone may ask who is in the ring (the
            // answer is one small datagram, to the asker).
            None if matches!(rf, RingFrame::Discover { .. }) => self.on_request(now, from, rf),
            None => self.on_reply(now, from, rf),
        }
    }

    /// A request (with the right cookie, or a `DISCOVER`).
    fn on_request(&mut self, now: Now, from: SocketAddrV4, rf: RingFrame) {
        // The predecessor's stabilize round (members only send it) shows it alive and a
        // member: no ping needed. (Other requests from its address may come from a
        // restarted node that is not a member yet.)
        if matches!(rf, RingFrame::GetState { .. }) && self.pred.is_some_and(|p| p.addr == from) {
            self.pace.pred_heard = Some(now);
        }
        match rf {
            RingFrame::Discover { rid } => self.on_discover(from, rid),
            RingFrame::Ping { rid, .. } => {
                if self.is_member() {
                    self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
                }
            }
            RingFrame::GetState { rid, .. } => self.on_get_state(from, rid),
            RingFrame::Rectify { rid, id, .. } => self.on_rectify(now, from, rid, id),
            RingFrame::Join { rid, .. } => self.on_join(now, from, rid),
            RingFrame::Find { rid, key, op, .. } => self.on_find(now, from, rid, key, op),
            RingFrame::Replicate { rid, records, .. } => self.on_replicate(now, from, rid, records),
            RingFrame::Sync {
                rid,
                lo,
                hi,
                count,
                digest,
                ..
            } => self.on_sync(now, from, rid, (lo, hi), (count, digest)),
            RingFrame::Fetch { rid, lo, hi, .. } => self.on_fetch(now, from, rid, lo, hi),
            RingFrame::Fix { rid, .. } => self.on_fix(now, from, rid),
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

    /// An answer to one of our requests (matched by `rid` in the module that sent it).
    fn on_reply(&mut self, now: Now, from: SocketAddrV4, rf: RingFrame) {
        match rf {
            RingFrame::Here { rid, lo, hi } => self.on_here(now, from, rid, lo, hi),
            RingFrame::Cookie { rid, cookie } => self.on_cookie(now, from, rid, cookie),
            RingFrame::Ack { rid, seq } => self.on_ack_frame(now, from, rid, seq),
            RingFrame::State {
                rid,
                id,
                pred,
                succs,
            } => self.on_state(now, from, rid, id, pred, succs),
            RingFrame::Welcome {
                rid,
                id,
                pred,
                succs,
                ..
            } => self.on_welcome(now, from, rid, id, pred, succs),
            RingFrame::Refuse { rid } => self.on_refuse(now, from, rid),
            RingFrame::Records {
                rid,
                seq,
                total,
                records,
            } => self.on_records(now, from, rid, seq, total, records),
            RingFrame::Refer { rid, peer } => self.on_refer(now, from, rid, peer),
            RingFrame::Found { rid, id, outcome } => self.on_found(now, from, rid, id, outcome),
            RingFrame::Busy { rid } => self.on_busy(now, from, rid),
            RingFrame::Synced { rid, want } => self.on_synced(now, from, rid, want),
            _ => self.counters.inc("drop_unexpected_ring"),
        }
    }
}

// ======================================================================================
// Output
// ======================================================================================

impl Node {
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
}
