//! Membership: finding a ring (probing and discovery), founding one, joining (`JOIN`,
//! `WELCOME`), and leaving (`LEAVE`).
//!
//! A node with no bootstrap target founds a ring at once. Otherwise it asks its targets
//! (which may include a broadcast address) with `DISCOVER`; members answer `HERE` with
//! their range, and the node joins the widest. With [`Config::may_found`] set it first
//! *probes* ([`Phase::Probing`]) for [`Config::probe_window`] (plus a jitter drawn from
//! its seed) and founds a ring if nobody answers; a node that hears other probers with a
//! lower address waits for them (a few windows at most) instead, so nodes started
//! together form one ring. Without it the node keeps asking until a ring answers.
//!
//! [`Config::may_found`]: crate::Config::may_found
//! [`Config::probe_window`]: crate::Config::probe_window

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{Peer, RingFrame};
use flock_proto::space::{dist, split_point};
use flock_proto::{Record, ring_hash};
use rand_core::Rng;

use super::requests::RequestPurpose;
use super::transfer::{IncomingTransfer, TRANSFER_TIMEOUT, TransferPurpose, chunk_records};
use super::{Node, Phase, Timer};
use crate::Table;
use crate::api::{Event, Now};

/// Most `HERE` offers (and other probers) remembered while discovering.
const MAX_OFFERS: usize = 256;
/// Windows a prober waits for lower-addressed probers to found the ring.
const MAX_PROBE_DEFERRALS: u32 = 3;

/// The welcome a joiner got (chunks may still be missing).
#[derive(Debug, Clone)]
pub(super) struct Welcome {
    id: u64,
    pred: Peer,
    succs: Vec<Peer>,
}

/// A join we are serving: resent on duplicate `JOIN`.
#[derive(Debug, Clone)]
pub(super) struct Serving {
    rid: u64,
    welcome: RingFrame,
    pub(super) xfer: u64,
    pub(super) until: Now,
}

/// What a probing node has heard so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Probe {
    /// `HERE` answers: member -> its range.
    offers: BTreeMap<SocketAddrV4, (u64, u64)>,
    /// Other nodes probing at the same time (their `DISCOVER`s).
    probers: BTreeSet<SocketAddrV4>,
    /// When the window ends.
    until: Now,
    /// Windows spent waiting for lower-addressed probers.
    deferrals: u32,
}

/// The widest range wins; ties go to the lowest address (deterministic).
fn best_offer(offers: &BTreeMap<SocketAddrV4, (u64, u64)>) -> Option<SocketAddrV4> {
    offers
        .iter()
        .max_by(|a, b| {
            let wa = dist(a.1.0, a.1.1);
            let wb = dist(b.1.0, b.1.1);
            wa.cmp(&wb).then(b.0.cmp(a.0))
        })
        .map(|(a, _)| *a)
}

impl Node {
    /// Starts the found-or-join phase: probe the bootstrap targets for one window plus a
    /// jitter from the seed (so nodes started together do not decide in lockstep).
    pub(super) fn start_probing(&mut self, now: Now) {
        let window = self.cfg.probe_window;
        let spread = (window / 2).as_millis() as u64 + 1;
        let jitter = Duration::from_millis(self.rng.next_u64() % spread);
        self.phase = Phase::Probing(Probe {
            until: now + window + jitter,
            ..Probe::default()
        });
        self.discover_rid = self.rng.next_u64();
        self.send_discover();
        self.timers.insert(Timer::Discover, now + window / 3);
        self.timers
            .entry(Timer::Housekeeping)
            .or_insert(now + self.cfg.sync_interval);
    }

    /// Sends `DISCOVER` (the current rid) to every bootstrap target.
    fn send_discover(&mut self) {
        let rid = self.discover_rid;
        for b in self.cfg.bootstrap.clone() {
            if b != self.me {
                self.send_ring(b, RingFrame::Discover { rid });
            }
        }
    }

