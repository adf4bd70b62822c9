//! Record authority: a node keeps a record only from the path that is responsible for it,
//! with or without a cluster key.
//!
//! | path | kept when |
//! | --- | --- |
//! | an owner's replication (`REPLICATE`, its `SYNC` push) | the sender owns the record's hash in this node's view: our predecessor for `[pred, us)`, or an owner further back that our predecessor names as its predecessor or, when it does not (or further back), a ring lookup of the hash ends at ([`LookupPurpose::OwnerCheck`]; a lookup that finds nothing is run again while the records may wait, then they go and the owner's next push starts a new check) and whose own `STATE` names us among its first r - 1 successors (then cached with its range for a lease; its records wait meanwhile, bounded) |
//! | the predecessor's handover (`REPLICATE` into our range) | the sender is our predecessor |
//! | our join target's records (`WELCOME`) | the sender is the node we joined at, and the record lies in the range we take over |
//! | the takeover (`RECORDS` answering our `FETCH`) | we asked that replica and the hash lies in the range taken over; conflicts are settled when the takeover ends, by the record rules ([`Node::settle_takeover`]) |
//! | a client's registration (`FIND ... REGISTER`) | we own the name and the `FIND`'s key is its hash |
//!
//! Everything else is refused and counted (`record_unauthorized` in `STATUS`), so a host
//! outside the ring cannot plant a record on a node that does not hold the name yet (a
//! forged record that would win after the owner dies). The record rules
//! ([`crate::verify::check`]) still apply on every path: the first pinned key wins.
//!
//! [`LookupPurpose::OwnerCheck`]: super::routing::LookupPurpose::OwnerCheck

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use flock_proto::ring::{FindOp, Outcome, Peer, RingFrame};
use flock_proto::space::in_half_open;
use flock_proto::{Record, ring_hash};
use rand_core::Rng;

use super::requests::RequestPurpose;
use super::routing::LookupPurpose;
use super::transfer::TransferPurpose;
use super::{Node, Phase};
use crate::api::Now;

/// Most records held while their senders are checked (all senders together).
const MAX_HELD: usize = 4096;
/// Most confirmed owners remembered (cleared when full).
const MAX_CONFIRMED: usize = 1024;
/// Most takeover candidates kept until the takeover ends.
const MAX_CANDIDATES: usize = 65_536;

/// What this node knows about who may push which records to it.
#[derive(Debug, Default)]
pub(super) struct Authority {
    /// Owners confirmed by a ring lookup and their own successor list: address ->
    /// (range start, range end exclusive, until).
    confirmed: BTreeMap<SocketAddrV4, (u64, u64, Now)>,
    /// Records waiting for their sender's check: sender -> (give up at, records).
    held: BTreeMap<SocketAddrV4, (Now, Vec<Record>)>,
    held_count: usize,
    /// Takeover answers: user -> (replica, record), settled when the takeover ends.
    candidates: BTreeMap<String, Vec<(SocketAddrV4, Record)>>,
    candidate_count: usize,
}

/// Whether a sender is responsible for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    /// Not known yet: a ring lookup decides.
    Unknown,
}

/// The key a takeover keeps for one name none of its sources agreed on: the key most
/// replicas hold; on a tie the one with the oldest version (pinned first), then the
/// lowest key (deterministic).
fn voted_key(list: &[(SocketAddrV4, Record)]) -> String {
    let mut votes: BTreeMap<&str, (std::collections::BTreeSet<SocketAddrV4>, u64)> =
        BTreeMap::new();
    for (from, r) in list {
        let v = votes
            .entry(r.pubkey_b64.as_str())
            .or_insert_with(|| (Default::default(), u64::MAX));
        v.0.insert(*from);
        v.1 = v.1.min(r.version);
    }
    votes
        .into_iter()
        .max_by(|a, b| {
            (
                a.1.0.len(),
                std::cmp::Reverse(a.1.1),
                std::cmp::Reverse(a.0),
            )
                .cmp(&(
                    b.1.0.len(),
                    std::cmp::Reverse(b.1.1),
                    std::cmp::Reverse(b.0),
                ))
        })
        .map(|(k, _)| k.to_owned())
        .unwrap_or_default()
}

