//! Records and replication: registrations at the owner, the replica writes that commit
//! them, records applied from peers, and anti-entropy (`SYNC` digests, leases).
//!
//! Every record comes in through the same owner rules ([`verify::check`]), whoever sent
//! it, so nothing unauthenticated overwrites anything. Each change comes out as a
//! [`StoreOp`] before the frames that depend on it.

use std::net::SocketAddrV4;

use flock_proto::ring::{FindError, Outcome, RingFrame};
use flock_proto::space::in_inclusive;
use flock_proto::{Frame, Record, ring_hash};
use rand_core::Rng;

use super::requests::RequestPurpose;
use super::routing::client_error;
use super::transfer::{IncomingTransfer, TransferPurpose, chunk_records};
use super::{Node, Phase};
use crate::api::Now;
use crate::verify::{self, Apply, fnv64};
use crate::{StoreOp, Table};

/// One stored record with bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) hash: u64,
    pub(super) record: Record,
    pub(super) table: Table,
    /// Last time a write or an owner's push touched it (for replica leases).
    pub(super) touched: Now,
    /// The record's contribution to range digests.
    pub(super) fp: u64,
}

impl Entry {
    /// A fresh entry for `record`, stored in `table` at `now`.
    pub(super) fn new(record: Record, table: Table, now: Now) -> Self {
        Self {
            hash: ring_hash(&record.user),
            fp: fingerprint(&record),
            record,
            table,
            touched: now,
        }
    }
}

/// A replica lease: `owner` said at `SYNC` time that we replicate `[lo, hi]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    lo: u64,
    hi: u64,
    pub(super) until: Now,
}

/// An owner waiting for replica acknowledgements before answering a registration.
#[derive(Debug, Clone)]
pub(super) struct Commit {
    waiting: u32,
    reply: RegisterReplyTo,
}

/// Where a registration's `OK` goes once replicated.
#[derive(Debug, Clone)]
pub(super) enum RegisterReplyTo {
    /// A FIND from a peer.
    Peer { to: SocketAddrV4, rid: u64 },
    /// A client of ours (the key was ours).
    Client { to: SocketAddrV4, record: Record },
}

/// A record's contribution to the order-independent digest of a range.
fn fingerprint(r: &Record) -> u64 {
    let text = format!("{}|{}|{}|{}|{}", r.user, r.ip, r.port, r.version, r.sig_b64);
    fnv64(text.as_bytes())
}