    /// The probe timer: resend until the window ends, then decide.
    pub(super) fn probe_tick(&mut self, now: Now) {
        let Phase::Probing(probe) = &mut self.phase else {
            return;
        };
        if now < probe.until {
            let next = (now + self.cfg.probe_window / 3).min(probe.until);
            self.timers.insert(Timer::Discover, next);
            self.send_discover();
            return;
        }
        if let Some(target) = best_offer(&probe.offers) {
            self.start_join(now, target);
            return;
        }
        let lower = probe.probers.iter().any(|p| *p < self.me);
        if lower && probe.deferrals < MAX_PROBE_DEFERRALS {
            // A prober with a lower address founds; its HERE answers our next DISCOVER.
            probe.deferrals += 1;
            probe.probers.clear();
            probe.until = now + self.cfg.probe_window;
            self.counters.inc("probe_deferred");
            self.timers.insert(Timer::Discover, now);
            return;
        }
        self.counters.inc("probe_founded");
        self.become_founder(now);
    }

    /// `DISCOVER rid` (a request): members answer with their range; a probing node notes
    /// the other prober.
    pub(super) fn on_discover(&mut self, from: SocketAddrV4, rid: u64) {
        if self.is_member() {
            let (lo, hi) = self.range();
            self.send_ring(from, RingFrame::Here { rid, lo, hi });
        } else if let Phase::Probing(probe) = &mut self.phase {
            // Our own broadcast, come back from another of our addresses, is no prober.
            if rid != self.discover_rid && probe.probers.len() < MAX_OFFERS {
                probe.probers.insert(from);
            }
        }
    }

    /// `HERE rid lo hi`: a member's answer to our `DISCOVER`.
    pub(super) fn on_here(&mut self, now: Now, from: SocketAddrV4, rid: u64, lo: u64, hi: u64) {
        if rid != self.discover_rid {
            self.counters.inc("drop_unmatched");
            return;
        }
        if let Phase::Discovering { offers, .. } = &mut self.phase {
            if offers.len() < MAX_OFFERS {
                offers.insert(from, (lo, hi));
            }
        } else if let Phase::Probing(probe) = &mut self.phase {
            if probe.offers.len() < MAX_OFFERS {
                probe.offers.insert(from, (lo, hi));
            }
            // A ring answered: collect the other answers briefly, then join.
            let soon = now + self.cfg.probe_window / 4;
            if soon < probe.until {
                probe.until = soon;
                self.timers.insert(Timer::Discover, soon);
            }
        }
    }