impl Node {
    /// Whether a ring frame from `from` is a request (its cookie is checked by
    /// [`Node::cookie_valid`]) or an answer to one of ours (a request id we are waiting
    /// for from that address). A driver exempts a member's frames from rate limits only
    /// then: a spoofed member address gains nothing.
    pub fn reply_expected(&self, from: SocketAddrV4, frame: &RingFrame) -> bool {
        if frame.cookie().is_some() {
            return true;
        }
        match *frame {
            RingFrame::Discover { .. } => true,
            RingFrame::Here { rid, .. } => rid == self.discover_rid,
            RingFrame::Records { rid, .. } => self.incoming.contains_key(&(from, rid)),
            RingFrame::Ack { rid, seq } => self.pending.contains_key(&(from, rid, seq)),
            ref f => self.pending.contains_key(&(from, f.rid(), 0)),
        }
    }

    /// Whether `from` owns `hash` in our view (see the module docs).
    fn sender_owns(&self, now: Now, from: SocketAddrV4, hash: u64) -> Verdict {
        if let Phase::Joining { target, .. } = self.phase {
            // Our join target replicates to us (its new successor) before we are a member.
            return if from == target {
                Verdict::Yes
            } else {
                Verdict::No
            };
        }
        let pred = self.pred.filter(|p| p.addr != self.me);
        if self.is_member() && self.owns(hash) {
            // Our own range: only our predecessor's handover.
            return if pred.is_some_and(|p| p.addr == from) {
                Verdict::Yes
            } else {
                Verdict::No
            };
        }
        let Some(pred) = pred else {
            return Verdict::Unknown;
        };
        if from == pred.addr {
            return if in_half_open(hash, pred.id, self.id) {
                Verdict::Yes
            } else {
                Verdict::No
            };
        }
        match self.authority.confirmed.get(&from) {
            // Inside the range we confirmed: kept. Outside it the sender's range may have
            // grown since (it took over a dead neighbour's): checked again, not refused.
            Some(&(lo, end, until)) if until > now && in_half_open(hash, lo, end) && lo != end => {
                Verdict::Yes
            }
            _ => Verdict::Unknown,
        }
    }

    /// Records an owner (or our predecessor, or our join target) pushed to us: each kept
    /// only if the sender is responsible for it; senders not known yet are checked by a
    /// ring lookup while their records wait (bounded).
    pub(super) fn accept_pushed(&mut self, now: Now, from: SocketAddrV4, records: Vec<Record>) {
        for r in records {
            match self.sender_owns(now, from, ring_hash(&r.user)) {
                Verdict::Yes => {
                    self.apply_record(now, r, Some(from));
                }
                Verdict::No => self.counters.inc("record_unauthorized"),
                Verdict::Unknown => self.hold(now, from, r),
            }
        }
    }

    /// The records of a transfer we expect (see [`TransferPurpose`]): a takeover's become
    /// candidates, an owner's `SYNC` push is judged like a replication, and a leaving
    /// successor's are kept where they are now ours.
    pub(super) fn accept_transferred(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        purpose: &TransferPurpose,
        records: Vec<Record>,
    ) {
        match purpose {
            TransferPurpose::Fetch => {
                for r in records {
                    self.takeover_candidate(from, r);
                }
            }
            TransferPurpose::SyncPush => self.accept_pushed(now, from, records),
            // Copies fetched to answer a read during repair: judged by the read
            // (`read_copies`), never stored.
            TransferPurpose::Read { .. } => {}
            TransferPurpose::Leave | TransferPurpose::Welcome => {
                for r in records {
                    let hash = ring_hash(&r.user);
                    if self.owns(hash) || self.in_takeover_span(hash) {
                        self.apply_record(now, r, Some(from));
                    } else {
                        self.counters.inc("record_unauthorized");
                    }
                }
            }
        }
    }

