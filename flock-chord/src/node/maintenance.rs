//! Ring maintenance after Zave ("Reasoning about identifier spaces: how to make Chord
//! correct and maintainable"): stabilize from the first successor, adopt a live node
//! between us and it, rectify the predecessor on notification, detect dead neighbours,
//! and probe remembered dead peers so that rings split by a partition merge again.
//!
//! Upkeep is paced ([`Pace`]): rounds run at the configured intervals while anything
//! changes and back off once the ring has been quiet for a few rounds; a change, a
//! failure or a neighbour's `FIX` tightens them again. Liveness rides on traffic that
//! flows anyway: the predecessor's stabilize round is its heartbeat, so it is pinged only
//! when silent; and when a successor stops answering, the ones after it are probed at
//! once, in parallel, so adjacent failures are found in one timeout, not one each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{FindOp, Peer, RingFrame};
use flock_proto::space::{MODULUS, dist, strictly_between};
use rand_core::Rng;

use super::Node;
use super::requests::RequestPurpose;
use super::routing::LookupPurpose;
use crate::api::{Event, Now};

/// How long a dead peer is remembered and probed.
const GHOST_TTL: Duration = Duration::from_secs(600);
/// Most unconfirmed predecessor claims remembered at once.
const MAX_PRED_CLAIMS: usize = 16;
/// Rounds without a change after which the ring counts as quiet.
const CALM_AFTER: u32 = 4;
/// On a quiet ring, stabilize runs `QUIET_STABILIZE / 2` times less often.
const QUIET_STABILIZE: u32 = 3;
/// Most peers remembered in [`Pace::seen`].
const MAX_SEEN: usize = 256;
/// Most a finger refresh backs off (times the configured interval) while fingers hold.
const QUIET_FINGERS: u32 = 16;

/// What a `SYNC` vouched for: the range `(lo, hi)`, its record count and digest.
pub(super) type Vouched = (u64, u64, u64, u64);

/// How fast upkeep runs now. See the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Pace {
    /// Stabilize rounds since the successor list or the predecessor last changed.
    pub(super) calm_rounds: u32,
    /// Finger refreshes in a row that found the finger where it was.
    pub(super) calm_fingers: u32,
    /// When the predecessor last sent us a request (its stabilize round).
    pub(super) pred_heard: Option<Now>,
    /// What the last `SYNC` to each replica holder vouched for (range, count, digest),
    /// and when: an unchanged range is synced again only to renew the lease.
    pub(super) synced: BTreeMap<SocketAddrV4, (Vouched, Now)>,
    /// When the next ghost probe is due, and how many were sent (picks the next ghost).
    pub(super) ghost_at: Option<Now>,
    pub(super) ghost_probes: u64,
    /// Peers that answered us as members (a `STATE`): their liveness checks may retry
    /// fast. Bounded: cleared when full.
    pub(super) seen: BTreeSet<SocketAddrV4>,
    /// When each finger we referred lookups to was last checked for liveness.
    pub(super) fingers_checked: BTreeMap<SocketAddrV4, Now>,
}

impl Pace {
    /// Something looks wrong or changed: back to the configured intervals.
    pub(super) fn tighten(&mut self) {
        self.calm_rounds = 0;
        self.calm_fingers = 0;
    }
}

impl Node {
    /// Delay to the next stabilize round: the configured interval, or
    /// `QUIET_STABILIZE / 2` times it on a quiet ring.
    pub(super) fn stabilize_delay(&self) -> Duration {
        if self.pace.calm_rounds >= CALM_AFTER && self.takeover.is_none() {
            self.cfg.stabilize_interval * QUIET_STABILIZE / 2
        } else {
            self.cfg.stabilize_interval
        }
    }

    /// Delay to the next finger refresh: longer with every refresh that changed nothing,
    /// up to [`QUIET_FINGERS`] times the configured interval.
    pub(super) fn finger_delay(&self) -> Duration {
        self.cfg.fix_fingers_interval * (1 + self.pace.calm_fingers.min(QUIET_FINGERS - 1))
    }

