//! Handover and transfer: chunked record transfers (`RECORDS` with per-chunk `ACK`),
//! incoming transfers, and the takeover of a range that grew.
//!
//! A transfer is a sequence of `RECORDS rid seq total` chunks, each small enough for one
//! datagram ([`chunk_records`]) and acknowledged on its own. When our range grows (a
//! successor died or left) the new part is fetched from the replicas ([`Takeover`]) and
//! lookups for it wait; when it shrinks (a node joined before us) the part we gave up
//! goes to its new owner.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::Record;
use flock_proto::ring::{self, RingFrame};
use flock_proto::space::{MODULUS, dist, in_half_open};
use rand_core::Rng;

use super::Node;
use super::Phase;
use super::requests::{Pending, RequestPurpose};
use crate::api::{Event, Now};

/// How long an incomplete incoming transfer is kept.
pub(super) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an incoming transfer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TransferPurpose {
    /// The records that come with our `WELCOME`.
    Welcome,
    /// Records of a range we took over, from a replica.
    Fetch,
    /// An owner's push after our `SYNC` digest differed.
    SyncPush,
    /// The copies of one record, for the read `read` (see `routing`).
    Read { read: u64 },
    /// The records of a successor that is leaving.
    Leave,
}

/// Chunks of one incoming transfer, keyed by (sender, rid) in `Node::incoming`.
#[derive(Debug, Clone)]
pub(super) struct IncomingTransfer {
    pub(super) purpose: TransferPurpose,
    total: Option<u32>,
    pub(super) chunks: BTreeMap<u32, Vec<Record>>,
    deadline: Now,
}

impl IncomingTransfer {
    /// A transfer of `total` chunks (unknown: `None`) expected from now on.
    pub(super) fn new(purpose: TransferPurpose, total: Option<u32>, now: Now) -> Self {
        Self {
            purpose,
            total,
            chunks: BTreeMap::new(),
            deadline: now + TRANSFER_TIMEOUT,
        }
    }
}

/// A range we grew into and are fetching from the replicas.
#[derive(Debug, Clone)]
pub(super) struct Takeover {
    lo: u64,
    /// Exclusive end.
    end: u64,
    fetches: BTreeSet<(SocketAddrV4, u64)>,
    received: usize,
    /// FINDs waiting for the range (from, frame).
    pub(super) queued: Vec<(SocketAddrV4, RingFrame)>,
}