    /// Keeps `r` until `from` is checked; starts the check if none is running.
    fn hold(&mut self, now: Now, from: SocketAddrV4, r: Record) {
        if self.authority.held_count >= MAX_HELD || !self.is_member() {
            self.counters.inc("record_unauthorized");
            return;
        }
        let key = ring_hash(&r.user);
        let deadline = now + self.cfg.lookup_timeout * 2;
        // A check that did not finish in time (its lookup gave up during repair) is
        // started again with this push, not waited for until housekeeping.
        if self
            .authority
            .held
            .get(&from)
            .is_some_and(|(until, _)| *until <= now)
        {
            self.drop_held(from);
        }
        let fresh = !self.authority.held.contains_key(&from);
        self.authority
            .held
            .entry(from)
            .or_insert_with(|| (deadline, Vec::new()))
            .1
            .push(r);
        self.authority.held_count += 1;
        if fresh {
            self.counters.inc("owner_checks");
            match self.pred.filter(|p| p.addr != self.me && p.addr != from) {
                // An owner two back is our predecessor's predecessor: one round trip.
                Some(p) if self.cfg.r >= 3 => {
                    let rid = self.rng.next_u64();
                    self.request(
                        now,
                        p.addr,
                        RingFrame::GetState { rid, cookie: 0 },
                        RequestPurpose::OwnerViaPred { owner: from },
                    );
                }
                _ => {
                    self.start_lookup(now, LookupPurpose::OwnerCheck { from }, key, FindOp::Locate)
                }
            }
        }
    }

    /// Our predecessor's `STATE` named its predecessor: if that is `owner`, `owner` is
    /// asked for its successor list as after a ring lookup; if not, the ring is asked.
    pub(super) fn owner_via_pred(
        &mut self,
        now: Now,
        owner: SocketAddrV4,
        pred_of_pred: Option<Peer>,
    ) {
        if pred_of_pred.is_some_and(|pp| pp.addr == owner) {
            self.ask_owner_state(now, owner);
        } else {
            self.owner_check_by_lookup(now, owner);
        }
    }

    /// The owner check by a ring lookup of the hash of a record `owner` pushed.
    pub(super) fn owner_check_by_lookup(&mut self, now: Now, owner: SocketAddrV4) {
        let Some(key) = self
            .authority
            .held
            .get(&owner)
            .and_then(|(_, held)| held.first())
            .map(|r| ring_hash(&r.user))
        else {
            return;
        };
        self.start_lookup(
            now,
            LookupPurpose::OwnerCheck { from: owner },
            key,
            FindOp::Locate,
        );
    }

    /// Asks a confirmed owner for its successor list ([`Node::on_owner_state`]).
    fn ask_owner_state(&mut self, now: Now, owner: SocketAddrV4) {
        let rid = self.rng.next_u64();
        self.request(
            now,
            owner,
            RingFrame::GetState { rid, cookie: 0 },
            RequestPurpose::OwnerState,
        );
    }

    /// A ring lookup answered who owns the hash `from` pushed: if it is `from`, we ask it
    /// for its successor list ([`Node::on_owner_state`]); if not, its records go.
    pub(super) fn owner_checked(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        owner: Peer,
        outcome: &Outcome,
    ) {
        if matches!(outcome, Outcome::Node) && owner.addr == from && owner.addr != self.me {
            self.ask_owner_state(now, from);
        } else {
            self.drop_held(from);
        }
    }