    /// Whether the periodic anti-entropy round should `SYNC` holder `to`: when what we
    /// would vouch for (range, count, digest) changed since the last `SYNC` to it, or
    /// its lease needs renewing (two thirds of the lease went by).
    pub(super) fn sync_due(&mut self, now: Now, to: SocketAddrV4) -> bool {
        let holders = self.replica_holders();
        self.pace.synced.retain(|a, _| holders.contains(a));
        let Some(&((lo, hi, count, digest), at)) = self.pace.synced.get(&to) else {
            return true;
        };
        now.saturating_sub(at) >= self.cfg.lease * 2 / 3
            || self.range() != (lo, hi)
            || self.digest(lo, hi) != (count, digest)
    }

    /// When to look at the predecessor next: after the ping interval, or, while its
    /// rounds arrive, when it would have been silent too long.
    pub(super) fn next_pred_check(&self, now: Now) -> Now {
        let next = now + self.cfg.ping_interval;
        match self.pace.pred_heard {
            Some(t) => next.max(t + self.pred_quiet()),
            None => next,
        }
    }

    /// How long the predecessor may stay silent before we check it: a quiet round and
    /// a retransmission timeout.
    fn pred_quiet(&self) -> Duration {
        self.cfg.stabilize_interval * QUIET_STABILIZE / 2 + self.cfg.rto
    }

    /// Our first successor missed an answer: probe the ones after it now, in parallel,
    /// so that if several adjacent nodes died they are all found in one timeout.
    pub(super) fn suspect_successor(&mut self, now: Now, first: SocketAddrV4) {
        self.pace.tighten();
        let rest: Vec<SocketAddrV4> = self
            .succs
            .iter()
            .map(|p| p.addr)
            .filter(|a| *a != first)
            .collect();
        for a in rest {
            self.request_once(now, a, RequestPurpose::Probe, |rid| RingFrame::Ping {
                rid,
                cookie: 0,
            });
        }
    }

    /// Stabilize from the first successor (or, alone, from a predecessor that appeared).
    pub(super) fn stabilize(&mut self, now: Now) {
        let target = match self.succs.first() {
            Some(s) => Some(s.addr),
            None => self.pred.filter(|p| p.addr != self.me).map(|p| p.addr),
        };
        if let Some(t) = target {
            if self.has_pending_purpose(t, &RequestPurpose::Stabilize) {
                return;
            }
            let rid = self.rng.next_u64();
            let purpose = if self.succs.is_empty() {
                RequestPurpose::Adopt
            } else {
                RequestPurpose::Stabilize
            };
            self.request(now, t, RingFrame::GetState { rid, cookie: 0 }, purpose);
        }
    }

    /// Asks one remembered dead peer for its state; if it is alive again and lies between
    /// us and our successor, [`Self::on_adopt_state`] adopts it.
    pub(super) fn probe_ghost(&mut self, now: Now) {
        let pick = self.pace.ghost_probes;
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
        self.request_once(now, addr, RequestPurpose::Adopt, |rid| {
            RingFrame::GetState { rid, cookie: 0 }
        });
    }

    /// An immediate round (FIX, or a failure just seen), rate limited.
    pub(super) fn immediate_round(&mut self, now: Now) {
        if let Some(t) = self.last_fix {
            if now < t + self.cfg.rto / 2 {
                return;
            }
        }
        self.last_fix = Some(now);
        self.stabilize(now);
    }

    /// `STATE` of our first successor `s`.
    pub(super) fn on_succ_state(
        &mut self,
        now: Now,
        s: Peer,
        pred: Option<Peer>,
        succs: Vec<Peer>,
    ) {
        if self.succs.first().map(|p| p.addr) != Some(s.addr) {
            return; // stale answer
        }
        let list = self.merge_list(s, &succs);
        self.set_succs(now, list);
        match pred {
            Some(p) if p.addr != self.me && strictly_between(self.id, p.id, s.id) => {
                // Adopt only a live node: ask it first.
                self.request_once(now, p.addr, RequestPurpose::Adopt, |rid| {
                    RingFrame::GetState { rid, cookie: 0 }
                });
            }
            // It already knows us as its predecessor: nothing to notify.
            Some(p) if p.addr == self.me && p.id == self.id => {}
            _ => self.send_rectify(now, s.addr),
        }
    }

