//! Majority-confirmed lookups in an open ring (no cluster key), where any member may lie.
//!
//! The entry node of a client `RESOLVE` / `LOOKUP` does not take the owner's word for a
//! signed record: it asks the record's holders (the owner's first r - 1 successors) what
//! they hold (`FIND ... HELD user`, not routed) and answers the client with the key a
//! strict majority of the records held agree on (the owner's counted; holders that hold
//! nothing do not vote), at the newest version of that key, or not at all. So one lying
//! member, owner or replica, cannot replace a name pinned on its other holders.
//!
//! The holders come from the owner's `STATE`; a holder this node does not know as a
//! neighbour must be confirmed by a ring lookup of its id ending at it (a lying owner
//! cannot name accomplices outside the ring); the confirmed list is cached per owner for
//! a lease. With a cluster key ([`crate::Config::authenticated`]) members are trusted and
//! the owner's answer suffices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;

use flock_proto::ring::{FindOp, Outcome, Peer, RingFrame};
use flock_proto::{Frame, Record, ring_hash};
use rand_core::Rng;

use super::Node;
use super::requests::RequestPurpose;
use super::routing::{LookupPurpose, lookup_reply};
use crate::api::Now;

/// One client answer waiting for its holders.
#[derive(Debug, Clone)]
pub(super) struct Confirm {
    client: SocketAddrV4,
    rid: Option<u64>,
    user: String,
    owner: Peer,
    /// Answers so far: holder -> its record (`None`: it holds none).
    votes: BTreeMap<SocketAddrV4, Option<Record>>,
    /// Holders asked and not answered yet.
    waiting: BTreeSet<SocketAddrV4>,
    /// Holders named by the owner and being confirmed by a ring lookup.
    verifying: BTreeSet<SocketAddrV4>,
    /// Holders confirmed (for the cache).
    confirmed: Vec<SocketAddrV4>,
    /// Whether the holder list came from the cache (a silent holder invalidates it).
    cached: bool,
    deadline: Now,
}

/// The confirmations in flight and the holder lists learned.
#[derive(Debug, Default)]
pub(super) struct Confirms {
    active: BTreeMap<u64, Confirm>,
    /// Owner -> (its confirmed holders, until).
    holders: BTreeMap<SocketAddrV4, (Vec<SocketAddrV4>, Now)>,
}

/// Most holder lists cached (cleared when full).
const MAX_CACHED: usize = 1024;

/// The client's answer carrying record `r`.
fn resolved_reply(rid: Option<u64>, r: Record) -> Option<Frame<'static>> {
    match rid {
        Some(rid) => lookup_reply(rid, Outcome::Record(r)),
        None => Some(Frame::resolved(&r).into_owned()),
    }
}

impl Node {
    /// Whether a client's answer carrying `r` must be confirmed by its holders first.
    pub(super) fn needs_confirm(&self, r: &Record) -> bool {
        !self.cfg.authenticated && r.is_signed() && self.cfg.r > 1
    }

    /// Starts confirming `record`, the owner's answer for `client`.
    pub(super) fn start_confirm(
        &mut self,
        now: Now,
        (client, rid): (SocketAddrV4, Option<u64>),
        owner: Peer,
        record: Record,
    ) {
        if self.confirm.active.len() >= self.cfg.max_pending {
            self.counters.inc("confirm_overload");
            return;
        }
        self.counters.inc("confirm_started");
        let cid = self.rng.next_u64();
        let mut c = Confirm {
            client,
            rid,
            user: record.user.clone(),
            owner,
            votes: BTreeMap::new(),
            waiting: BTreeSet::new(),
            verifying: BTreeSet::new(),
            confirmed: Vec::new(),
            cached: false,
            deadline: now + self.cfg.lookup_timeout,
        };
        c.votes.insert(owner.addr, Some(record));
        let holders = if owner.addr == self.me {
            Some(self.replica_holders())
        } else {
            self.confirm
                .holders
                .get(&owner.addr)
                .filter(|(_, until)| *until > now)
                .map(|(h, _)| h.clone())
        };
        c.cached = holders.is_some() && owner.addr != self.me;
        self.confirm.active.insert(cid, c);
        match holders {
            Some(h) => {
                for a in h {
                    self.ask_holder(now, cid, a);
                }
                self.try_decide(cid);
            }
            None => {
                self.counters.inc("confirm_holders_asked");
                let rid = self.rng.next_u64();
                self.request(
                    now,
                    owner.addr,
                    RingFrame::GetState { rid, cookie: 0 },
                    RequestPurpose::ConfirmState { cid },
                );
            }
        }
    }

