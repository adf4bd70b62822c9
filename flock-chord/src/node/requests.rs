//! Pending requests and address-validation cookies.
//!
//! Every ring request a node sends is remembered under its [`RequestKey`] with a
//! [`RequestPurpose`] (what to do with the answer or the failure) until it is answered or
//! given up; retransmission and failure detection live here. A request must carry the
//! cookie its receiver issued to the sender's address ([`Node::cookie_for`]); a request
//! without it is answered with `COOKIE` and resent by its sender ([`Node::on_cookie`]).

use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{Peer, RingFrame};
use rand_core::Rng;

use super::{BUSY_RETRY, MAX_COOKIES, Node, Phase};
use crate::api::Now;

/// Why we sent a request (what to do with the answer or the failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RequestPurpose {
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
    /// Asking a node a ring lookup confirmed as an owner for its successor list: it may
    /// replicate to us only if we are among its first r - 1 (`authority`).
    OwnerState,
    /// Asking our predecessor for its predecessor: an owner two back that pushed records
    /// to us is confirmed in one round trip, without a ring lookup (`authority`).
    OwnerViaPred {
        owner: SocketAddrV4,
    },
    /// A self-addressed entry: the owner check of `owner` runs again when it times out
    /// (its lookup found nothing while the ring was being repaired; `authority`).
    OwnerRecheck {
        owner: SocketAddrV4,
    },
    /// Challenging a node that claims to precede us while we are alone (`membership`).
    LoneClaim {
        candidate: Peer,
    },
    /// Asking a record's owner for its successors, the holders that confirm its answer.
    ConfirmState {
        cid: u64,
    },
    /// Asking a holder which record it holds (`confirm`).
    ConfirmHeld {
        cid: u64,
    },
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
    /// Is a successor after a silent first successor alive? (Declared dead if not.)
    Probe,
    /// Is a finger we refer lookups to alive? (Dropped if not.)
    FingerCheck,
    /// A replica's copy of one record, for the read `read` (reads during repair).
    ReadFetch {
        read: u64,
    },
}

/// An outstanding request: the frame (resent on timeout), why, tries so far, and when it
/// times out next.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) frame: RingFrame,
    pub(super) purpose: RequestPurpose,
    pub(super) tries: u32,
    pub(super) deadline: Now,
}

/// One peer may keep at most `max_pending / PEER_SHARE` entries of the pending table busy
/// with work it caused (the chunks of a transfer it asked for).
pub(super) const PEER_SHARE: usize = 16;

/// Work caused by others may fill at most `max_pending - max_pending / RESERVED_SHARE`
/// (lookups for clients) or half of it (transfers others asked for): the rest is reserved
/// for the node's own requests (stabilize, rectify, takeover fetches, replication, leave)
/// and, for transfers, for the lookups.
pub(super) const RESERVED_SHARE: usize = 4;

/// Liveness checks retry at `rto / LIVENESS_RTO_DIV` (see [`Node::rto_for`]).
const LIVENESS_RTO_DIV: u32 = 2;

/// Key of an outstanding request: (peer, rid, chunk seq). `seq` is 0 for the request
/// itself and `k + 1` for chunk `k` of a transfer.
pub(super) type RequestKey = (SocketAddrV4, u64, u32);

impl Node {
    /// Sends a request and remembers it until answered or given up.
    pub(super) fn request(
        &mut self,
        now: Now,
        to: SocketAddrV4,
        mut frame: RingFrame,
        purpose: RequestPurpose,
    ) {
        let cap = match purpose {
            RequestPurpose::Lookup { .. } => self.remote_cap(),
            _ => self.cfg.max_pending,
        };
        if self.pending.len() >= cap {
            self.counters.inc("pending_overload");
            return;
        }
        frame.set_cookie(self.cookies.get(&to).copied().unwrap_or(0));
        let key = (to, frame.rid(), 0);
        self.send_ring(to, frame.clone());
        let p = Pending {
            frame,
            deadline: now + self.rto_for(&purpose, to),
            purpose,
            tries: 1,
        };
        if let Some(old) = self.pending.remove(&key) {
            self.deadlines.remove(&(old.deadline, key));
        }
        self.deadlines.insert((p.deadline, key));
        self.pending.insert(key, p);
    }

    /// Retransmission timeout of a request: liveness checks of neighbours known to be
    /// members (tiny frames, answered at once) retry at half the configured timeout, so
    /// a dead neighbour is found in `dead_after` half-timeouts; everything else, and a
    /// node that never answered as a member (a joiner still receiving its records does
    /// not answer yet), at the configured one.
    fn rto_for(&self, purpose: &RequestPurpose, to: SocketAddrV4) -> Duration {
        match purpose {
            RequestPurpose::Stabilize
            | RequestPurpose::Probe
            | RequestPurpose::FingerCheck
            | RequestPurpose::PingPred
            | RequestPurpose::PredCheck { .. }
                if self.pace.seen.contains(&to) =>
            {
                self.cfg.rto / LIVENESS_RTO_DIV
            }
            _ => self.cfg.rto,
        }
    }