/// Splits records into chunks that fit one datagram.
pub(super) fn chunk_records(recs: Vec<Record>) -> Vec<Vec<Record>> {
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

impl Node {
    /// Our range went from `old` to `new` (inclusive bounds; `id` is fixed, so only the end
    /// moves). Growth is taken over from the replicas; shrinkage is handed to the new owner.
    pub(super) fn on_range_change(&mut self, now: Now, old: (u64, u64), new: (u64, u64)) {
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
                    IncomingTransfer::new(TransferPurpose::Fetch, None, now),
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
                    RequestPurpose::Fetch,
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
                    self.hand_to_owner(now, r);
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
                            RequestPurpose::Replicate { commit: None },
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
                    self.settle_takeover(now);
                }
                for (from, f) in q {
                    self.on_ring_requeued(now, from, f);
                }
            }
        }
        self.reclassify(now, self.succs.first().map(|p| p.addr));
    }

    pub(super) fn on_ring_requeued(&mut self, now: Now, from: SocketAddrV4, f: RingFrame) {
        if let RingFrame::Find { rid, key, op, .. } = f {
            self.on_find(now, from, rid, key, op);
        }
    }

    pub(super) fn fetch_finished(&mut self, now: Now, key: (SocketAddrV4, u64)) {
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

    pub(super) fn finish_takeover(&mut self, now: Now) {
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
        self.settle_takeover(now);
        self.reclassify(now, None);
        for (from, f) in t.queued {
            self.on_ring_requeued(now, from, f);
        }
        // Our (bigger) range goes to our replica holders now.
        self.sync_replicas(now);
    }

    /// Sends `chunks` as `RECORDS rid seq total` with per-chunk acknowledgement.
    pub(super) fn send_chunks(
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
                purpose: RequestPurpose::Chunk { xfer },
                tries: 1,
                deadline: now + self.cfg.rto * 2,
            };
            if let Some(old) = self.pending.remove(&key) {
                self.deadlines.remove(&(old.deadline, key));
                // A repeated request restarts its transfer: the old one is superseded.
                if let RequestPurpose::Chunk { xfer: ox } = old.purpose {
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

    pub(super) fn chunk_done(&mut self, now: Now, xfer: u64) {
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

    pub(super) fn on_records(
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
            || inc.total.is_some_and(|t| t != total) && inc.purpose != TransferPurpose::Leave
        {
            self.counters.inc("drop_bad_chunk");
            return;
        }
        inc.total = Some(total);
        let purpose = inc.purpose.clone();
        let fresh = !inc.chunks.contains_key(&seq);
        // A FETCH is answered by its first chunk (a JOIN only by its WELCOME).
        if matches!(
            purpose,
            TransferPurpose::Fetch | TransferPurpose::Read { .. }
        ) {
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
            TransferPurpose::Welcome => {
                if let Some(inc) = self.incoming.get_mut(&key) {
                    inc.chunks.insert(seq, records);
                }
            }
            TransferPurpose::Read { read } => {
                self.read_copies(read, records);
                if let Some(inc) = self.incoming.get_mut(&key) {
                    inc.chunks.insert(seq, Vec::new());
                }
            }
            _ => {
                let n = records.len();
                self.accept_transferred(now, from, &purpose, records);
                if let Some(t) = &mut self.takeover {
                    if purpose == TransferPurpose::Fetch || purpose == TransferPurpose::Leave {
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

    pub(super) fn try_complete_incoming(&mut self, now: Now, key: (SocketAddrV4, u64)) {
        let complete = match self.incoming.get(&key) {
            Some(inc) => inc.total.is_some_and(|t| inc.chunks.len() as u32 >= t),
            None => false,
        };
        let Some(purpose) = self.incoming.get(&key).map(|i| i.purpose.clone()) else {
            return;
        };
        match purpose {
            TransferPurpose::Welcome => {
                if complete && self.welcome.is_some() {
                    let inc = self.incoming.remove(&key);
                    self.complete_join(now, inc.map(|i| i.chunks).unwrap_or_default());
                }
            }
            TransferPurpose::Fetch => {
                if complete {
                    self.incoming.remove(&key);
                    self.fetch_finished(now, key);
                }
            }
            TransferPurpose::SyncPush => {
                if complete {
                    self.incoming.remove(&key);
                    self.counters.inc("sync_pulled");
                }
            }
            TransferPurpose::Leave => {
                if complete {
                    self.incoming.remove(&key);
                    self.counters.inc("leave_received");
                }
            }
            TransferPurpose::Read { read } => {
                if complete {
                    self.incoming.remove(&key);
                    self.read_fetch_done(read, key);
                }
            }
        }
    }

    pub(super) fn in_takeover(&self, key: u64) -> bool {
        self.takeover
            .as_ref()
            .is_some_and(|t| in_half_open(key, t.lo, t.end) && t.lo != t.end)
    }

    /// Whether `hash` lies in the part of our range still being taken over (including an
    /// empty remainder, which [`Node::in_takeover`] does not count).
    pub(super) fn in_takeover_span(&self, hash: u64) -> bool {
        self.takeover
            .as_ref()
            .is_some_and(|t| in_half_open(hash, t.lo, t.end))
    }

    /// `FETCH rid lo hi`: a node that took over `[lo, hi]` wants our copies.
    pub(super) fn on_fetch(&mut self, now: Now, from: SocketAddrV4, rid: u64, lo: u64, hi: u64) {
        if !matches!(self.phase, Phase::Member | Phase::Leaving) {
            return;
        }
        if self.outgoing.len() >= self.cfg.max_pending {
            self.counters.inc("fetch_overload");
            return;
        }
        let chunks = chunk_records(self.records_in(lo, hi));
        // Bounded work per source: its quota of the pending table, never the reserve.
        if !self.room_for_peer(from, chunks.len().max(1)) {
            return;
        }
        self.send_chunks(now, from, rid, chunks);
    }

    /// Drops incoming transfers that never completed.
    pub(super) fn drop_stale_transfers(&mut self, now: Now) {
        let stale: Vec<_> = self
            .incoming
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(inc) = self.incoming.remove(&k) {
                self.counters.inc("transfer_abandoned");
                if inc.purpose == TransferPurpose::Fetch {
                    self.fetch_finished(now, k);
                }
                if inc.purpose == TransferPurpose::Welcome {
                    self.join_failed(now);
                }
                if let TransferPurpose::Read { read } = inc.purpose {
                    self.read_fetch_done(read, k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use flock_proto::ring;

    use super::chunk_records;
    use crate::node::testing::{counter_total, ms, ring_with_users};
    use crate::sim::Sim;

    #[test]
    fn chunks_fit_one_datagram_and_keep_every_record() {
        let recs: Vec<_> = (0..3000)
            .map(|i| Sim::make_record(&format!("user{i}"), i + 1))
            .collect();
        let chunks = chunk_records(recs.clone());
        assert!(chunks.len() > 1);
        for c in &chunks {
            let size: usize = c.iter().map(ring::record_encoded_len).sum();
            assert!(size <= ring::CHUNK_BUDGET || c.len() == 1, "{size}");
        }
        assert_eq!(chunks.concat(), recs);
        assert!(chunk_records(Vec::new()).is_empty());
    }

    #[test]
    fn a_fetch_flood_gets_its_quota_and_never_the_reserve() {
        use crate::node::requests::{PEER_SHARE, RESERVED_SHARE};
        use crate::node::testing::{drain, founder};
        use flock_proto::Frame;
        let mut n = founder();
        let max = n.config().max_pending;
        let fetch = |n: &crate::Node, from, rid| {
            Frame::Ring(ring::RingFrame::Fetch {
                rid,
                cookie: n.cookie_for(from),
                lo: 0,
                hi: 1_000_000_000_000_000_002,
            })
        };
        // One source asking again and again: its share, no more.
        let evil = Sim::addr(9);
        for rid in 0..5_000 {
            let f = fetch(&n, evil, rid);
            n.handle_datagram(ms(1), evil, f);
        }
        drain(&mut n);
        let to_evil = n.pending.keys().filter(|k| k.0 == evil).count();
        assert_eq!(to_evil, max / PEER_SHARE);
        assert!(n.counters().get("peer_quota") > 0);
        // Many sources: together they never take the reserve.
        for src in 10..200usize {
            let from = Sim::addr(src);
            for rid in 0..300 {
                let f = fetch(&n, from, rid);
                n.handle_datagram(ms(2), from, f);
            }
        }
        drain(&mut n);
        assert!(n.pending.len() <= max / 2 && max / 2 < max - max / RESERVED_SHARE);
        assert!(n.counters().get("pending_reserved") > 0);
    }

    #[test]
    fn a_dead_owners_range_is_taken_over_with_its_records() {
        let mut sim = ring_with_users(51, 5, 30);
        sim.crash(Sim::addr(2));
        sim.run_until_ideal(std::time::Duration::from_secs(20), ms(200))
            .expect("repaired");
        let took = counter_total(&sim, &[0, 1, 3, 4], "takeover_done");
        assert!(took > 0);
        let live = vec![Sim::addr(0), Sim::addr(1), Sim::addr(3), Sim::addr(4)];
        sim.check_records(Some(live), ms(2000))
            .expect("every record resolves");
    }
}