    /// Asks holder `a` what it holds (or looks in our own table).
    fn ask_holder(&mut self, now: Now, cid: u64, a: SocketAddrV4) {
        let Some(c) = self.confirm.active.get_mut(&cid) else {
            return;
        };
        if c.votes.contains_key(&a) || c.waiting.contains(&a) {
            return;
        }
        let user = c.user.clone();
        if a == self.me {
            let held = self.records.get(&user).map(|e| e.record.clone());
            c.votes.insert(a, held);
            return;
        }
        c.waiting.insert(a);
        let rid = self.rng.next_u64();
        self.request(
            now,
            a,
            RingFrame::Find {
                rid,
                cookie: 0,
                key: ring_hash(&user),
                op: FindOp::Held { user },
            },
            RequestPurpose::ConfirmHeld { cid },
        );
    }

    /// The owner's `STATE`: its first r - 1 successors hold the record. Neighbours of ours
    /// are asked at once; others after a ring lookup of their id ends at them.
    pub(super) fn confirm_state(&mut self, now: Now, cid: u64, succs: &[Peer]) {
        let Some(c) = self.confirm.active.get(&cid) else {
            return;
        };
        let owner = c.owner.addr;
        let named: Vec<Peer> = succs
            .iter()
            .filter(|p| p.addr != owner)
            .take(self.cfg.r.saturating_sub(1))
            .copied()
            .collect();
        for p in named {
            if p.addr == self.me || self.is_neighbour(p.addr) {
                if let Some(c) = self.confirm.active.get_mut(&cid) {
                    c.confirmed.push(p.addr);
                }
                self.ask_holder(now, cid, p.addr);
            } else if let Some(c) = self.confirm.active.get_mut(&cid) {
                c.verifying.insert(p.addr);
                self.start_lookup(
                    now,
                    LookupPurpose::VerifyHolder { cid, addr: p.addr },
                    p.id,
                    FindOp::Locate,
                );
            }
        }
        self.try_decide(cid);
    }

    /// A ring lookup of a named holder's id ended at `found`: a member, if it is the
    /// holder (asked now); a name the ring does not know otherwise (it holds nothing).
    pub(super) fn holder_verified(&mut self, now: Now, cid: u64, addr: SocketAddrV4, found: Peer) {
        let Some(c) = self.confirm.active.get_mut(&cid) else {
            return;
        };
        c.verifying.remove(&addr);
        if found.addr == addr {
            c.confirmed.push(addr);
            self.ask_holder(now, cid, addr);
        } else {
            self.counters.inc("confirm_fake_holder");
            c.votes.insert(addr, None);
        }
        self.try_decide(cid);
    }

    /// A holder's `FOUND` for our `HELD`.
    pub(super) fn confirm_held(&mut self, cid: u64, from: SocketAddrV4, outcome: Outcome) {
        let Some(c) = self.confirm.active.get_mut(&cid) else {
            return;
        };
        if !c.waiting.remove(&from) {
            return;
        }
        let held = match outcome {
            Outcome::Record(r) if r.user == c.user && self.verifier.verify(&r) => Some(r),
            _ => None,
        };
        c.votes.insert(from, held);
        self.try_decide(cid);
    }

    /// A holder (or the owner, for its `STATE`) never answered.
    pub(super) fn confirm_silent(&mut self, cid: u64, from: SocketAddrV4) {
        let Some(c) = self.confirm.active.get_mut(&cid) else {
            return;
        };
        c.waiting.remove(&from);
        if c.cached {
            self.confirm.holders.remove(&c.owner.addr);
        }
        self.try_decide(cid);
    }

    /// The owner never sent its `STATE`: no holders to confirm with, no answer.
    pub(super) fn confirm_no_state(&mut self, cid: u64) {
        if self.confirm.active.remove(&cid).is_some() {
            self.counters.inc("confirm_failed");
        }
    }

    /// Decides once every holder answered, was found fake or fell silent.
    /// Decides early, too, once one key holds a strict majority of all the holders asked
    /// or being checked: the rest cannot change the outcome (a dead holder in a cached
    /// list then costs nothing).
    fn try_decide(&mut self, cid: u64) {
        let done = self.confirm.active.get(&cid).is_some_and(|c| {
            let all = c.votes.len() + c.waiting.len() + c.verifying.len();
            let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
            for r in c.votes.values().flatten() {
                *tally.entry(r.pubkey_b64.as_str()).or_default() += 1;
            }
            let settled = tally.values().any(|n| n * 2 > all);
            (c.waiting.is_empty() && c.verifying.is_empty()) || settled
        });
        if done {
            if let Some(c) = self.confirm.active.remove(&cid) {
                self.decide(c);
            }
        }
    }