    /// Sends the request `make(rid)` to `to` for `purpose`, unless one for the same
    /// purpose is already outstanding there.
    pub(super) fn request_once(
        &mut self,
        now: Now,
        to: SocketAddrV4,
        purpose: RequestPurpose,
        make: impl FnOnce(u64) -> RingFrame,
    ) {
        if self.has_pending_purpose(to, &purpose) {
            return;
        }
        let rid = self.rng.next_u64();
        self.request(now, to, make(rid), purpose);
    }

    /// How much of the pending table work caused by others may fill.
    fn remote_cap(&self) -> usize {
        self.cfg.max_pending - self.cfg.max_pending / RESERVED_SHARE
    }

    /// Whether `n` more pending entries for work `to` asked for fit its quota and leave
    /// the reserve free; counts the refusal if not.
    pub(super) fn room_for_peer(&mut self, to: SocketAddrV4, n: usize) -> bool {
        let peer_cap = (self.cfg.max_pending / PEER_SHARE).max(1);
        let to_peer = self
            .pending
            .range((to, 0, 0)..=(to, u64::MAX, u32::MAX))
            .count();
        if self.pending.len() + n > self.cfg.max_pending / 2 {
            self.counters.inc("pending_reserved");
            false
        } else if to_peer + n > peer_cap {
            self.counters.inc("peer_quota");
            false
        } else {
            true
        }
    }

    /// Whether a ring request carries the cookie this node issued to `from` (replies
    /// carry none and pass). A request that does not is answered with the cookie and
    /// nothing else, so a driver checks this before expensive work on the frame's behalf
    /// (verifying its signatures).
    pub fn cookie_valid(&self, from: SocketAddrV4, frame: &RingFrame) -> bool {
        match frame.cookie() {
            Some(c) => self.cfg.authenticated || c == self.cookie_for(from),
            None => true,
        }
    }

    pub(super) fn take_pending(&mut self, key: RequestKey) -> Option<Pending> {
        let p = self.pending.remove(&key)?;
        self.deadlines.remove(&(p.deadline, key));
        Some(p)
    }

    pub(super) fn has_pending_purpose(&self, to: SocketAddrV4, purpose: &RequestPurpose) -> bool {
        self.pending
            .range((to, 0, 0)..=(to, u64::MAX, u32::MAX))
            .any(|(_, p)| &p.purpose == purpose)
    }

    pub(super) fn has_pending_to(&self, to: SocketAddrV4) -> bool {
        self.pending
            .range((to, 0, 0)..=(to, u64::MAX, u32::MAX))
            .any(|(_, p)| {
                matches!(
                    p.purpose,
                    RequestPurpose::PredCheck { .. } | RequestPurpose::PingPred
                )
            })
    }

    /// Runs `purpose`'s deferred step `after` from now: a self-addressed pending entry
    /// whose timeout is the step (see [`Node::on_request_timeout`]).
    pub(super) fn defer(&mut self, now: Now, purpose: RequestPurpose, after: Duration) {
        let rid = self.rng.next_u64();
        let key = (self.me, rid, 0);
        let p = Pending {
            frame: RingFrame::Busy { rid },
            purpose,
            tries: 0,
            deadline: now + after,
        };
        self.deadlines.insert((p.deadline, key));
        self.pending.insert(key, p);
    }