impl Node {
    /// The owner stores a registration, replicates it, then answers.
    pub(super) fn register_local(
        &mut self,
        now: Now,
        record: Record,
        reply: Option<RegisterReplyTo>,
    ) {
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
                let targets: Vec<SocketAddrV4> = self.replica_holders();
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
                        reply: reply.unwrap_or(RegisterReplyTo::Peer {
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
                        RequestPurpose::Replicate { commit: Some(cid) },
                    );
                }
            }
        }
    }

    pub(super) fn commit_progress(&mut self, commit: Option<u64>) {
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

    pub(super) fn answer_register(
        &mut self,
        reply: Option<RegisterReplyTo>,
        res: Result<(), FindError>,
    ) {
        match reply {
            None => {}
            Some(RegisterReplyTo::Peer { to, rid }) => {
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
            Some(RegisterReplyTo::Client { to, record }) => {
                self.counters.inc("lookups_done");
                let f = match res {
                    Ok(()) => Frame::registered(record.user, record.ip, record.port),
                    Err(e) => client_error(e),
                };
                self.send(to, f);
            }
        }
    }

    /// Applies a record that came from a peer (replication, transfer): same rules as a
    /// client's registration, so nothing unauthenticated overwrites anything.
    pub(super) fn apply_record(&mut self, now: Now, r: Record, from: Option<SocketAddrV4>) -> bool {
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

    pub(super) fn put(&mut self, now: Now, r: Record, owner_hint: Option<SocketAddrV4>) {
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

    pub(super) fn table_for(&self, hash: u64, owner_hint: Option<SocketAddrV4>) -> Table {
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
    pub(super) fn reclassify(&mut self, _now: Now, new_owner: Option<SocketAddrV4>) {
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
    pub(super) fn digest(&self, lo: u64, hi: u64) -> (u64, u64) {
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

    pub(super) fn sync_replicas(&mut self, now: Now) {
        if !self.is_member() || self.takeover.is_some() {
            return;
        }
        let targets: Vec<SocketAddrV4> = self.replica_holders();
        for a in targets {
            if !self.sync_due(now, a) {
                continue;
            }
            self.sync_one(now, a);
        }
    }

    pub(super) fn sync_one(&mut self, now: Now, to: SocketAddrV4) {
        if self.has_pending_purpose(to, &RequestPurpose::Sync) {
            return;
        }
        let (lo, hi) = self.range();
        let (count, digest) = self.digest(lo, hi);
        self.pace.synced.insert(to, ((lo, hi, count, digest), now));
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
            RequestPurpose::Sync,
        );
    }

    /// Whether `key` is in our range (members only).
    pub(super) fn owns(&self, key: u64) -> bool {
        let (lo, hi) = self.range();
        in_inclusive(key, lo, hi)
    }

    /// `REPLICATE rid records`: an owner's write (or a handover) for us to keep.
    pub(super) fn on_replicate(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        records: Vec<Record>,
    ) {
        if matches!(
            self.phase,
            Phase::Member | Phase::Joining { .. } | Phase::Leaving
        ) {
            // Kept only from the sender responsible for each record (`authority`).
            self.accept_pushed(now, from, records);
            self.send_ring(from, RingFrame::Ack { rid, seq: 0 });
        }
    }

    /// `SYNC rid lo hi count digest`: an owner vouches that we replicate `[lo, hi]`; we
    /// ask for a push when our digest of it differs.
    pub(super) fn on_sync(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        (lo, hi): (u64, u64),
        (count, digest): (u64, u64),
    ) {
        if !self.is_member()
            || (self.leases.len() >= self.cfg.max_pending && !self.leases.contains_key(&from))
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
        let want = self.digest(lo, hi) != (count, digest);
        if want && self.incoming.len() < self.cfg.max_pending {
            self.incoming.insert(
                (from, rid),
                IncomingTransfer::new(TransferPurpose::SyncPush, None, now),
            );
        }
        self.send_ring(from, RingFrame::Synced { rid, want });
    }

    /// `SYNCED rid want`: push our range to the replica if its digest differed.
    pub(super) fn on_synced(&mut self, now: Now, from: SocketAddrV4, rid: u64, want: bool) {
        let Some(p) = self.take_pending((from, rid, 0)) else {
            self.counters.inc("drop_unmatched");
            return;
        };
        if let RingFrame::Sync { lo, hi, .. } = p.frame {
            if want && self.is_member() {
                // Checked again next round (the push may not arrive whole).
                self.pace.synced.remove(&from);
                self.counters.inc("sync_push");
                let chunks = chunk_records(self.records_in(lo, hi));
                self.send_chunks(now, from, rid, chunks);
            }
        }
    }

    /// Copies of the records hashing into `[lo, hi]`.
    pub(super) fn records_in(&self, lo: u64, hi: u64) -> Vec<Record> {
        self.records
            .values()
            .filter(|e| in_inclusive(e.hash, lo, hi))
            .map(|e| e.record.clone())
            .collect()
    }

    /// Drops the replicas no owner vouches for any more (responsibility moved).
    pub(super) fn drop_unleased_replicas(&mut self, now: Now) {
        self.leases.retain(|_, l| l.until > now);
        let (lo, hi) = self.range();
        let mut drop = Vec::new();
        for (user, e) in &self.records {
            if in_inclusive(e.hash, lo, hi) || self.in_takeover_span(e.hash) {
                continue;
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
}

#[cfg(test)]
mod tests {
    use flock_proto::Frame;

    use crate::node::testing::{drain, founder, ms, ring};
    use crate::sim::Sim;

    #[test]
    fn a_registration_lives_on_its_owner_and_r_minus_1_successors() {
        let mut sim = ring(41, 7);
        let r = Sim::make_record("alice", 4);
        sim.register(Sim::addr(5), r.clone());
        sim.run_for(ms(1500)).expect("runs");
        let holders = (0..7)
            .filter(|&i| sim.node(Sim::addr(i)).and_then(|n| n.record("alice")) == Some(&r))
            .count();
        assert_eq!(holders, crate::Config::default().r);
        let owners = (0..7)
            .filter(|&i| {
                sim.node(Sim::addr(i))
                    .is_some_and(|n| n.records().any(|(x, owned)| owned && x.user == "alice"))
            })
            .count();
        assert_eq!(owners, 1);
    }

    #[test]
    fn the_range_digest_does_not_depend_on_arrival_order() {
        let recs: Vec<_> = (0..20)
            .map(|i| Sim::make_record(&format!("user{i}"), 1))
            .collect();
        let mut a = founder();
        let mut b = founder();
        let c = Sim::addr(30);
        for r in &recs {
            a.handle_datagram(ms(1), c, Frame::Register(r.into()));
        }
        for r in recs.iter().rev() {
            b.handle_datagram(ms(1), c, Frame::Register(r.into()));
        }
        drain(&mut a);
        drain(&mut b);
        let (sa, sb) = (a.status(), b.status());
        assert_eq!((sa.digest_records, sa.digest), (20, sb.digest));
        assert_eq!(a.digest(0, 0).0 + a.digest(1, 0).0, 20);
    }

    #[test]
    fn an_unsigned_write_cannot_replace_a_signed_record() {
        let mut n = founder();
        let c = Sim::addr(30);
        let r = Sim::make_record("alice", 2);
        n.handle_datagram(ms(1), c, Frame::Register((&r).into()));
        drain(&mut n);
        let legacy = Frame::decode(b"REGISTER alice 10.0.0.9 4000").expect("decodes");
        n.handle_datagram(ms(2), c, legacy);
        drain(&mut n);
        assert_eq!(n.record("alice"), Some(&r));
        assert_eq!(n.counters().get("register_refused"), 1);
    }
}
