//! Lookup and routing: client requests, `FIND` / `REFER` / `FOUND`, the finger table.
//!
//! A lookup ([`Lookup`]) walks the ring iteratively from this node: each hop is a `FIND`
//! to the known node closest before the key ([`Node::closest_preceding`]), answered by a
//! `REFER` to a closer node or, by the owner, a `FOUND` with the outcome. What the
//! outcome is for is the lookup's [`LookupPurpose`].

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{FindError, FindOp, Outcome, Peer, RingFrame};
use flock_proto::space::{MODULUS, dist, strictly_between};
use flock_proto::{ErrorReply, Frame, Record, Register, ring_hash};
use rand_core::Rng;

use super::reads::ReadReply;
use super::records::RegisterReplyTo;
use super::requests::RequestPurpose;
use super::{BUSY_RETRY, Node, Phase};
use crate::api::Now;
use crate::verify;

/// Number of finger entries: `2^59 < MODULUS < 2^60`.
pub(super) const FINGERS: usize = 60;
/// A finger used for referrals is checked for liveness at most this often.
const FINGER_CHECK: Duration = Duration::from_secs(5);

/// What a lookup is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LookupPurpose {
    /// A client request, answered to `client`; `rid` for the lookup extension's
    /// `LOOKUP` (answered `FOUND`/`NOTFOUND` with the id echoed).
    Client {
        client: SocketAddrV4,
        rid: Option<u64>,
    },
    /// Finger refresh.
    Finger { index: usize },
    /// A record handed to its owner (restored, or in a range we gave up): no answer.
    Handover,
    /// Who owns the key just below our id, i.e. who really is our predecessor: confirms
    /// a claim when there is no live predecessor to ask.
    PredClaim,
    /// Whether `from`, which pushed records to us, owns them (`authority`).
    OwnerCheck { from: SocketAddrV4 },
    /// Whether `addr`, named as a holder by an owner, is the member at its id (`confirm`).
    VerifyHolder { cid: u64, addr: SocketAddrV4 },
}

/// A lookup in progress.
#[derive(Debug, Clone)]
pub(super) struct Lookup {
    pub(super) purpose: LookupPurpose,
    key: u64,
    op: FindOp,
    hops: u32,
    failed: BTreeSet<SocketAddrV4>,
    /// Live nodes that referred this lookup to a failed one (their view is stale):
    /// routed around while another route exists, asked again once none is left.
    stale: BTreeSet<SocketAddrV4>,
    pub(super) deadline: Now,
}

/// The client's `ERROR` reply for an owner's refusal.
pub(super) fn client_error(e: FindError) -> Frame<'static> {
    Frame::Error(match e {
        FindError::NotFound => ErrorReply::NotFound,
        FindError::InvalidPayload => ErrorReply::InvalidPayload,
        FindError::DifferentKey => ErrorReply::DifferentKey,
        FindError::InvalidSignature => ErrorReply::InvalidSignature,
        FindError::StaleVersion => ErrorReply::StaleVersion,
    })
}

/// The answer to `LOOKUP <user> <rid>`: the whole signed record (`FOUND`), so that the
/// client checks the signature over `user|ip|port|version|pubkey` itself, or `NOTFOUND`
/// (also for an unsigned legacy record: it has no key to give).
pub(super) fn lookup_reply(rid: u64, outcome: Outcome) -> Option<Frame<'static>> {
    match outcome {
        Outcome::Record(r) if r.is_signed() => Some(Frame::Found {
            rid,
            record: Register {
                user: r.user.into(),
                ip: r.ip,
                port: r.port,
                version: r.version,
                pubkey_b64: r.pubkey_b64.into(),
                sig_b64: r.sig_b64.into(),
            },
        }),
        Outcome::Record(_) | Outcome::Error(FindError::NotFound) => Some(Frame::NotFound { rid }),
        Outcome::Error(e) => Some(client_error(e)),
        _ => None,
    }
}