    pub(super) fn on_request_timeout(&mut self, now: Now, key: RequestKey) {
        let Some(mut p) = self.pending.remove(&key) else {
            return;
        };
        let to = key.0;
        if to == self.me {
            // A deferred step.
            match p.purpose {
                RequestPurpose::Lookup { lid } => self.lookup_step(now, lid),
                RequestPurpose::OwnerRecheck { owner } => self.owner_check_by_lookup(now, owner),
                _ => {}
            }
            return;
        }
        let max_tries = match p.purpose {
            RequestPurpose::Chunk { .. } | RequestPurpose::Leave => self.cfg.dead_after * 3,
            RequestPurpose::Lookup { .. } => 2,
            // Fast checks try once more: a dead member is declared after
            // `(dead_after + 1) * rto / 2`, past a partition of `dead_after / 2` timeouts.
            _ if self.rto_for(&p.purpose, to) < self.cfg.rto => self.cfg.dead_after + 1,
            _ => self.cfg.dead_after,
        };
        if p.tries < max_tries && self.phase != Phase::Left {
            if p.tries == 1
                && p.purpose == RequestPurpose::Stabilize
                && self.succs.first().is_some_and(|s| s.addr == to)
            {
                self.suspect_successor(now, to);
            }
            p.tries += 1;
            // Exponential-ish backoff for bulk transfers only.
            let rto = match p.purpose {
                RequestPurpose::Chunk { .. } => self.cfg.rto * 2,
                _ => self.rto_for(&p.purpose, to),
            };
            p.deadline = now + rto;
            self.send_ring(to, p.frame.clone());
            self.deadlines.insert((p.deadline, key));
            self.pending.insert(key, p);
            return;
        }
        // Given up.
        match p.purpose {
            RequestPurpose::Stabilize => self.peer_dead(now, to),
            RequestPurpose::Probe => {
                if self.succs.iter().any(|p| p.addr == to) {
                    self.peer_dead(now, to);
                }
            }
            RequestPurpose::FingerCheck => self.finger_dead(to),
            RequestPurpose::PingPred | RequestPurpose::PredCheck { .. } => {
                self.pred_gone(now, to, &p.purpose);
            }
            RequestPurpose::PredConfirm => {
                // The predecessor died before confirming: ask the ring instead.
                if self.pred.map(|p| p.addr) == Some(to) {
                    self.counters.inc("pred_dead");
                    self.set_pred(None);
                    if !self.pred_claims.is_empty() {
                        self.start_pred_lookup(now);
                    }
                }
            }
            RequestPurpose::Sync => {
                // Unanswered: sync it again next round, not only when the lease is due.
                self.pace.synced.remove(&to);
            }
            RequestPurpose::Adopt
            | RequestPurpose::Rectify
            | RequestPurpose::Fix
            | RequestPurpose::LoneClaim { .. }
            | RequestPurpose::OwnerRecheck { .. } => {}
            RequestPurpose::OwnerState => self.owner_check_abandoned(now, to),
            RequestPurpose::OwnerViaPred { owner } => self.owner_check_by_lookup(now, owner),
            RequestPurpose::ConfirmState { cid } => self.confirm_no_state(cid),
            RequestPurpose::ConfirmHeld { cid } => self.confirm_silent(cid, to),
            RequestPurpose::Join => self.join_failed(now),
            RequestPurpose::Lookup { lid } => {
                // Lazy finger repair: a finger that did not answer goes now.
                self.finger_dead(to);
                self.lookup_fail_hop(now, lid, to);
            }
            RequestPurpose::Replicate { commit } => self.commit_progress(commit),
            RequestPurpose::Fetch => {
                self.incoming.remove(&(to, key.1));
                self.fetch_finished(now, (to, key.1));
            }
            RequestPurpose::ReadFetch { read } => {
                self.incoming.remove(&(to, key.1));
                self.read_fetch_done(read, (to, key.1));
            }
            RequestPurpose::Chunk { xfer } => {
                self.counters.inc("chunk_lost");
                self.chunk_done(now, xfer);
            }
            RequestPurpose::Leave => {
                if self.leave_xfer.is_some()
                    && self
                        .pending
                        .values()
                        .all(|q| !matches!(q.purpose, RequestPurpose::Chunk { .. }))
                {
                    self.finish_leave(now);
                }
            }
        }
    }

