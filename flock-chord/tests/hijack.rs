//! Predecessor hijack (tracker issue 4: "an unknown host cannot stop a node, change its
//! neighbours or move a record"): a non-member that speaks the ring protocol (answers
//! cookie challenges, pings and `GET_STATE` plausibly) keeps sending `RECTIFY` with an id
//! just below a victim. It must never become the victim's predecessor, and the victim's
//! graceful leave must hand its records to the real predecessor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flock_chord::sim::{NetConfig, Sim};
use flock_chord::{Config, MODULUS};
use flock_proto::Frame;
use flock_proto::ring::{Peer, RingFrame};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The attacker: an outside address that answers like a ring member would.
struct Attacker {
    addr: SocketAddrV4,
    /// The id it claims (just below the victim's).
    id: u64,
    victim: SocketAddrV4,
    cookies: BTreeMap<SocketAddrV4, u64>,
    next_rid: u64,
    /// What it was sent that only a neighbour should get.
    leaves: usize,
    records: usize,
}

impl Attacker {
    fn new(sim: &mut Sim, victim: SocketAddrV4) -> Self {
        let addr = SocketAddrV4::new(Ipv4Addr::new(10, 66, 6, 6), 12345);
        sim.add_outside(addr);
        let vid = sim.node(victim).unwrap().id();
        Self {
            addr,
            id: (vid + MODULUS - 1) % MODULUS,
            victim,
            cookies: BTreeMap::new(),
            next_rid: 0x5eed,
            leaves: 0,
            records: 0,
        }
    }

    fn send(&self, sim: &mut Sim, to: SocketAddrV4, f: RingFrame) {
        sim.send_from_client(self.addr, to, Frame::Ring(f));
    }

    fn rectify(&mut self, sim: &mut Sim) {
        self.next_rid += 1;
        let cookie = self.cookies.get(&self.victim).copied().unwrap_or(0);
        let f = RingFrame::Rectify {
            rid: self.next_rid,
            cookie,
            id: self.id,
        };
        self.send(sim, self.victim, f);
    }

    /// Answers everything that arrived, like a member that lies between the victim's
    /// predecessor and the victim.
    fn answer(&mut self, sim: &mut Sim) {
        for (from, f) in sim.take_outside(self.addr) {
            let Frame::Ring(rf) = f else { continue };
            match rf {
                RingFrame::Cookie { rid, cookie } => {
                    self.cookies.insert(from, cookie);
                    let f = RingFrame::Rectify {
                        rid,
                        cookie,
                        id: self.id,
                    };
                    self.send(sim, from, f);
                }
                RingFrame::Ping { rid, .. }
                | RingFrame::Rectify { rid, .. }
                | RingFrame::Fix { rid, .. }
                | RingFrame::Replicate { rid, .. } => {
                    self.send(sim, from, RingFrame::Ack { rid, seq: 0 })
                }
                RingFrame::GetState { rid, .. } => {
                    let v = sim.node(self.victim).unwrap();
                    let mut succs = vec![Peer {
                        id: v.id(),
                        addr: self.victim,
                    }];
                    succs.extend(v.successors().iter().take(3).copied());
                    let f = RingFrame::State {
                        rid,
                        id: self.id,
                        pred: v.predecessor(),
                        succs,
                    };
                    self.send(sim, from, f);
                }
                RingFrame::Leave { rid, .. } => {
                    self.leaves += 1;
                    self.send(sim, from, RingFrame::Ack { rid, seq: 0 });
                }
                RingFrame::Records {
                    rid, seq, records, ..
                } => {
                    self.records += records.len();
                    self.send(sim, from, RingFrame::Ack { rid, seq: seq + 1 });
                }
                _ => {}
            }
        }
    }

