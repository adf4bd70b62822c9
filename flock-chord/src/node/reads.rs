//! Reads during repair: when our first successor (the owner of a key) has missed an
//! answer, a `FIND ... RESOLVE` for its range is answered from the replicas it had (our
//! next successors), all asked at once with `FETCH key key`, with the newest copy that
//! passes the record checks. Nothing new on the wire.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::Record;
use flock_proto::ring::{FindError, Outcome, Peer, RingFrame};
use flock_proto::space::in_half_open;
use rand_core::Rng;

use super::Node;
use super::requests::RequestPurpose;
use super::transfer::{IncomingTransfer, TransferPurpose};
use crate::api::Now;
use crate::verify;

/// A read during repair: the owner of a key (our first successor) stopped answering, so
/// the record is read from the replicas it had (our next successors), all of them at once,
/// and the newest valid copy answers.
#[derive(Debug, Clone)]
pub(super) struct ReplicaRead {
    /// Who gets the answer.
    reply: ReadReply,
    user: String,
    /// Outstanding `FETCH`es (replica, rid).
    waiting: BTreeSet<(SocketAddrV4, u64)>,
    /// The newest valid copy so far.
    best: Option<Record>,
}

/// Where a [`ReplicaRead`]'s answer goes.
#[derive(Debug, Clone)]
pub(super) enum ReadReply {
    /// A `FIND` from a peer: `FOUND`.
    Peer { to: SocketAddrV4, rid: u64 },
    /// A lookup of ours.
    Lookup { lid: u64 },
}

impl Node {
    /// If `key` belongs to our first successor and it has missed an answer (a stabilize
    /// retry or a probe is out), the live replica holders of its range: our next
    /// successors, up to `r - 1` of them.
    pub(super) fn replicas_of_suspect(&self, key: u64) -> Option<Vec<SocketAddrV4>> {
        let (s0, s1) = (self.succs.first()?, self.succs.get(1)?);
        if !in_half_open(key, s0.id, s1.id) {
            return None;
        }
        let silent = self
            .pending
            .range((s0.addr, 0, 0)..=(s0.addr, u64::MAX, u32::MAX))
            .any(|(_, p)| {
                p.tries >= 2
                    && matches!(p.purpose, RequestPurpose::Stabilize | RequestPurpose::Probe)
            });
        if !silent || self.reads.len() >= self.cfg.max_pending {
            return None;
        }
        Some(
            self.succs[1..]
                .iter()
                .take(self.cfg.r.saturating_sub(1))
                .map(|p| p.addr)
                .collect(),
        )
    }

    /// Reads `user` (hashing to `key`) from every one of `holders` at once (`FETCH key
    /// key`); [`Self::read_fetch_done`] answers once all answered or gave up.
    pub(super) fn read_from_replicas(
        &mut self,
        now: Now,
        reply: ReadReply,
        key: u64,
        user: String,
        holders: Vec<SocketAddrV4>,
    ) {
        self.counters.inc("replica_reads");
        let read = self.rng.next_u64();
        let mut waiting = BTreeSet::new();
        for a in holders {
            let rid = self.rng.next_u64();
            self.incoming.insert(
                (a, rid),
                IncomingTransfer::new(TransferPurpose::Read { read }, None, now),
            );
            waiting.insert((a, rid));
            self.request(
                now,
                a,
                RingFrame::Fetch {
                    rid,
                    cookie: 0,
                    lo: key,
                    hi: key,
                },
                RequestPurpose::ReadFetch { read },
            );
        }
        self.reads.insert(
            read,
            ReplicaRead {
                reply,
                user,
                waiting,
                best: None,
            },
        );
        if self.reads.get(&read).is_some_and(|r| r.waiting.is_empty()) {
            self.read_finish(read);
        }
    }

    /// Copies that arrived for a read: the newest one that passes the record checks on
    /// its own (valid payload and signature) is kept.
    pub(super) fn read_copies(&mut self, read: u64, records: Vec<Record>) {
        let Some(r) = self.reads.get(&read) else {
            return;
        };
        let mut best = r.best.clone();
        for rec in records {
            if rec.user != r.user
                || verify::check(None, &rec, self.verifier.as_ref()) != Ok(verify::Apply::Store)
            {
                continue;
            }
            if best.as_ref().is_none_or(|b| b.version < rec.version) {
                best = Some(rec);
            }
        }
        if let Some(r) = self.reads.get_mut(&read) {
            r.best = best;
        }
    }

    /// One replica of a read answered in full or gave up.
    pub(super) fn read_fetch_done(&mut self, read: u64, key: (SocketAddrV4, u64)) {
        let done = match self.reads.get_mut(&read) {
            Some(r) => {
                r.waiting.remove(&key);
                r.waiting.is_empty()
            }
            None => false,
        };
        if done {
            self.read_finish(read);
        }
    }

    /// Answers a read with the newest copy (none: `NOTFOUND`, as the owner would).
    fn read_finish(&mut self, read: u64) {
        let Some(r) = self.reads.remove(&read) else {
            return;
        };
        let outcome = match r.best {
            Some(rec) => Outcome::Record(rec),
            None => Outcome::Error(FindError::NotFound),
        };
        match r.reply {
            ReadReply::Peer { to, rid } => self.send_ring(
                to,
                RingFrame::Found {
                    rid,
                    id: self.id,
                    outcome,
                },
            ),
            ReadReply::Lookup { lid } => {
                let me = Peer {
                    id: self.id,
                    addr: self.me,
                };
                if let Some(l) = self.lookups.remove(&lid) {
                    self.lookup_finish(Duration::ZERO, l, me, outcome);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use flock_proto::{Frame, OkReply};

    use crate::node::testing::ms;
    use crate::sim::Sim;

    #[test]
    fn reads_while_the_owner_is_silent_come_from_its_replicas() {
        use crate::node::testing::{counter_total, ring_with_users};
        let mut sim = ring_with_users(61, 6, 40);
        for i in 0..10 {
            sim.register(Sim::addr(i % 6), Sim::make_record(&format!("user{i}"), 2));
        }
        sim.run_for(ms(2000)).expect("runs");
        // The owner of user0 (and of the users that hash near it) dies.
        let h = flock_proto::ring_hash("user0");
        let victim = (0..6)
            .find(|&i| {
                let (lo, hi) = sim.node(Sim::addr(i)).expect("node").range();
                flock_proto::space::in_inclusive(h, lo, hi)
            })
            .expect("an owner");
        sim.crash(Sim::addr(victim));
        let live: Vec<usize> = (0..6).filter(|&i| i != victim).collect();
        let acked: Vec<(String, u64)> = sim
            .acked()
            .iter()
            .map(|(u, r)| (u.clone(), r.version))
            .collect();
        // Every 100 ms for 2 s after the crash, every user through every survivor.
        let mut asks = Vec::new();
        for _ in 0..20 {
            for &v in &live {
                for (u, ver) in &acked {
                    asks.push((sim.now, sim.resolve(Sim::addr(v), u), u.clone(), *ver));
                }
            }
            sim.run_for(ms(100)).expect("runs");
        }
        sim.run_for(ms(1000)).expect("runs");
        for (at, c, u, ver) in asks {
            match sim.replies(c).first() {
                Some(Frame::Ok(OkReply::Resolved { version, .. })) if *version >= ver => {}
                other => panic!("RESOLVE {u} at {at:?}: {other:?}, want version {ver}"),
            }
        }
        assert!(counter_total(&sim, &live, "replica_reads") > 0);
    }
}