    /// The address-validation cookie we expect from `a`: a keyed hash only we can compute.
    pub(super) fn cookie_for(&self, a: SocketAddrV4) -> u64 {
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

    pub(super) fn on_ack(&mut self, now: Now, from: SocketAddrV4, p: Pending) {
        match p.purpose {
            RequestPurpose::Replicate { commit } => self.commit_progress(commit),
            RequestPurpose::Chunk { xfer } => self.chunk_done(now, xfer),
            RequestPurpose::PingPred
            | RequestPurpose::Rectify
            | RequestPurpose::Fix
            | RequestPurpose::Probe
            | RequestPurpose::FingerCheck => {}
            RequestPurpose::PredCheck { .. } => {
                // The old predecessor lives: keep it (Zave's rectify).
                let _ = from;
            }
            RequestPurpose::Leave => {}
            _ => {}
        }
    }

    /// `COOKIE rid cookie`: the peer wants its cookie on our request; resend with it.
    pub(super) fn on_cookie(&mut self, now: Now, from: SocketAddrV4, rid: u64, cookie: u64) {
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

    /// `BUSY rid`: retry the same node shortly, without counting a failure.
    pub(super) fn on_busy(&mut self, now: Now, from: SocketAddrV4, rid: u64) {
        let key = (from, rid, 0);
        if let Some(mut p) = self.pending.remove(&key) {
            self.deadlines.remove(&(p.deadline, key));
            p.deadline = now + BUSY_RETRY;
            p.tries = p.tries.saturating_sub(1);
            self.deadlines.insert((p.deadline, key));
            self.pending.insert(key, p);
        } else {
            self.counters.inc("drop_unmatched");
        }
    }

    /// `ACK rid seq`: a request (`seq` 0) or a chunk (`seq` k+1) arrived.
    pub(super) fn on_ack_frame(&mut self, now: Now, from: SocketAddrV4, rid: u64, seq: u32) {
        let Some(p) = self.take_pending((from, rid, seq)) else {
            self.counters.inc("drop_unmatched");
            return;
        };
        self.failures.remove(&from);
        self.on_ack(now, from, p);
    }
}

#[cfg(test)]
mod tests {
    use flock_proto::Frame;
    use flock_proto::ring::RingFrame;

    use super::RequestPurpose;
    use crate::node::testing::{drain, founder, ms, sends};
    use crate::sim::Sim;

    fn pings_to(actions: &[crate::Action], to: std::net::SocketAddrV4) -> Vec<u64> {
        sends(actions)
            .into_iter()
            .filter_map(|(t, f)| match f {
                Frame::Ring(RingFrame::Ping { cookie, .. }) if t == to => Some(cookie),
                _ => None,
            })
            .collect()
    }

    fn ping(n: &mut crate::Node, now: crate::Now, peer: std::net::SocketAddrV4, rid: u64) {
        n.request(
            now,
            peer,
            RingFrame::Ping { rid, cookie: 0 },
            RequestPurpose::Fix,
        );
    }

    #[test]
    fn a_request_is_resent_until_given_up() {
        let mut n = founder();
        let peer = Sim::addr(9);
        ping(&mut n, ms(0), peer, 5);
        let mut tries = pings_to(&drain(&mut n), peer).len();
        let mut now = ms(0);
        while n.has_pending_purpose(peer, &RequestPurpose::Fix) {
            now = n.poll_timeout().expect("a deadline").max(now);
            n.handle_timeout(now);
            tries += pings_to(&drain(&mut n), peer).len();
            assert!(now < ms(60_000), "never given up");
        }
        assert_eq!(tries as u32, n.config().dead_after);
    }

    #[test]
    fn a_cookie_challenge_is_answered_by_resending_with_the_cookie() {
        let mut n = founder();
        let peer = Sim::addr(9);
        ping(&mut n, ms(0), peer, 5);
        drain(&mut n);
        n.handle_datagram(
            ms(1),
            peer,
            Frame::Ring(RingFrame::Cookie { rid: 5, cookie: 77 }),
        );
        assert_eq!(pings_to(&drain(&mut n), peer), vec![77]);
        // The next request to that peer carries the cookie from the start.
        ping(&mut n, ms(2), peer, 6);
        assert_eq!(pings_to(&drain(&mut n), peer), vec![77]);
        // An unmatched challenge is counted, not obeyed.
        n.handle_datagram(
            ms(3),
            peer,
            Frame::Ring(RingFrame::Cookie { rid: 99, cookie: 1 }),
        );
        assert!(drain(&mut n).is_empty());
        assert_eq!(n.counters().get("drop_unmatched"), 1);
    }

    #[test]
    fn a_request_needs_the_cookie_issued_to_its_source() {
        let mut n = founder();
        let peer = Sim::addr(9);
        let get = |cookie| Frame::Ring(RingFrame::GetState { rid: 3, cookie });
        n.handle_datagram(ms(1), peer, get(12345));
        let out = sends(&drain(&mut n));
        let [(to, Frame::Ring(RingFrame::Cookie { rid: 3, cookie }))] = out[..] else {
            panic!("no challenge: {out:?}")
        };
        assert_eq!(to, peer);
        assert_eq!(cookie, n.cookie_for(peer));
        assert_ne!(
            cookie,
            n.cookie_for(Sim::addr(10)),
            "cookies are per address"
        );
        n.handle_datagram(ms(2), peer, get(cookie));
        let out = sends(&drain(&mut n));
        assert!(
            matches!(out[..], [(_, Frame::Ring(RingFrame::State { rid: 3, .. }))]),
            "{out:?}"
        );
    }

    #[test]
    fn busy_postpones_without_counting_a_try() {
        let mut n = founder();
        let peer = Sim::addr(9);
        ping(&mut n, ms(0), peer, 5);
        drain(&mut n);
        for i in 0..10 {
            n.handle_datagram(ms(i), peer, Frame::Ring(RingFrame::Busy { rid: 5 }));
        }
        let p = n.pending.get(&(peer, 5, 0)).expect("still pending");
        assert_eq!(p.tries, 0);
        assert_eq!(p.deadline, ms(9) + super::BUSY_RETRY);
    }
}