impl Node {
    pub(super) fn on_client(&mut self, now: Now, from: SocketAddrV4, frame: Frame<'static>) {
        if !self.is_member() {
            if self.early.len() < self.cfg.max_pending {
                self.early.push_back((from, frame));
            }
            return;
        }
        let mut rid = None;
        let (key, op) = match frame {
            Frame::Resolve { user } => (
                ring_hash(&user),
                FindOp::Resolve {
                    user: user.into_owned(),
                },
            ),
            Frame::Lookup { user, rid: r } => {
                rid = Some(r);
                (
                    ring_hash(&user),
                    FindOp::Resolve {
                        user: user.into_owned(),
                    },
                )
            }
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
        self.start_lookup(now, LookupPurpose::Client { client: from, rid }, key, op);
    }

    pub(super) fn start_lookup(&mut self, now: Now, purpose: LookupPurpose, key: u64, op: FindOp) {
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
                stale: BTreeSet::new(),
                deadline: now + self.cfg.lookup_timeout,
            },
        );
        self.lookup_step(now, lid);
    }

    /// Next step of a lookup from our own table: answer locally or ask the closest node.
    pub(super) fn lookup_step(&mut self, now: Now, lid: u64) {
        let Some(l) = self.lookups.get(&lid) else {
            return;
        };
        let key = l.key;
        if self.owns(key) {
            if self.in_takeover(key) {
                // Wait for the takeover: a self-addressed deferral re-runs this step.
                self.defer_lookup(now, lid);
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
                FindOp::Resolve { ref user } | FindOp::Held { ref user } => {
                    let outcome = self.resolve_local(user);
                    self.lookup_finish(now, l, me, outcome);
                }
                FindOp::Register { ref record } => {
                    let reply_to = match l.purpose {
                        LookupPurpose::Client { client, .. } => Some(RegisterReplyTo::Client {
                            to: client,
                            record: record.clone(),
                        }),
                        LookupPurpose::Finger { .. }
                        | LookupPurpose::Handover
                        | LookupPurpose::PredClaim
                        | LookupPurpose::OwnerCheck { .. }
                        | LookupPurpose::VerifyHolder { .. } => None,
                    };
                    let record = record.clone();
                    self.hops.record(l.hops);
                    self.register_local(now, record, reply_to);
                }
            }
            return;
        }
        if let (LookupPurpose::Client { .. }, FindOp::Resolve { user }) = (&l.purpose, &l.op) {
            if let Some(holders) = self.replicas_of_suspect(key) {
                let user = user.clone();
                self.read_from_replicas(now, ReadReply::Lookup { lid }, key, user, holders);
                return;
            }
        }
        let Some(l) = self.lookups.get(&lid) else {
            return;
        };
        let exclude: BTreeSet<SocketAddrV4> = l.failed.union(&l.stale).copied().collect();
        let stale = !l.stale.is_empty();
        match self.closest_preceding(key, &exclude) {
            Some(next) => self.lookup_send(now, lid, next.addr),
            None if stale => {
                // Every route left goes through a stale view: give the ring a moment to
                // notice the failure, then ask again.
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.stale.clear();
                }
                self.defer_lookup(now, lid);
            }
            None => {
                self.lookup_abandon(now, lid);
                self.counters.inc("lookup_no_route");
            }
        }
    }

    /// Re-runs [`Self::lookup_step`] after [`BUSY_RETRY`] (a self-addressed pending entry).
    fn defer_lookup(&mut self, now: Now, lid: u64) {
        self.defer(now, RequestPurpose::Lookup { lid }, BUSY_RETRY);
    }

    pub(super) fn lookup_send(&mut self, now: Now, lid: u64, to: SocketAddrV4) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        if l.hops >= self.cfg.max_hops || now >= l.deadline {
            self.lookup_abandon(now, lid);
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
        self.request(now, to, frame, RequestPurpose::Lookup { lid });
    }

    /// A hop failed (no answer, or a bad referral): try another route.
    pub(super) fn lookup_fail_hop(&mut self, now: Now, lid: u64, failed: SocketAddrV4) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        l.failed.insert(failed);
        let give_up = l.failed.len() > 16;
        if give_up {
            self.lookup_abandon(now, lid);
            self.counters.inc("lookup_failed");
            return;
        }
        self.lookup_step(now, lid);
    }

    pub(super) fn lookup_done(&mut self, now: Now, lid: u64, owner: Peer, outcome: Outcome) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        self.lookup_finish(now, l, owner, outcome);
    }

    pub(super) fn lookup_finish(&mut self, now: Now, l: Lookup, owner: Peer, outcome: Outcome) {
        match l.purpose {
            LookupPurpose::PredClaim => {
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
            LookupPurpose::Handover => {}
            LookupPurpose::VerifyHolder { cid, addr } => {
                self.holder_verified(now, cid, addr, owner);
            }
            LookupPurpose::OwnerCheck { from } => self.owner_checked(now, from, owner, &outcome),
            LookupPurpose::Finger { index } => {
                if index < FINGERS && owner.addr != self.me && matches!(outcome, Outcome::Node) {
                    // A finger found where it was: refresh the next one a little later.
                    if self.fingers[index] == Some(owner) {
                        self.pace.calm_fingers = self.pace.calm_fingers.saturating_add(1);
                    } else {
                        self.pace.calm_fingers = 0;
                    }
                    self.fingers[index] = Some(owner);
                }
            }
            LookupPurpose::Client { client, rid } => {
                self.hops.record(l.hops);
                self.counters.inc("lookups_done");
                self.counters.add("lookup_hops", u64::from(l.hops));
                if let (FindOp::Resolve { user }, Outcome::Record(r)) = (&l.op, &outcome) {
                    // The answer must be the name asked for (and verify, below).
                    if r.user != *user {
                        self.counters.inc("found_wrong_user");
                        return;
                    }
                    if self.needs_confirm(r) {
                        if !self.verifier.verify(r) {
                            self.counters.inc("bad_record_from_owner");
                            return;
                        }
                        // An open ring: the holders confirm the owner's word (`confirm`).
                        self.start_confirm(now, (client, rid), owner, r.clone());
                        return;
                    }
                }
                let reply = match (&l.op, outcome, rid) {
                    (_, outcome, Some(rid)) => {
                        if let Outcome::Record(r) = &outcome {
                            if r.is_signed() && !self.verifier.verify(r) {
                                self.counters.inc("bad_record_from_owner");
                                return;
                            }
                        }
                        match lookup_reply(rid, outcome) {
                            Some(reply) => reply,
                            None => {
                                self.counters.inc("lookup_odd_outcome");
                                return;
                            }
                        }
                    }
                    (_, Outcome::Error(e), None) => client_error(e),
                    (FindOp::Resolve { .. }, Outcome::Record(r), None) => {
                        if r.is_signed() && !self.verifier.verify(&r) {
                            self.counters.inc("bad_record_from_owner");
                            return;
                        }
                        Frame::resolved(&r).into_owned()
                    }
                    (FindOp::Register { record }, Outcome::Registered, None) => {
                        Frame::registered(record.user.clone(), record.ip, record.port)
                    }
                    _ => {
                        self.counters.inc("lookup_odd_outcome");
                        return;
                    }
                };
                self.send(client, reply);
            }
        }
    }

    pub(super) fn resolve_local(&self, user: &str) -> Outcome {
        match self.records.get(user) {
            Some(e) => Outcome::Record(e.record.clone()),
            None => Outcome::Error(FindError::NotFound),
        }
    }

    /// A FIND from a peer.
    pub(super) fn on_find(&mut self, now: Now, from: SocketAddrV4, rid: u64, key: u64, op: FindOp) {
        match self.phase {
            Phase::Member => {}
            Phase::Joining { .. } => {
                self.send_ring(from, RingFrame::Busy { rid });
                return;
            }
            _ => return,
        }
        if let FindOp::Held { user } = &op {
            // Not routed: what we hold, owned or replica (`confirm`).
            let outcome = self.resolve_local(user);
            let id = self.id;
            self.send_ring(from, RingFrame::Found { rid, id, outcome });
            return;
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
                FindOp::Resolve { user } | FindOp::Held { user } => self.resolve_local(&user),
                FindOp::Register { record } if ring_hash(&record.user) == key => {
                    self.register_local(now, record, Some(RegisterReplyTo::Peer { to: from, rid }));
                    return;
                }
                FindOp::Register { .. } => {
                    // A name we do not own, sent under a key we do: not the owner's path.
                    self.counters.inc("record_unauthorized");
                    Outcome::Error(FindError::InvalidPayload)
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
        if let FindOp::Resolve { user } = &op {
            if let Some(holders) = self.replicas_of_suspect(key) {
                let user = user.clone();
                self.read_from_replicas(now, ReadReply::Peer { to: from, rid }, key, user, holders);
                return;
            }
        }
        match self.closest_preceding(key, &BTreeSet::new()) {
            Some(p) => {
                self.send_ring(from, RingFrame::Refer { rid, peer: p });
                self.check_finger_in_use(now, p.addr);
            }
            None => self.counters.inc("find_no_route"),
        }
    }

    /// Lazy finger liveness: a finger we refer others to is pinged (at most once per
    /// [`FINGER_CHECK`]) and dropped if it does not answer, so a dead finger misleads
    /// lookups for one check, not until its next refresh. Costs nothing on an idle ring.
    fn check_finger_in_use(&mut self, now: Now, addr: SocketAddrV4) {
        if self.succs.iter().any(|p| p.addr == addr) {
            return; // checked by stabilize
        }
        let due = self
            .pace
            .fingers_checked
            .get(&addr)
            .is_none_or(|t| now.saturating_sub(*t) >= FINGER_CHECK);
        if !due {
            return;
        }
        let fingers: BTreeSet<SocketAddrV4> =
            self.fingers.iter().flatten().map(|p| p.addr).collect();
        self.pace.fingers_checked.retain(|a, _| fingers.contains(a));
        self.pace.fingers_checked.insert(addr, now);
        self.request_once(now, addr, RequestPurpose::FingerCheck, |rid| {
            RingFrame::Ping { rid, cookie: 0 }
        });
    }

    /// A finger did not answer: drop it (it is found again at its next refresh).
    pub(super) fn finger_dead(&mut self, addr: SocketAddrV4) {
        let mut dropped = false;
        for f in self.fingers.iter_mut() {
            if f.is_some_and(|p| p.addr == addr) {
                *f = None;
                dropped = true;
            }
        }
        if dropped {
            self.counters.inc("finger_dead");
            self.pace.tighten();
        }
    }

    pub(super) fn fix_one_finger(&mut self, now: Now) {
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
            .any(|l| l.purpose == LookupPurpose::Finger { index: i })
        {
            return;
        }
        self.start_lookup(
            now,
            LookupPurpose::Finger { index: i },
            target,
            FindOp::Locate,
        );
    }

    /// The known node closest before or at `key` (never past it), excluding `exclude`.
    pub(super) fn closest_preceding(
        &self,
        key: u64,
        exclude: &BTreeSet<SocketAddrV4>,
    ) -> Option<Peer> {
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

    pub(super) fn lookups_expire(&mut self, now: Now) {
        let expired: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for lid in expired {
            self.lookup_abandon(now, lid);
            self.counters.inc("lookup_expired");
        }
    }

    /// Drops a lookup that found no answer; a check waiting for it is released so that
    /// the next push starts it again.
    fn lookup_abandon(&mut self, now: Now, lid: u64) {
        if let Some(l) = self.lookups.remove(&lid) {
            if let LookupPurpose::OwnerCheck { from } = l.purpose {
                self.owner_check_abandoned(now, from);
            }
        }
    }

    /// Successor list, predecessor or finger.
    pub(super) fn is_neighbour(&self, a: SocketAddrV4) -> bool {
        self.succs.iter().any(|p| p.addr == a)
            || self.pred.is_some_and(|p| p.addr == a)
            || self.fingers.iter().flatten().any(|p| p.addr == a)
    }

    pub(super) fn known_id(&self, a: SocketAddrV4) -> Option<u64> {
        self.succs
            .iter()
            .chain(self.pred.iter())
            .chain(self.fingers.iter().flatten())
            .find(|p| p.addr == a)
            .map(|p| p.id)
    }

    /// Refreshes the id we know for a peer (ids are fixed, but a restarted node at the same
    /// address gets a new one).
    pub(super) fn note_id(&mut self, p: Peer) {
        for f in self.fingers.iter_mut().flatten() {
            if f.addr == p.addr {
                f.id = p.id;
            }
        }
    }

    /// Sends `record` to its owner through the ring (`FIND ... REGISTER`); the owner
    /// applies the record rules.
    pub(super) fn hand_to_owner(&mut self, now: Now, record: Record) {
        let key = ring_hash(&record.user);
        self.start_lookup(
            now,
            LookupPurpose::Handover,
            key,
            FindOp::Register { record },
        );
    }

    /// The first `r - 1` successors: where our records are replicated.
    pub(super) fn replica_holders(&self) -> Vec<SocketAddrV4> {
        self.succs
            .iter()
            .take(self.cfg.r.saturating_sub(1))
            .map(|p| p.addr)
            .collect()
    }

    /// `REFER rid peer`: the next hop of a lookup.
    pub(super) fn on_refer(&mut self, now: Now, from: SocketAddrV4, rid: u64, peer: Peer) {
        let Some(p) = self.take_pending((from, rid, 0)) else {
            self.counters.inc("drop_unmatched");
            return;
        };
        self.failures.remove(&from);
        if let RequestPurpose::Lookup { lid } = p.purpose {
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
            // A referral to a node this lookup found dead: the referrer's view is stale
            // (it does not know yet), so route around it from our own table.
            let to_failed = self
                .lookups
                .get(&lid)
                .is_some_and(|l| l.failed.contains(&peer.addr) || l.stale.contains(&peer.addr));
            if to_failed {
                self.counters.inc("lookup_stale_referral");
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.stale.insert(from);
                }
                self.lookup_step(now, lid);
            } else if peer.addr == self.me || !progress {
                self.counters.inc("lookup_bad_referral");
                self.lookup_fail_hop(now, lid, from);
            } else {
                self.note_id(peer);
                self.lookup_send(now, lid, peer.addr);
            }
        }
    }

    /// `FOUND rid id outcome`: the owner answered a lookup.
    pub(super) fn on_found(
        &mut self,
        now: Now,
        from: SocketAddrV4,
        rid: u64,
        id: u64,
        outcome: Outcome,
    ) {
        let Some(p) = self.take_pending((from, rid, 0)) else {
            self.counters.inc("drop_unmatched");
            return;
        };
        self.failures.remove(&from);
        match p.purpose {
            RequestPurpose::Lookup { lid } => {
                self.lookup_done(now, lid, Peer { id, addr: from }, outcome);
            }
            RequestPurpose::ConfirmHeld { cid } => self.confirm_held(cid, from, outcome),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use flock_proto::space::dist;
    use flock_proto::{Frame, OkReply, Record};

    use crate::node::testing::{drain, founder, ms, ring, sends};
    use crate::sim::Sim;

    #[test]
    fn every_node_resolves_every_user() {
        let mut sim = ring(11, 8);
        let users: Vec<Record> = (0..6)
            .map(|i| Sim::make_record(&format!("user{i}"), 3))
            .collect();
        for (i, r) in users.iter().enumerate() {
            sim.register(Sim::addr(i % 8), r.clone());
        }
        sim.run_for(ms(2000)).expect("runs");
        for (i, r) in users.iter().enumerate() {
            let c = sim.resolve(Sim::addr((i + 3) % 8), &r.user);
            sim.run_for(ms(1000)).expect("runs");
            assert_eq!(
                sim.replies(c),
                &[Frame::resolved(r).into_owned()],
                "{}",
                r.user
            );
        }
    }

    #[test]
    fn the_next_hop_never_passes_the_key() {
        let sim = ring(12, 16);
        for i in 0..16 {
            let n = sim.node(Sim::addr(i)).expect("node");
            for k in 0..64u64 {
                let key = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) % flock_proto::space::MODULUS;
                if n.owns(key) {
                    continue;
                }
                let p = n.closest_preceding(key, &BTreeSet::new()).expect("a hop");
                assert!(
                    dist(n.id, p.id) <= dist(n.id, key),
                    "{i}: key {key} via {p:?}"
                );
            }
        }
    }

    /// The entry node answers a client only with a record of the name it asked for (a
    /// member that answers with another name's record is counted, not believed).
    #[test]
    fn an_answer_for_another_name_is_refused() {
        let mut sim = ring(13, 2);
        let r = Sim::make_record("alice", 3);
        sim.register(Sim::addr(0), r.clone());
        sim.run_for(ms(2000)).expect("runs");
        let key = super::ring_hash("alice");
        let (owner, other) = if sim.node(Sim::addr(0)).expect("node").owns(key) {
            (Sim::addr(0), Sim::addr(1))
        } else {
            (Sim::addr(1), Sim::addr(0))
        };
        let c = sim.resolve(other, "alice");
        sim.run_for(ms(1000)).expect("runs");
        assert_eq!(sim.replies(c), &[Frame::resolved(&r).into_owned()]);
        // The owner now lies: its answer names someone else.
        if let Some(e) = sim.node_mut(owner).expect("node").records.get_mut("alice") {
            e.record.user = "mallory".into();
        }
        let c = sim.resolve(other, "alice");
        sim.run_for(ms(1000)).expect("runs");
        assert!(sim.replies(c).is_empty(), "{:?}", sim.replies(c));
        let n = sim.node(other).expect("node");
        assert_eq!(n.counters().get("found_wrong_user"), 1);
    }

    /// The design document's 3-field REGISTER: RESOLVE answers `OK <ip> <port>`.
    #[test]
    fn an_unsigned_record_resolves_as_ip_and_port() {
        let mut n = founder();
        let c = Sim::addr(40);
        let reg = Frame::decode(b"REGISTER alice 10.0.0.5 4000").expect("decodes");
        n.handle_datagram(ms(1), c, reg);
        let out = sends(&drain(&mut n));
        assert!(
            matches!(out[..], [(_, Frame::Ok(OkReply::Registered { .. }))]),
            "{out:?}"
        );
        n.handle_datagram(ms(2), c, Frame::decode(b"RESOLVE alice").expect("decodes"));
        let out = sends(&drain(&mut n));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.encode_to_vec(), b"OK 10.0.0.5 4000");
        n.handle_datagram(ms(3), c, Frame::decode(b"RESOLVE bob").expect("decodes"));
        assert_eq!(sends(&drain(&mut n))[0].1, Frame::not_found());
    }
}