    /// `STATE` from an owner the ring confirmed: if we are among its first r - 1
    /// successors it is confirmed (for a lease) with its range, and its held records are
    /// judged again; if not, they go.
    pub(super) fn on_owner_state(&mut self, now: Now, owner: Peer, succs: &[Peer]) {
        let replicas = self.cfg.r.saturating_sub(1);
        let ours = succs.iter().take(replicas).any(|p| p.addr == self.me);
        let end = succs.first().map_or(owner.id, |p| p.id);
        if !ours {
            self.drop_held(owner.addr);
            return;
        }
        if self.authority.confirmed.len() >= MAX_CONFIRMED {
            self.authority.confirmed.clear();
        }
        self.authority
            .confirmed
            .insert(owner.addr, (owner.id, end, now + self.cfg.lease));
        let Some((_, held)) = self.authority.held.remove(&owner.addr) else {
            return;
        };
        self.authority.held_count = self.authority.held_count.saturating_sub(held.len());
        for r in held {
            if self.sender_owns(now, owner.addr, ring_hash(&r.user)) == Verdict::Yes {
                self.apply_record(now, r, Some(owner.addr));
            } else {
                self.counters.inc("record_unauthorized");
            }
        }
    }

    /// The ring lookup of an owner check found no answer (the ring is being repaired):
    /// while its records may still wait, the check runs again a retransmission timeout
    /// later (the owner pushes again only when its range changes or its lease is due);
    /// after that they go, uncounted as refusals (nothing was proven), and the owner's
    /// next push starts a new check.
    pub(super) fn owner_check_abandoned(&mut self, now: Now, from: SocketAddrV4) {
        let Some(&(until, _)) = self.authority.held.get(&from) else {
            return;
        };
        self.counters.inc("owner_check_abandoned");
        if until > now + self.cfg.rto {
            self.defer(
                now,
                RequestPurpose::OwnerRecheck { owner: from },
                self.cfg.rto,
            );
        } else if let Some((_, held)) = self.authority.held.remove(&from) {
            self.authority.held_count = self.authority.held_count.saturating_sub(held.len());
        }
    }

    /// Refuses the records held for `from` (its check failed).
    fn drop_held(&mut self, from: SocketAddrV4) {
        if let Some((_, held)) = self.authority.held.remove(&from) {
            self.authority.held_count = self.authority.held_count.saturating_sub(held.len());
            self.counters.add("record_unauthorized", held.len() as u64);
        }
    }

    /// Forgets held records whose check never finished, and expired confirmations.
    pub(super) fn authority_housekeeping(&mut self, now: Now) {
        let mut dropped = 0;
        self.authority.held.retain(|_, (until, recs)| {
            let keep = *until > now;
            if !keep {
                dropped += recs.len();
            }
            keep
        });
        self.authority.held_count = self.authority.held_count.saturating_sub(dropped);
        self.counters.add("record_unauthorized", dropped as u64);
        self.authority
            .confirmed
            .retain(|_, (_, _, until)| *until > now);
        if self.takeover.is_none() {
            self.settle_takeover(now);
        }
    }

    /// A record a replica sent for our takeover: kept as a candidate if it lies in the
    /// range taken over; all candidates are settled together when the takeover ends.
    pub(super) fn takeover_candidate(&mut self, from: SocketAddrV4, r: Record) {
        if !self.in_takeover_span(ring_hash(&r.user))
            || self.authority.candidate_count >= MAX_CANDIDATES
        {
            self.counters.inc("record_unauthorized");
            return;
        }
        self.authority.candidate_count += 1;
        self.authority
            .candidates
            .entry(r.user.clone())
            .or_default()
            .push((from, r));
    }