    /// `WELCOME rid id chunks pred succs`: our join target accepted us.
    pub(super) fn on_welcome(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        id: u64,
        pred: Peer,
        succs: Vec<Peer>,
    ) {
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

    /// `REFUSE rid`: our join target cannot split its range now.
    pub(super) fn on_refuse(&mut self, now: Now, from: SocketAddrV4, rid: u64) {
        if let Phase::Joining { target, rid: jrid } = self.phase {
            if target == from && rid == jrid {
                self.take_pending((from, rid, 0));
                self.join_failed(now);
                return;
            }
        }
        self.counters.inc("drop_unmatched");
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
        let chunks = chunk_records(self.records_in(lo, hi));
        let rid = self.rng.next_u64();
        let frame = RingFrame::Leave {
            rid,
            cookie: 0,
            chunks: chunks.len() as u32,
            pred: self.pred,
            succs: self.succs.clone(),
        };
        self.request(now, pred.addr, frame, RequestPurpose::Leave);
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
                self.request(now, s.addr, frame, RequestPurpose::Leave);
            }
        }
    }

    /// Founds a new ring: this node owns the whole hash space ([`Event::Founded`]).
    pub(super) fn become_founder(&mut self, now: Now) {
        self.id = 0;
        self.succs.clear();
        self.pred = None;
        self.become_member(now, true);
    }

    /// Becomes a ring member (a founder, or a joiner whose `WELCOME` is complete).
    pub(super) fn become_member(&mut self, now: Now, founded: bool) {
        self.phase = Phase::Member;
        let (lo, hi) = self.range();
        let id = self.id;
        self.event(if founded {
            Event::Founded { id, lo, hi }
        } else {
            Event::Joined { id, lo, hi }
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
            self.hand_to_owner(now, r);
        }
        let early: Vec<_> = self.early.drain(..).collect();
        for (from, f) in early {
            self.on_client(now, from, f);
        }
    }

    /// Asks the bootstrap targets for ring members (`DISCOVER`); joins the widest range
    /// that answers, and keeps asking while none does.
    pub(super) fn start_discovery(&mut self, now: Now) {
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

    /// The end of a discovery window: join the best offer, or ask again.
    pub(super) fn finish_discovery(&mut self, now: Now) {
        let Phase::Discovering { offers, .. } = &self.phase else {
            return;
        };
        match best_offer(offers) {
            Some(target) => self.start_join(now, target),
            None => {
                // Nobody answered: keep looking (never found a second ring by accident).
                self.counters.inc("discover_retry");
                self.start_discovery(now);
                self.timers
                    .insert(Timer::Discover, now + self.cfg.discover_window * 3);
            }
        }
    }

    /// Sends `JOIN` to `target` and waits for its `WELCOME` and records.
    fn start_join(&mut self, now: Now, target: SocketAddrV4) {
        let rid = self.rng.next_u64();
        self.phase = Phase::Joining { target, rid };
        self.welcome = None;
        self.incoming.insert(
            (target, rid),
            IncomingTransfer::new(TransferPurpose::Welcome, None, now),
        );
        self.request(
            now,
            target,
            RingFrame::Join { rid, cookie: 0 },
            RequestPurpose::Join,
        );
    }

    /// The join was refused or its target went silent: discover again, a little later.
    pub(super) fn join_failed(&mut self, now: Now) {
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

    /// `JOIN rid`: give the joiner the upper half of our range, our successor list and
    /// the records of that half.
    pub(super) fn on_join(&mut self, now: Now, from: SocketAddrV4, rid: u64) {
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
        // Only the range it takes over, `[mid, hi]`: the replicas it now holds as a
        // successor of the same owners come from those owners (their `SYNC` pushes).
        let recs: Vec<Record> = self.records_in(mid, hi);
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

    /// `LEAVE rid chunks pred succs`: a neighbour is leaving.
    pub(super) fn on_leave(
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
                    IncomingTransfer::new(TransferPurpose::Leave, Some(chunks), now),
                );
            }
            // Adopt its successors; the range grows with records arriving in this transfer
            // (and the usual fetch from the replicas, in case the transfer is lost).
            // Our own later successors come first (an honest leaver's list is ours
            // shifted by one, plus one more): a leaver (any member of an open ring) that
            // names dead, made-up or misplaced successors cannot cut us off; stabilize
            // replaces the list from the new successor's state in the next round.
            let list: Vec<Peer> = self
                .succs
                .iter()
                .chain(succs.iter())
                .filter(|p| p.addr != from)
                .copied()
                .collect();
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

    /// Everything is handed over: fall silent.
    pub(super) fn finish_leave(&mut self, _now: Now) {
        self.leave_xfer = None;
        self.phase = Phase::Left;
        self.pending.clear();
        self.deadlines.clear();
        self.timers.clear();
        self.event(Event::Left);
    }

    /// A node claims to precede us while we are alone (`RECTIFY`): before it becomes our
    /// predecessor and successor (and gets the half of the ring it claims), it must answer
    /// a challenge, a `GET_STATE` with a fresh random id at its address, with its claimed
    /// id and us as its successor (with a cluster key its answer is also authenticated,
    /// i.e. it proves membership).
    pub(super) fn challenge_lone_claim(&mut self, now: Now, n: Peer) {
        if n.addr == self.me
            || self.has_pending_purpose(n.addr, &RequestPurpose::LoneClaim { candidate: n })
        {
            return;
        }
        self.counters.inc("lone_claim_challenged");
        let rid = self.rng.next_u64();
        self.request(
            now,
            n.addr,
            RingFrame::GetState { rid, cookie: 0 },
            RequestPurpose::LoneClaim { candidate: n },
        );
    }

    /// The claimant's `STATE`: adopted if it is the node it claimed to be and names us
    /// as its successor, and we are still alone.
    pub(super) fn on_lone_claim_state(
        &mut self,
        now: Now,
        claim: Peer,
        state: Peer,
        succs: &[Peer],
    ) {
        let alone = self.pred.is_none() && self.succs.is_empty() && self.is_member();
        let names_us = succs
            .first()
            .is_some_and(|p| p.addr == self.me && p.id == self.id);
        if !alone || state != claim || !names_us {
            self.counters.inc("pred_claim_refused");
            return;
        }
        self.set_pred(Some(claim));
        self.set_succs(now, vec![claim]);
    }

    /// The `WELCOME` and all its records arrived: become a member.
    pub(super) fn complete_join(&mut self, now: Now, chunks: BTreeMap<u32, Vec<Record>>) {
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
                // Only the range we take over (`authority`).
                if self.owns(ring_hash(&r.user)) {
                    self.apply_record(now, r, Some(w.pred.addr));
                } else {
                    self.counters.inc("record_unauthorized");
                }
            }
        }
        self.phase = Phase::Joining {
            target: w.pred.addr,
            rid: 0,
        };
        self.become_member(now, false);
        self.event(Event::PredecessorChanged { pred: self.pred });
        self.event(Event::SuccessorChanged {
            succ: self.succs.first().copied(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use flock_proto::Frame;
    use flock_proto::ring::RingFrame;

    use crate::node::testing::{drain, events, ms, node_with, ring, ring_with_users, sends};
    use crate::sim::{NetConfig, Sim};
    use crate::{Config, Event, NodePhase};

    fn probing_config(bootstrap: Vec<SocketAddrV4>) -> Config {
        Config {
            may_found: true,
            bootstrap,
            ..Config::default()
        }
    }

    #[test]
    fn a_node_alone_founds_after_its_probe_window() {
        let mut cfg = probing_config(vec![Sim::addr(5)]);
        cfg.name = "alone".into();
        let mut n = crate::Node::new(cfg, Sim::addr(0), 3, ms(0), Box::new(crate::FakeVerifier));
        let mut discovers = 0;
        let mut founded_at = None;
        let mut now = ms(0);
        while founded_at.is_none() {
            let out = drain(&mut n);
            discovers += sends(&out)
                .iter()
                .filter(|(to, f)| {
                    *to == Sim::addr(5) && matches!(f, Frame::Ring(RingFrame::Discover { .. }))
                })
                .count();
            if events(&out)
                .iter()
                .any(|e| matches!(e, Event::Founded { .. }))
            {
                founded_at = Some(now);
                break;
            }
            assert!(
                !events(&out)
                    .iter()
                    .any(|e| matches!(e, Event::Joined { .. }))
            );
            assert_eq!(n.status().phase, NodePhase::Probing);
            now = n.poll_timeout().expect("a timer");
            n.handle_timeout(now);
        }
        let window = n.config().probe_window;
        let t = founded_at.expect("founded");
        assert!(t >= window && t <= window + window / 2, "{t:?}");
        assert!(discovers >= 3, "{discovers}");
        assert!(n.is_member() && n.range() == (0, flock_proto::space::MODULUS - 1));
        assert_eq!(n.counters().get("probe_founded"), 1);
    }

    #[test]
    fn a_prober_joins_the_ring_that_answers() {
        let mut sim = Sim::new(4, NetConfig::default(), Config::default());
        sim.start(Sim::addr(0), Vec::new());
        sim.node_config.may_found = true;
        sim.start(Sim::addr(1), vec![Sim::addr(0)]);
        sim.run_until_ideal(std::time::Duration::from_secs(10), ms(100))
            .expect("one ring of two");
        assert_eq!(sim.members().len(), 2);
        let n = sim.node(Sim::addr(1)).expect("node");
        assert_eq!(n.counters().get("probe_founded"), 0);
    }

    /// Nodes started together, each probing every other (a broadcast), form ONE ring:
    /// the simulator checks "at most one ring" at every step.
    fn start_together(seed: u64, n: usize) -> Sim {
        let mut sim = Sim::new(seed, NetConfig::default(), Config::default());
        sim.node_config.may_found = true;
        let all: Vec<SocketAddrV4> = (0..n).map(Sim::addr).collect();
        for &a in &all {
            let others = all.iter().copied().filter(|b| *b != a).collect();
            sim.start(a, others);
        }
        sim.run_until_ideal(std::time::Duration::from_secs(30), ms(200))
            .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        assert_eq!(sim.members().len(), n, "seed {seed}");
        sim
    }

    #[test]
    fn nodes_started_together_form_one_ring() {
        for seed in 0..12 {
            let sim = start_together(seed, 6);
            let founded: u64 = (0..6)
                .map(|i| {
                    sim.node(Sim::addr(i))
                        .expect("node")
                        .counters()
                        .get("probe_founded")
                })
                .sum();
            assert_eq!(founded, 1, "seed {seed}");
        }
    }

    #[test]
    fn replay_by_seed_is_deterministic() {
        let view = |sim: &Sim| -> Vec<(u64, (u64, u64))> {
            (0..5)
                .map(|i| sim.node(Sim::addr(i)).expect("node"))
                .map(|n| (n.id(), n.range()))
                .collect()
        };
        let a = start_together(21, 5);
        let b = start_together(21, 5);
        assert_eq!(view(&a), view(&b));
        assert_eq!((a.now, a.delivered), (b.now, b.delivered));
    }

    #[test]
    fn lost_probes_found_when_allowed_and_retry_when_not() {
        // Founding allowed: every probe lost, the node founds.
        let mut sim = Sim::new(5, NetConfig::default(), Config::default());
        sim.net.loss = 1.0;
        sim.node_config.may_found = true;
        sim.start(Sim::addr(0), vec![Sim::addr(1)]);
        sim.run_for(ms(3000)).expect("runs");
        assert!(sim.node(Sim::addr(0)).expect("node").is_member());
        // Not allowed (a --join target): it keeps asking, and joins once datagrams flow.
        sim.node_config.may_found = false;
        sim.start(Sim::addr(1), vec![Sim::addr(0)]);
        sim.run_for(ms(3000)).expect("runs");
        let n = sim.node(Sim::addr(1)).expect("node");
        assert!(!n.is_member() && n.counters().get("discover_retry") > 0);
        assert_eq!(n.status().phase, NodePhase::Discovering);
        sim.net.loss = 0.0;
        sim.run_until_ideal(std::time::Duration::from_secs(20), ms(200))
            .expect("joins");
        assert_eq!(sim.members().len(), 2);
    }

    #[test]
    fn founding_and_joining_are_told_apart() {
        let n = node_with(Config::default());
        assert!(n.is_member());
        let mut sim = ring(6, 1);
        sim.start(Sim::addr(1), vec![Sim::addr(0)]);
        let node = sim.node_mut(Sim::addr(1)).expect("node");
        assert!(!node.is_member());
        sim.run_for(ms(1000)).expect("runs");
        assert!(sim.node(Sim::addr(1)).expect("node").is_member());
        let mut f = crate::Node::new(
            Config::default(),
            Sim::addr(2),
            1,
            ms(0),
            Box::new(crate::FakeVerifier),
        );
        let ev = events(&drain(&mut f));
        assert!(matches!(ev[..], [Event::Founded { lo: 0, .. }]), "{ev:?}");
    }

    #[test]
    fn a_joiner_gets_only_the_range_it_takes_over() {
        let mut n = crate::node::testing::founder();
        for i in 0..40 {
            let r = Sim::make_record(&format!("user{i}"), 1);
            n.handle_datagram(ms(1), Sim::addr(30), Frame::Register((&r).into()));
        }
        drain(&mut n);
        let joiner = Sim::addr(9);
        let join = RingFrame::Join {
            rid: 5,
            cookie: n.cookie_for(joiner),
        };
        n.handle_datagram(ms(2), joiner, Frame::Ring(join));
        let out = sends(&drain(&mut n));
        let mid = out
            .iter()
            .find_map(|(_, f)| match f {
                Frame::Ring(RingFrame::Welcome { id, .. }) => Some(*id),
                _ => None,
            })
            .expect("welcome");
        let sent: Vec<String> = out
            .iter()
            .filter(|(to, _)| *to == joiner)
            .filter_map(|(_, f)| match f {
                Frame::Ring(RingFrame::Records { records, .. }) => Some(records.clone()),
                _ => None,
            })
            .flatten()
            .map(|r| r.user)
            .collect();
        let theirs: Vec<String> = (0..40)
            .map(|i| format!("user{i}"))
            .filter(|u| flock_proto::ring_hash(u) >= mid)
            .collect();
        assert!(!theirs.is_empty() && theirs.len() < 40);
        let mut sent_sorted = sent.clone();
        sent_sorted.sort();
        let mut want = theirs;
        want.sort();
        assert_eq!(sent_sorted, want);
    }

    #[test]
    fn a_leaving_node_falls_silent_and_the_ring_heals() {
        let mut sim = ring_with_users(7, 4, 8);
        sim.leave(Sim::addr(2));
        sim.run_for(ms(3000)).expect("runs");
        let n = sim.node(Sim::addr(2)).expect("node");
        assert!(n.has_left(), "{n:?}");
        sim.run_until_ideal(std::time::Duration::from_secs(20), ms(200))
            .expect("heals");
        sim.check_records(None, ms(2000)).expect("no record lost");
    }
}