    /// Answers the client with the key a strict majority of the answers agree on, at its
    /// newest version; no answer without one.
    fn decide(&mut self, c: Confirm) {
        if !c.cached && c.owner.addr != self.me && !c.confirmed.is_empty() && c.verifying.is_empty()
        {
            if self.confirm.holders.len() >= MAX_CACHED {
                self.confirm.holders.clear();
            }
            let until = c.deadline + self.cfg.lease;
            self.confirm
                .holders
                .insert(c.owner.addr, (c.confirmed.clone(), until));
        }
        // Holders that hold nothing (new replicas, names the ring does not know) do not
        // vote; of the records, a strict majority must agree on the key.
        let records: Vec<Record> = c.votes.into_values().flatten().collect();
        let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &records {
            *tally.entry(r.pubkey_b64.as_str()).or_default() += 1;
        }
        let best = tally
            .iter()
            .max_by_key(|(_, n)| **n)
            .filter(|(_, n)| **n * 2 > records.len())
            .map(|(k, _)| (*k).to_owned());
        let winner = best.and_then(|key| {
            records
                .iter()
                .filter(|r| r.pubkey_b64 == key)
                .max_by_key(|r| r.version)
                .cloned()
        });
        let Some(r) = winner else {
            // The holders disagree with no majority: no answer we can vouch for.
            self.counters.inc("confirm_failed");
            return;
        };
        self.counters.inc("confirm_done");
        if let Some(f) = resolved_reply(c.rid, r) {
            self.send(c.client, f);
        }
    }

    /// Gives up confirmations past their deadline (a lookup that never finished).
    pub(super) fn confirm_housekeeping(&mut self, now: Now) {
        let late: Vec<u64> = self
            .confirm
            .active
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for cid in late {
            if let Some(mut c) = self.confirm.active.remove(&cid) {
                c.verifying.clear();
                c.waiting.clear();
                self.decide(c);
            }
        }
        self.confirm.holders.retain(|_, (_, until)| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use flock_proto::{Frame, OkReply, Record};

    use crate::node::testing::{counter_total, ms, ring_with_users};
    use crate::sim::Sim;
    use crate::{Config, FakeVerifier};

    /// The owner of `user` among nodes `0..n`.
    fn owner_of(sim: &Sim, n: usize, user: &str) -> SocketAddrV4 {
        (0..n)
            .map(Sim::addr)
            .find(|&a| {
                sim.node(a)
                    .is_some_and(|x| x.records().any(|(r, own)| own && r.user == user))
            })
            .expect("an owner")
    }

    /// The owner lies: its table holds a forged record (validly signed by another key, a
    /// higher version). Through every other node, the lookup still answers the real key.
    fn lying_owner(authenticated: bool) -> Vec<Option<Frame<'static>>> {
        let mut sim = ring_with_users(64, 6, 10);
        if authenticated {
            for i in 0..6 {
                if let Some(n) = sim.node_mut(Sim::addr(i)) {
                    n.cfg.authenticated = true;
                }
            }
        }
        let real = sim.acked().get("user3").cloned().expect("user3");
        let owner = owner_of(&sim, 6, "user3");
        let mut forged: Record = real.clone();
        forged.pubkey_b64 = "EVILuser3".into();
        forged.version += 7;
        forged.ip = std::net::Ipv4Addr::new(6, 6, 6, 6);
        forged.sig_b64 = FakeVerifier::sign(&forged);
        let e = sim
            .node_mut(owner)
            .and_then(|n| n.records.get_mut("user3"))
            .expect("held");
        e.record = forged;
        let asks: Vec<SocketAddrV4> = (0..6)
            .map(Sim::addr)
            .filter(|&a| a != owner)
            .map(|a| sim.resolve(a, "user3"))
            .collect();
        sim.run_for(ms(2000)).expect("runs");
        asks.into_iter()
            .map(|c| sim.replies(c).first().cloned())
            .collect()
    }

    #[test]
    fn one_lying_owner_cannot_replace_a_pinned_name_in_an_open_ring() {
        let real = Sim::make_record("user3", 1);
        for got in lying_owner(false) {
            match got {
                Some(Frame::Ok(OkReply::Resolved { ip, port, .. })) => {
                    assert_eq!((ip, port), (real.ip, real.port));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn with_a_cluster_key_the_owners_word_suffices() {
        // Members are trusted: no confirmation round, the owner's (here forged) answer.
        for got in lying_owner(true) {
            match got {
                Some(Frame::Ok(OkReply::Resolved { ip, .. })) => {
                    assert_eq!(ip, std::net::Ipv4Addr::new(6, 6, 6, 6));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn confirmed_lookups_still_answer_every_user_and_cache_the_holders() {
        let mut sim = ring_with_users(65, 7, 20);
        sim.check_records(None, ms(2000)).expect("every record");
        sim.check_records(None, ms(2000))
            .expect("every record, again");
        let all: Vec<usize> = (0..7).collect();
        let started = counter_total(&sim, &all, "confirm_started");
        assert!(started >= 2 * 7 * 20, "{started}");
        assert_eq!(counter_total(&sim, &all, "confirm_failed"), 0);
        assert_eq!(Config::default().r, 4);
    }
}