    /// Settles the takeover's candidates by the record rules, never by arrival order: a
    /// key we hold already stays pinned; otherwise the key most replicas hold wins
    /// ([`voted_key`]); of that key, the newest version.
    pub(super) fn settle_takeover(&mut self, now: Now) {
        let candidates = std::mem::take(&mut self.authority.candidates);
        self.authority.candidate_count = 0;
        for (user, list) in candidates {
            let key = match self.records.get(&user) {
                Some(e) => e.record.pubkey_b64.clone(),
                None => voted_key(&list),
            };
            if list.iter().any(|(_, r)| r.pubkey_b64 != key) {
                self.counters.inc("takeover_conflict");
            }
            let mut recs: Vec<Record> = list
                .into_iter()
                .map(|(_, r)| r)
                .filter(|r| r.pubkey_b64 == key)
                .collect();
            recs.sort_by_key(|r| r.version);
            if let Some(newest) = recs.pop() {
                self.apply_record(now, newest, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use flock_proto::ring::{FindOp, RingFrame};
    use flock_proto::{Frame, Record, ring_hash};

    use super::voted_key;
    use crate::FakeVerifier;
    use crate::node::testing::{counter_total, ms, ring_with_users};
    use crate::sim::Sim;

    /// `user`'s record under another key, validly signed by it.
    fn forged(user: &str, version: u64) -> Record {
        let mut r = Sim::make_record(user, version);
        r.pubkey_b64 = format!("EVIL{user}");
        r.ip = std::net::Ipv4Addr::new(6, 6, 6, 6);
        r.sig_b64 = FakeVerifier::sign(&r);
        r
    }

    fn cookie(sim: &Sim, to: SocketAddrV4, from: SocketAddrV4) -> u64 {
        sim.node(to).expect("node").cookie_for(from)
    }

    /// Every way a non-member can push a record, to every node: `REPLICATE`, `FIND ...
    /// REGISTER` (with the right and with a wrong key), a `SYNC` and the push it asks for.
    fn push_everywhere(sim: &mut Sim, att: SocketAddrV4, r: &Record, nodes: &[SocketAddrV4]) {
        for (i, &to) in nodes.iter().enumerate() {
            let c = cookie(sim, to, att);
            let rid = 900 + i as u64 * 10;
            let frames = vec![
                RingFrame::Replicate {
                    rid,
                    cookie: c,
                    records: vec![r.clone()],
                },
                RingFrame::Find {
                    rid: rid + 1,
                    cookie: c,
                    key: ring_hash(&r.user),
                    op: FindOp::Register { record: r.clone() },
                },
                RingFrame::Find {
                    rid: rid + 2,
                    cookie: c,
                    key: sim.node(to).expect("node").id(),
                    op: FindOp::Register { record: r.clone() },
                },
                RingFrame::Sync {
                    rid: rid + 3,
                    cookie: c,
                    lo: 0,
                    hi: flock_proto::space::MODULUS - 1,
                    count: 1,
                    digest: 1,
                },
            ];
            for f in frames {
                sim.send_from_client(att, to, Frame::Ring(f));
            }
        }
        sim.run_for(ms(300)).expect("runs");
        // The pushes the SYNCs asked for.
        for (i, &to) in nodes.iter().enumerate() {
            let rid = 900 + i as u64 * 10 + 3;
            let f = RingFrame::Records {
                rid,
                seq: 0,
                total: 1,
                records: vec![r.clone()],
            };
            sim.send_from_client(att, to, Frame::Ring(f));
        }
    }

    fn resolves_everywhere_to(sim: &mut Sim, live: &[SocketAddrV4], real: &Record) {
        for &n in live {
            if let Some(held) = sim.node(n).and_then(|x| x.record(&real.user)) {
                assert_eq!(
                    held.pubkey_b64, real.pubkey_b64,
                    "{n} holds a forged record"
                );
            }
        }
        sim.check_records(Some(live.to_vec()), ms(2000))
            .expect("every record resolves to the real one");
    }

    #[test]
    fn a_non_member_plants_no_record_by_any_path_before_or_after_the_owner_dies() {
        let mut sim = ring_with_users(61, 6, 20);
        let att = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 66, 0, 1), 4000);
        sim.add_outside(att);
        let nodes: Vec<SocketAddrV4> = (0..6).map(Sim::addr).collect();
        // A registered name, and one nobody registered on the nodes not owning it.
        let real = sim.acked().get("user3").cloned().expect("user3 registered");
        push_everywhere(&mut sim, att, &forged("user3", real.version + 5), &nodes);
        sim.run_for(ms(3000)).expect("runs");
        resolves_everywhere_to(&mut sim, &nodes, &real);
        assert!(counter_total(&sim, &[0, 1, 2, 3, 4, 5], "record_unauthorized") > 0);
        // Kill the owner: the forged record still never wins.
        let owner = nodes
            .iter()
            .copied()
            .find(|&n| {
                sim.node(n)
                    .is_some_and(|x| x.records().any(|(r, own)| own && r.user == "user3"))
            })
            .expect("an owner");
        sim.crash(owner);
        let live: Vec<SocketAddrV4> = nodes.iter().copied().filter(|&n| n != owner).collect();
        sim.run_until_ideal(std::time::Duration::from_secs(20), ms(200))
            .expect("repaired");
        push_everywhere(&mut sim, att, &forged("user3", real.version + 9), &live);
        sim.run_for(ms(3000)).expect("runs");
        resolves_everywhere_to(&mut sim, &live, &real);
    }

    #[test]
    fn replicas_still_fill_through_the_confirmed_owner() {
        let mut sim = ring_with_users(62, 6, 30);
        sim.run_for(ms(3000)).expect("runs");
        let checks = counter_total(&sim, &[0, 1, 2, 3, 4, 5], "owner_checks");
        assert!(checks > 0);
        // Each record on r nodes.
        for r in sim.acked().values().cloned().collect::<Vec<_>>() {
            let holders = (0..6)
                .filter(|&i| sim.node(Sim::addr(i)).and_then(|n| n.record(&r.user)) == Some(&r))
                .count();
            assert_eq!(holders, crate::Config::default().r, "{}", r.user);
        }
    }

    #[test]
    fn a_member_replicates_its_range_only_to_its_replicas() {
        let mut sim = ring_with_users(63, 8, 4);
        let x = Sim::addr(3);
        let (lo, hi) = sim.node(x).expect("node").range();
        let name = (0..10_000)
            .map(|i| format!("zed{i}"))
            .find(|u| flock_proto::space::in_inclusive(ring_hash(u), lo, hi))
            .expect("a name in x's range");
        let r = Sim::make_record(&name, 1);
        let node = sim.node(x).expect("node");
        let succs: Vec<SocketAddrV4> = node.successors().iter().map(|p| p.addr).collect();
        let replicas = &succs[..crate::Config::default().r - 1];
        let pred = node.predecessor().expect("pred").addr;
        // x (or anyone at x's address) pushes its own name to every other node.
        for i in (0..8).filter(|&i| Sim::addr(i) != x) {
            let to = Sim::addr(i);
            let f = RingFrame::Replicate {
                rid: 70 + i as u64,
                cookie: cookie(&sim, to, x),
                records: vec![r.clone()],
            };
            sim.send_from_client(x, to, Frame::Ring(f));
        }
        sim.run_for(ms(1500)).expect("runs");
        for i in 0..8 {
            let a = Sim::addr(i);
            let held = sim.node(a).and_then(|n| n.record(&name)).is_some();
            assert_eq!(
                held,
                replicas.contains(&a),
                "{a} (pred {pred}, replicas {replicas:?})"
            );
        }
    }

    #[test]
    fn a_takeover_conflict_goes_to_the_key_most_replicas_hold() {
        let a = Sim::addr(1);
        let b = Sim::addr(2);
        let c = Sim::addr(3);
        let real = Sim::make_record("alice", 3);
        let evil = forged("alice", 9);
        // One forged answer first, then two real ones: arrival order does not matter.
        let list = vec![(a, evil.clone()), (b, real.clone()), (c, real.clone())];
        assert_eq!(voted_key(&list), real.pubkey_b64);
        let list = vec![(b, real.clone()), (a, evil.clone())];
        let rev = vec![(a, evil), (b, real.clone())];
        assert_eq!(voted_key(&list), voted_key(&rev));
    }
}
