//! Partitions longer than the failure detector: the ring splits, and heals when they end
//! (dead peers are probed and adopted again by Zave's rule).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddrV4;
use std::time::Duration;

use flock_chord::Config;
use flock_chord::sim::{NetConfig, Sim};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ring(seed: u64, n: usize) -> (Sim, Vec<SocketAddrV4>) {
    let mut sim = Sim::new(seed, NetConfig::default(), Config::default());
    let a: Vec<_> = (0..n).map(Sim::addr).collect();
    sim.start(a[0], vec![]);
    for x in &a[1..] {
        sim.run_for(Duration::from_millis(300)).unwrap();
        sim.start_joining(*x, 8);
    }
    sim.run_until_ideal(secs(30), Duration::from_millis(200))
        .unwrap();
    for i in 0..40 {
        sim.register(a[i % n], Sim::make_record(&format!("user{i}"), 1));
    }
    sim.run_for(secs(3)).unwrap();
    (sim, a)
}

fn in_ring_order(sim: &Sim, a: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
    let mut r: Vec<_> = a.iter().map(|x| (sim.node(*x).unwrap().id(), *x)).collect();
    r.sort();
    r.into_iter().map(|(_, x)| x).collect()
}

#[test]
fn isolated_node_rejoins_after_a_long_partition() {
    for seed in 0..10 {
        let (mut sim, a) = ring(100 + seed, 8);
        let x = a[(seed % 8) as usize];
        let others: Vec<_> = a.iter().copied().filter(|y| *y != x).collect();
        sim.check_every = 0; // two rings are expected while it lasts
        sim.split(&[x], &others, secs(15));
        sim.run_for(secs(5)).unwrap();
        assert!(
            sim.check_one_ring().is_err(),
            "seed {seed}: the partition split nothing"
        );
        // Both sides keep serving; writes on both sides are acknowledged.
        sim.register(x, Sim::make_record("user1", 5));
        sim.register(others[0], Sim::make_record("user2", 5));
        sim.run_for(secs(12)).unwrap();
        sim.check_every = 1;
        sim.run_until_ideal(secs(60), Duration::from_millis(500))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        sim.check_records(None, secs(2))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(sim.lost_records(), 0);
    }
}

#[test]
fn ring_split_in_two_arcs_merges_again() {
    for seed in 0..10 {
        let (mut sim, a) = ring(200 + seed, 12);
        let order = in_ring_order(&sim, &a);
        let cut = 5 + (seed as usize % 3);
        let (left, right) = order.split_at(cut);
        sim.check_every = 0;
        sim.split(left, right, secs(20));
        sim.run_for(secs(8)).unwrap();
        assert!(
            sim.check_one_ring().is_err(),
            "seed {seed}: the partition split nothing"
        );
        sim.register(left[0], Sim::make_record("user3", 7));
        sim.register(right[0], Sim::make_record("user4", 7));
        sim.run_for(secs(14)).unwrap();
        sim.check_every = 1;
        sim.run_until_ideal(secs(90), Duration::from_millis(500))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        sim.check_records(None, secs(2))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}