    /// Runs `d` of virtual time in 50 ms slices, attacking every slice; checks after each
    /// slice that the victim has not adopted the attacker.
    fn run(&mut self, sim: &mut Sim, d: Duration) {
        let slices = d.as_millis() / 50;
        for _ in 0..slices {
            self.rectify(sim);
            sim.run_for(Duration::from_millis(50)).unwrap();
            self.answer(sim);
            if let Some(v) = sim.node(self.victim) {
                if v.has_left() {
                    continue;
                }
                assert_ne!(
                    v.predecessor().map(|p| p.addr),
                    Some(self.addr),
                    "the victim adopted the attacker as predecessor"
                );
                assert!(
                    v.successors().iter().all(|p| p.addr != self.addr),
                    "the victim adopted the attacker as successor"
                );
            }
        }
    }
}

/// The victim leaves gracefully while the attack goes on.
fn leave_under_attack(sim: &mut Sim, att: &mut Attacker, victim: SocketAddrV4) {
    sim.leave(victim);
    for _ in 0..20 {
        att.run(sim, secs(1));
        if sim.node(victim).unwrap().has_left() {
            att.run(sim, secs(1));
            return;
        }
    }
    let v = sim.node(victim).unwrap();
    panic!("the leave did not finish: {v:?} {:?}", v.counters());
}

/// An ideal ring of `n` nodes with 60 acknowledged records.
fn ring(seed: u64, n: usize) -> (Sim, Vec<SocketAddrV4>) {
    let mut sim = Sim::new(seed, NetConfig::default(), Config::default());
    let nodes: Vec<_> = (0..n).map(Sim::addr).collect();
    sim.start(nodes[0], vec![]);
    for a in &nodes[1..] {
        sim.run_for(Duration::from_millis(700)).unwrap();
        sim.start(*a, vec![nodes[0]]);
    }
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    for i in 0..60 {
        sim.register(nodes[i % n], Sim::make_record(&format!("user{i}"), 1));
    }
    sim.run_for(secs(3)).unwrap();
    assert_eq!(sim.acked().len(), 60);
    (sim, nodes)
}

#[test]
fn rectify_from_a_non_member_does_not_take_the_predecessor() {
    let (mut sim, nodes) = ring(41, 8);
    let victim = nodes[3];
    let real_pred = sim.node(victim).unwrap().predecessor().unwrap().addr;
    let mut att = Attacker::new(&mut sim, victim);
    att.run(&mut sim, secs(10));
    let v = sim.node(victim).unwrap();
    assert_eq!(v.predecessor().map(|p| p.addr), Some(real_pred));
    assert!(
        v.counters().get("pred_claim_refused") > 0,
        "{:?}",
        v.counters()
    );
    sim.check_ideal().unwrap();

    // The victim leaves while the attack goes on: LEAVE and records go to the real
    // predecessor, nothing to the attacker.
    leave_under_attack(&mut sim, &mut att, victim);
    assert_eq!(att.leaves, 0);
    assert_eq!(att.records, 0);
    let p = sim.node(real_pred).unwrap();
    assert_eq!(p.counters().get("leave_from_succ"), 1, "{:?}", p.counters());
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    sim.check_records(None, secs(2)).unwrap();
}

#[test]
fn rectify_from_a_non_member_while_the_predecessor_dies() {
    // With no live predecessor to ask, a claim is confirmed by a ring lookup of the key
    // just below the victim: it ends at the real new predecessor, never at the attacker.
    let (mut sim, nodes) = ring(42, 8);
    let victim = nodes[5];
    let real_pred = sim.node(victim).unwrap().predecessor().unwrap().addr;
    let mut att = Attacker::new(&mut sim, victim);
    att.run(&mut sim, secs(2));
    sim.crash(real_pred);
    att.run(&mut sim, secs(15));
    let v = sim.node(victim).unwrap();
    let new_pred = v.predecessor().map(|p| p.addr);
    assert!(new_pred.is_some() && new_pred != Some(real_pred) && new_pred != Some(att.addr));
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();

    leave_under_attack(&mut sim, &mut att, victim);
    assert_eq!(att.leaves, 0);
    assert_eq!(att.records, 0);
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    sim.check_records(None, secs(2)).unwrap();
}
