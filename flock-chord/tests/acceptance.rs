//! The original's acceptance scenario, in the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flock_chord::Config;
use flock_chord::sim::{NetConfig, Sim};
use flock_proto::{Frame, OkReply};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn original_acceptance_scenario() {
    let mut sim = Sim::new(1, NetConfig::default(), Config::default());
    let n: Vec<_> = (0..4).map(Sim::addr).collect();
    sim.start(n[0], vec![]);
    sim.run_for(secs(1)).unwrap();
    sim.start(n[1], vec![n[0]]);
    sim.run_for(secs(2)).unwrap();
    sim.start(n[2], vec![n[0], n[1]]);
    sim.run_for(secs(3)).unwrap();
    sim.check_ideal().unwrap();
    let ranges: Vec<_> = n[..3]
        .iter()
        .map(|a| sim.node(*a).unwrap().range())
        .collect();
    println!("ranges {ranges:?}");

    let users = ["alice", "bob", "carol"];
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        clients.push(sim.register(n[i], Sim::make_record(u, 1)));
    }
    sim.run_for(secs(1)).unwrap();
    for c in &clients {
        assert!(
            matches!(
                sim.replies(*c).first(),
                Some(Frame::Ok(OkReply::Registered { .. }))
            ),
            "{:?}",
            sim.replies(*c)
        );
    }
    sim.crash(n[1]);
    sim.crash(n[2]);
    sim.run_for(secs(5)).unwrap();
    sim.start(n[3], vec![n[0]]);
    sim.run_for(secs(3)).unwrap();
    sim.check_ideal().unwrap();
    sim.crash(n[0]);
    sim.run_for(secs(5)).unwrap();
    sim.check_ideal().unwrap();
    for u in users {
        let c = sim.resolve(n[3], u);
        sim.run_for(secs(1)).unwrap();
        assert!(
            matches!(
                sim.replies(c).first(),
                Some(Frame::Ok(OkReply::Resolved { .. }))
            ),
            "{u}: {:?}",
            sim.replies(c)
        );
    }
}

#[test]
fn graceful_leave_hands_over() {
    let mut sim = Sim::new(3, NetConfig::default(), Config::default());
    let n: Vec<_> = (0..6).map(Sim::addr).collect();
    sim.start(n[0], vec![]);
    for a in &n[1..] {
        sim.run_for(Duration::from_millis(700)).unwrap();
        sim.start(*a, vec![n[0]]);
    }
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    for i in 0..60 {
        sim.register(n[i % 6], Sim::make_record(&format!("user{i}"), 1));
    }
    sim.run_for(secs(3)).unwrap();
    assert_eq!(sim.acked().len(), 60);
    let leaver = n[2];
    let pred = sim.node(leaver).unwrap().predecessor().unwrap().addr;
    sim.leave(leaver);
    sim.run_for(secs(2)).unwrap();
    assert!(sim.node(leaver).unwrap().has_left());
    let p = sim.node(pred).unwrap();
    assert_eq!(p.counters().get("leave_from_succ"), 1);
    assert_eq!(p.counters().get("leave_received"), 1, "{:?}", p.counters());
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    sim.check_records(None, secs(2)).unwrap();
}

#[test]
fn one_node_ring_and_back() {
    let mut sim = Sim::new(4, NetConfig::default(), Config::default());
    let a = Sim::addr(0);
    let b = Sim::addr(1);
    sim.start(a, vec![]);
    sim.register(a, Sim::make_record("alice", 1));
    sim.run_for(secs(1)).unwrap();
    sim.check_ideal().unwrap();
    sim.start(b, vec![a]);
    sim.run_until_ideal(secs(10), Duration::from_millis(100))
        .unwrap();
    sim.crash(a);
    sim.run_until_ideal(secs(10), Duration::from_millis(100))
        .unwrap();
    let node = sim.node(b).unwrap();
    assert!(node.successors().is_empty());
    let (lo, hi) = node.range();
    assert_eq!(flock_chord::dist(lo, hi), flock_chord::MODULUS - 1);
    sim.check_records(None, secs(1)).unwrap();
}

#[test]
fn restart_with_stored_records_recovers_beyond_r_failures() {
    let mut sim = Sim::new(9, NetConfig::default(), Config::default());
    let n: Vec<_> = (0..8).map(Sim::addr).collect();
    sim.start(n[0], vec![]);
    for a in &n[1..] {
        sim.run_for(Duration::from_millis(700)).unwrap();
        sim.start(*a, vec![n[0]]);
    }
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    for i in 0..80 {
        sim.register(n[i % 8], Sim::make_record(&format!("user{i}"), 1));
    }
    // Long enough for extra copies (outside owner + r - 1 successors) to expire.
    sim.run_for(secs(30)).unwrap();
    assert_eq!(sim.acked().len(), 80);
    // r = 4 adjacent nodes crash at once: more than the ring tolerates in memory.
    let mut ring: Vec<_> = n.iter().map(|a| (sim.node(*a).unwrap().id(), *a)).collect();
    ring.sort();
    // The window starting at the node that owns the most users.
    let owned = |a: std::net::SocketAddrV4| {
        let (lo, hi) = sim.node(a).unwrap().range();
        sim.acked()
            .keys()
            .filter(|u| {
                let h = flock_chord::ring_hash(u);
                flock_chord::dist(lo, h) <= flock_chord::dist(lo, hi)
            })
            .count()
    };
    let start = (0..8).max_by_key(|i| owned(ring[*i].1)).unwrap();
    let dead: Vec<_> = (0..4).map(|k| ring[(start + k) % 8].1).collect();
    for a in &dead {
        sim.crash(*a);
    }
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .ok();
    let lost_in_memory = sim.lost_records();
    eprintln!(
        "lost in memory after {} adjacent crashes: {lost_in_memory}",
        dead.len()
    );
    // Their disks survive: restarting them brings every record back to its owner.
    for a in &dead {
        sim.restart(*a, true);
        sim.run_for(Duration::from_millis(500)).unwrap();
    }
    sim.run_until_ideal(secs(60), Duration::from_millis(200))
        .unwrap();
    sim.check_records(None, secs(2)).unwrap();
    assert!(
        lost_in_memory > 0,
        "the crash should have lost records in memory"
    );
    assert_eq!(
        sim.lost_records(),
        0,
        "lost before restart: {lost_in_memory}"
    );
}
