//! Invariants: checked after every step, and the quiescent ideal.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::{Frame, OkReply};

use super::{Sim, Violation};
use crate::{Peer, ring_hash};

impl Sim {
    fn is_live_member(&self, a: SocketAddrV4) -> bool {
        self.node(a).is_some_and(|n| n.is_member())
    }

    /// Every live member has a live entry in its successor list (or is alone).
    pub(super) fn check_local(&self, a: SocketAddrV4) -> Result<(), Violation> {
        let Some(n) = self.node(a) else {
            return Ok(());
        };
        if !n.is_member() || n.successors().is_empty() {
            return Ok(());
        }
        // The whole rest of a small ring may die at once; then "alone" is right.
        if n.successors().iter().any(|p| self.is_live(p.addr))
            || !self
                .hosts
                .iter()
                .any(|(x, h)| *x != a && h.node.as_ref().is_some_and(|n| n.is_member()))
        {
            Ok(())
        } else {
            Err(Violation(format!(
                "t={:?}: {a} has no live successor in {:?}",
                self.now,
                n.successors()
            )))
        }
    }

    fn is_live(&self, a: SocketAddrV4) -> bool {
        self.node(a).is_some_and(|n| !n.has_left())
    }

    /// First live entry of a member's successor list (itself when alone).
    fn best_succ(&self, a: SocketAddrV4) -> SocketAddrV4 {
        self.node(a)
            .and_then(|n| {
                n.successors()
                    .iter()
                    .find(|p| self.is_live_member(p.addr))
                    .map(|p| p.addr)
            })
            .unwrap_or(a)
    }

    /// At most one ring among live members (cycles of the best-successor graph).
    pub fn check_one_ring(&self) -> Result<(), Violation> {
        let members = self.members();
        let mut ring_of: BTreeMap<SocketAddrV4, usize> = BTreeMap::new();
        let mut rings = 0usize;
        for &m in &members {
            if ring_of.contains_key(&m) {
                continue;
            }
            // Walk until we meet a visited node.
            let mut path = Vec::new();
            let mut on_path = BTreeMap::new();
            let mut cur = m;
            let found = loop {
                if let Some(&r) = ring_of.get(&cur) {
                    break r;
                }
                if let Some(&i) = on_path.get(&cur) {
                    // New cycle: path[i..].
                    rings += 1;
                    let _ = i;
                    break rings;
                }
                on_path.insert(cur, path.len());
                path.push(cur);
                cur = self.best_succ(cur);
            };
            for p in path {
                ring_of.insert(p, found);
            }
        }
        if rings > 1 {
            return Err(Violation(format!("t={:?}: {rings} rings", self.now)));
        }
        Ok(())
    }

    /// The quiescent ideal: one ordered ring of all live members, exact successor lists
    /// and predecessors, ranges covering the hash space, and nothing left to take over.
    pub fn check_ideal(&self) -> Result<(), Violation> {
        let live = self.live();
        let members = self.members();
        if live.len() != members.len() {
            return Err(Violation(format!(
                "{} live nodes but {} members",
                live.len(),
                members.len()
            )));
        }
        if members.is_empty() {
            return Ok(());
        }
        let mut ring: Vec<Peer> = members
            .iter()
            .map(|a| Peer {
                id: self.node(*a).map(|n| n.id()).unwrap_or(0),
                addr: *a,
            })
            .collect();
        ring.sort();
        for w in ring.windows(2) {
            if w[0].id == w[1].id {
                return Err(Violation(format!(
                    "duplicate id {} ({} and {})",
                    w[0].id, w[0].addr, w[1].addr
                )));
            }
        }
        let n = ring.len();
        let r = self.node_config.r;
        let mut covered: u128 = 0;
        for (i, p) in ring.iter().enumerate() {
            let Some(node) = self.node(p.addr) else {
                continue;
            };
            let want: Vec<Peer> = (1..n).map(|k| ring[(i + k) % n]).take(r).collect();
            if node.successors() != &want[..] {
                return Err(Violation(format!(
                    "{} (id {}) successors {:?}, want {:?}",
                    p.addr,
                    p.id,
                    node.successors(),
                    want
                )));
            }
            let want_pred = if n > 1 {
                Some(ring[(i + n - 1) % n])
            } else {
                None
            };
            if n > 1 && node.predecessor() != want_pred {
                return Err(Violation(format!(
                    "{} predecessor {:?}, want {:?}",
                    p.addr,
                    node.predecessor(),
                    want_pred
                )));
            }
            if !node.is_settled() {
                return Err(Violation(format!("{} still taking over", p.addr)));
            }
            let (lo, hi) = node.range();
            covered += u128::from(crate::dist(lo, hi)) + 1;
        }
        if covered != u128::from(crate::MODULUS) {
            return Err(Violation(format!(
                "ranges cover {covered} hashes, not the whole space"
            )));
        }
        Ok(())
    }

