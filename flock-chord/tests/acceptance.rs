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