    /// `STATE` of a candidate successor that lies between us and our successor.
    pub(super) fn on_adopt_state(&mut self, now: Now, p: Peer, succs: Vec<Peer>) {
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

    pub(super) fn send_rectify(&mut self, now: Now, to: SocketAddrV4) {
        let id = self.id;
        self.request_once(now, to, RequestPurpose::Rectify, |rid| RingFrame::Rectify {
            rid,
            cookie: 0,
            id,
        });
    }

    /// `head :: list`, cut at ourselves, without duplicates, at most `r` long.
    pub(super) fn merge_list(&self, head: Peer, rest: &[Peer]) -> Vec<Peer> {
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

    pub(super) fn merge_list_raw(&self, list: &[Peer]) -> Vec<Peer> {
        match list.first() {
            Some(h) => self.merge_list(*h, &list[1..]),
            None => Vec::new(),
        }
    }

    /// Zave's rectify: adopt the notifier if it lies between the predecessor and us;
    /// otherwise replace the predecessor only once it is found dead.
    ///
    /// The notifier's claim is not taken on its word (anyone who answers a cookie can send
    /// `RECTIFY`): between a live predecessor and us it is adopted only once that
    /// predecessor lists it among its successors ([`Self::on_pred_state`]); with no
    /// predecessor, only once a ring lookup of `id - 1` ends at it
    /// ([`Self::confirm_by_lookup`]). A node alone (no successor) adopts at once.
    pub(super) fn rectify(&mut self, now: Now, n: Peer) {
        match self.pred {
            None if self.succs.is_empty() => self.challenge_lone_claim(now, n),
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
                        RingFrame::GetState { rid, cookie: 0 },
                        RequestPurpose::PredCheck { candidate: n },
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
    pub(super) fn note_claim(&mut self, n: Peer) {
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
    pub(super) fn confirm_with_pred(&mut self, now: Now, p: Peer, n: Peer) {
        self.note_claim(n);
        self.request_once(now, p.addr, RequestPurpose::PredConfirm, |rid| {
            RingFrame::GetState { rid, cookie: 0 }
        });
    }

    /// `STATE` of our predecessor, asked by [`Self::confirm_with_pred`]: adopt the closest
    /// claimant it lists between itself and us. If it lists none (after a partition the
    /// two sides' lists know nothing of each other), ask the ring.
    pub(super) fn on_pred_state(&mut self, now: Now, from: SocketAddrV4, succs: &[Peer]) {
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
    pub(super) fn confirm_by_lookup(&mut self, now: Now, n: Peer) {
        self.note_claim(n);
        self.start_pred_lookup(now);
    }

    /// Starts the lookup of [`Self::confirm_by_lookup`] unless one is running.
    ///
    /// With a live predecessor the question is who owns `id - 1`. Without one (it just
    /// died) that key was the dead node's, and every node that has not noticed yet
    /// refers lookups of it to the dead node; so the ring is asked about the closest
    /// claimant's own id instead: the lookup ends at the claimant only if the ring
    /// routes to it, i.e. it is a member at that id (an outsider is still refused).
    /// A member closer to us that this adopts too early rectifies us in its next
    /// round and replaces it (Zave's rule, confirmed with it as usual).
    pub(super) fn start_pred_lookup(&mut self, now: Now) {
        if self
            .lookups
            .values()
            .any(|l| l.purpose == LookupPurpose::PredClaim)
        {
            return;
        }
        let closest_claim = self
            .pred_claims
            .values()
            .copied()
            .filter(|id| *id != self.id)
            .min_by_key(|id| dist(*id, self.id));
        let key = match (self.pred, closest_claim) {
            (None, Some(id)) => id,
            _ => (self.id + MODULUS - 1) % MODULUS,
        };
        self.start_lookup(now, LookupPurpose::PredClaim, key, FindOp::Locate);
    }

    pub(super) fn set_pred(&mut self, p: Option<Peer>) {
        if self.pred != p {
            self.pace.tighten();
            self.pace.pred_heard = None;
            self.pred = p;
            self.event(Event::PredecessorChanged { pred: p });
        }
    }

    /// Installs a new successor list and handles the range change it implies.
    pub(super) fn set_succs(&mut self, now: Now, list: Vec<Peer>) {
        if list == self.succs {
            return;
        }
        let old_first = self.succs.first().copied();
        let old_range = self.range();
        let old_window: Vec<SocketAddrV4> = self.replica_holders();
        self.pace.tighten();
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
        let new_window: Vec<SocketAddrV4> = self.replica_holders();
        if new_window != old_window && self.is_member() && self.takeover.is_none() {
            for a in new_window {
                if !old_window.contains(&a) {
                    self.sync_one(now, a);
                }
            }
        }
        // Our predecessor's list ends in ours: let it refresh now, not at its next
        // (perhaps quiet) round, so a change reaches the `r - 1` lists before it at once.
        if self.is_member() {
            if let Some(p) = self.pred.filter(|p| p.addr != self.me) {
                self.request_once(now, p.addr, RequestPurpose::Fix, |rid| RingFrame::Fix {
                    rid,
                    cookie: 0,
                });
            }
        }
    }

    /// A successor did not answer `dead_after` tries: drop it, shift, repair at once.
    pub(super) fn peer_dead(&mut self, now: Now, addr: SocketAddrV4) {
        self.counters.inc("peer_dead");
        self.pace.tighten();
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
            // (`set_succs` tells the predecessor, so it repairs now.)
            self.set_succs(now, list);
            self.last_fix = None;
            self.immediate_round(now);
        }
    }

    /// `GET_STATE rid`: our id, predecessor and successor list (members only).
    pub(super) fn on_get_state(&mut self, from: SocketAddrV4, rid: u64) {
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

    /// `STATE rid id pred succs`: the answer to a `GET_STATE` we sent.
    pub(super) fn on_state(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        id: u64,
        pred: Option<Peer>,
        succs: Vec<Peer>,
    ) {
        let Some(p) = self.take_pending((from, rid, 0)) else {
            self.counters.inc("drop_unmatched");
            return;
        };
        self.failures.remove(&from);
        if self.pace.seen.len() >= MAX_SEEN {
            self.pace.seen.clear();
        }
        self.pace.seen.insert(from);
        match p.purpose {
            RequestPurpose::Stabilize => {
                self.on_succ_state(now, Peer { id, addr: from }, pred, succs)
            }
            RequestPurpose::Adopt => {
                self.ghosts.remove(&from);
                self.on_adopt_state(now, Peer { id, addr: from }, succs)
            }
            RequestPurpose::PredConfirm => self.on_pred_state(now, from, &succs),
            RequestPurpose::OwnerState => self.on_owner_state(now, Peer { id, addr: from }, &succs),
            RequestPurpose::OwnerViaPred { owner } => self.owner_via_pred(now, owner, pred),
            RequestPurpose::ConfirmState { cid } => self.confirm_state(now, cid, &succs),
            RequestPurpose::LoneClaim { candidate } => {
                self.on_lone_claim_state(now, candidate, Peer { id, addr: from }, &succs);
            }
            // A liveness check of the predecessor: alive, but is it still the same node?
            RequestPurpose::PingPred | RequestPurpose::PredCheck { .. }
                if self.pred.is_some_and(|p| p.addr == from && p.id != id) =>
            {
                self.pred_gone(now, from, &p.purpose);
            }
            _ => {}
        }
    }

    /// `RECTIFY rid id`: a node says it is our predecessor.
    pub(super) fn on_rectify(&mut self, now: Now, from: SocketAddrV4, rid: u64, id: u64) {
        if self.is_member() {
            self.rectify(now, Peer { id, addr: from });
            self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
        }
    }

    /// `FIX rid`: a neighbour saw a failure; run a round now.
    pub(super) fn on_fix(&mut self, now: Now, from: SocketAddrV4, rid: u64) {
        self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
        if self.is_member() && self.is_neighbour(from) {
            self.pace.tighten();
            self.immediate_round(now);
        }
    }

    /// The periodic predecessor liveness check.
    pub(super) fn ping_pred(&mut self, now: Now) {
        let heard = self
            .pace
            .pred_heard
            .is_some_and(|t| now.saturating_sub(t) < self.pred_quiet());
        if heard {
            return;
        }
        if let Some(p) = self.pred.filter(|p| p.addr != self.me) {
            self.request_once(now, p.addr, RequestPurpose::PingPred, |rid| {
                RingFrame::GetState { rid, cookie: 0 }
            });
        }
    }

    /// The predecessor did not answer a check, or answered as someone else (it restarted
    /// and joined elsewhere, with another id): it is no longer our predecessor. After a
    /// rectify's check the claimant that caused it still has to be confirmed.
    pub(super) fn pred_gone(&mut self, now: Now, addr: SocketAddrV4, purpose: &RequestPurpose) {
        if self.pred.map(|p| p.addr) != Some(addr) {
            return;
        }
        self.counters.inc("pred_dead");
        self.set_pred(None);
        match purpose {
            RequestPurpose::PredCheck { candidate } => self.confirm_by_lookup(now, *candidate),
            _ => self.event(Event::PeerDead { addr }),
        }
    }
}

#[cfg(test)]
mod tests {
    use flock_proto::ring::{Peer, RingFrame};

    use crate::node::testing::{counter_total, founder, ms, ring};
    use crate::sim::Sim;

    #[test]
    fn a_crashed_node_is_routed_around() {
        let mut sim = ring(31, 6);
        sim.crash(Sim::addr(3));
        sim.run_until_ideal(std::time::Duration::from_secs(20), ms(200))
            .expect("repaired");
        let dead = counter_total(&sim, &[0, 1, 2, 4, 5], "peer_dead");
        assert!(dead > 0);
        for i in [0, 1, 2, 4, 5] {
            let n = sim.node(Sim::addr(i)).expect("node");
            assert!(n.successors().iter().all(|p| p.addr != Sim::addr(3)));
        }
    }

    #[test]
    fn successor_lists_are_cut_at_ourselves_without_duplicates() {
        let n = founder();
        let p = |i: usize| Peer {
            id: i as u64 * 1000,
            addr: Sim::addr(i),
        };
        let me = Peer {
            id: 0,
            addr: Sim::addr(0),
        };
        assert_eq!(
            n.merge_list(p(1), &[p(2), p(1), p(3)]),
            vec![p(1), p(2), p(3)]
        );
        assert_eq!(n.merge_list(p(1), &[p(2), me, p(3)]), vec![p(1), p(2)]);
        let long: Vec<Peer> = (2..20).map(p).collect();
        assert_eq!(n.merge_list(p(1), &long).len(), n.config().r);
    }

    #[test]
    fn a_lone_node_adopts_a_rectifier_as_both_neighbours() {
        let mut n = founder();
        let x = Peer {
            id: 12_345,
            addr: Sim::addr(8),
        };
        // The claimant must first answer a challenge (issue 10): a GET_STATE at its address.
        let challenge = |n: &mut crate::Node| {
            n.rectify(ms(1), x);
            let out = crate::node::testing::sends(&crate::node::testing::drain(n));
            out.iter()
                .find_map(|(to, f)| match f {
                    flock_proto::Frame::Ring(RingFrame::GetState { rid, .. }) if *to == x.addr => {
                        Some(*rid)
                    }
                    _ => None,
                })
                .expect("a challenge")
        };
        let me = Peer {
            id: n.id(),
            addr: n.addr(),
        };
        let state = |rid, succs: Vec<Peer>| {
            flock_proto::Frame::Ring(RingFrame::State {
                rid,
                id: x.id,
                pred: None,
                succs,
            })
        };
        // Not adopted before it answers, nor when it does not name us as its successor.
        let rid = challenge(&mut n);
        assert_eq!(n.predecessor(), None);
        n.handle_datagram(ms(2), x.addr, state(rid, vec![x]));
        assert_eq!(n.predecessor(), None);
        assert!(n.successors().is_empty());
        let rid = challenge(&mut n);
        n.handle_datagram(ms(3), x.addr, state(rid, vec![me]));
        assert_eq!(n.predecessor(), Some(x));
        assert_eq!(n.successors(), &[x]);
    }
}