    /// Every acknowledged registration is held, with its newest version, by the member that
    /// owns its hash and by the owner's next `r - 1` successors (those alive).
    pub fn check_owners(&self) -> Result<(), Violation> {
        let members = self.members();
        for (user, rec) in &self.acked {
            let h = ring_hash(user);
            let owner = members.iter().find(|a| {
                self.node(**a).is_some_and(|n| {
                    let (lo, hi) = n.range();
                    crate::dist(lo, h) <= crate::dist(lo, hi)
                })
            });
            let Some(owner) = owner else {
                return Err(Violation(format!("no owner for {user}")));
            };
            let node = self.node(*owner).expect("member");
            match node.record(user) {
                Some(r) if r.version >= rec.version => {}
                other => {
                    return Err(Violation(format!(
                        "{user}: owner {owner} holds {:?}, acked version {}",
                        other.map(|r| r.version),
                        rec.version
                    )));
                }
            }
            for s in node.successors().iter().take(self.node_config.r - 1) {
                if let Some(sn) = self.node(s.addr) {
                    if sn.record(user).is_none_or(|r| r.version < rec.version) {
                        return Err(Violation(format!(
                            "{user}: replica {} lacks version {}",
                            s.addr, rec.version
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Acknowledged users whose newest version no live member holds.
    pub fn lost_records(&self) -> usize {
        let members = self.members();
        self.acked
            .iter()
            .filter(|(u, rec)| {
                !members.iter().any(|a| {
                    self.node(*a)
                        .and_then(|n| n.record(u))
                        .is_some_and(|r| r.version >= rec.version)
                })
            })
            .count()
    }

    /// Sends a RESOLVE for every acknowledged user through each of `via` (all live members
    /// when `None`), runs `wait`, and checks each answer carries the newest version.
    pub fn check_records(
        &mut self,
        via: Option<Vec<SocketAddrV4>>,
        wait: Duration,
    ) -> Result<(), Violation> {
        let via = via.unwrap_or_else(|| self.members());
        let users: Vec<(String, u64)> = self
            .acked
            .iter()
            .map(|(u, r)| (u.clone(), r.version))
            .collect();
        // Paced as clients would ask (each node's pending table sheds a burst beyond its
        // share, which is load shedding, not a wrong answer): a round of one lookup per
        // entry node every millisecond.
        let mut asks = Vec::new();
        for (u, ver) in &users {
            for v in &via {
                let c = self.resolve(*v, u);
                asks.push((c, *v, u.clone(), *ver));
            }
            self.run_for(Duration::from_millis(1))?;
        }
        self.run_for(wait)?;
        for (c, v, u, ver) in asks {
            let got = self.replies(c).first().cloned();
            match got {
                Some(Frame::Ok(OkReply::Resolved { version, .. })) if version >= ver => {}
                other => {
                    return Err(Violation(format!(
                        "RESOLVE {u} via {v}: got {other:?}, want version {ver}"
                    )));
                }
            }
        }
        Ok(())
    }
}
