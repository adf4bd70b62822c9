//! Many seeds across fault mixes. A failure prints `FLOCK_SEED=<n> FLOCK_MIX=<mix>`;
//! rerun exactly that case with
//! `FLOCK_SEED=<n> FLOCK_MIX=<mix> cargo test -p flock-chord --test seeds -- --nocapture`.
//! `FLOCK_SEEDS=<count>` runs more seeds per mix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddrV4;
use std::time::Duration;

use flock_chord::Config;
use flock_chord::sim::{NetConfig, Sim, Violation};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Joins, registrations, single crashes; clean network.
    Clean,
    /// Loss, duplication and heavy reordering throughout.
    Lossy,
    /// Crashes of 1 to r-1 adjacent nodes, restarts with and without state, graceful leaves.
    Churn,
    /// Short symmetric and one-way partitions plus loss, with crashes.
    Partitions,
    /// Partitions longer than the failure detector (the ring splits, then must merge),
    /// with writes on both sides.
    Splits,
}

impl Mix {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "clean" => Self::Clean,
            "lossy" => Self::Lossy,
            "churn" => Self::Churn,
            "partitions" => Self::Partitions,
            "splits" => Self::Splits,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Lossy => "lossy",
            Self::Churn => "churn",
            Self::Partitions => "partitions",
            Self::Splits => "splits",
        }
    }
}

fn net(mix: Mix) -> NetConfig {
    match mix {
        Mix::Clean => NetConfig::default(),
        Mix::Lossy => NetConfig {
            latency_min: ms(1),
            latency_max: ms(60),
            loss: 0.05,
            dup: 0.05,
            codec: true,
        },
        Mix::Churn => NetConfig {
            latency_max: ms(20),
            ..NetConfig::default()
        },
        Mix::Partitions => NetConfig {
            latency_max: ms(20),
            loss: 0.02,
            dup: 0.02,
            ..NetConfig::default()
        },
        Mix::Splits => NetConfig {
            latency_max: ms(20),
            ..NetConfig::default()
        },
    }
}

/// Adjacent members in ring order starting at a random one.
fn adjacent(sim: &mut Sim, k: usize) -> Vec<SocketAddrV4> {
    let mut ring: Vec<(u64, SocketAddrV4)> = sim
        .members()
        .into_iter()
        .map(|a| (sim.node(a).unwrap().id(), a))
        .collect();
    ring.sort();
    if ring.is_empty() {
        return Vec::new();
    }
    let start = sim.rand(ring.len() as u64) as usize;
    (0..k.min(ring.len()))
        .map(|i| ring[(start + i) % ring.len()].1)
        .collect()
}

fn scenario(seed: u64, mix: Mix, debug: bool) -> Result<(), Violation> {
    let mut sim_holder = None;
    let res = scenario_inner(seed, mix, &mut sim_holder);
    if res.is_err() && debug {
        if let Some(sim) = sim_holder.as_ref() {
            dump(sim);
        }
    }
    res
}

fn dump(sim: &Sim) {
    for a in sim.live() {
        let n = sim.node(a).unwrap();
        eprintln!(
            "{n:?} range={:?} settled={} counters={:?}",
            n.range(),
            n.is_settled(),
            n.counters().iter().collect::<Vec<_>>()
        );
    }
}

fn scenario_inner(seed: u64, mix: Mix, holder: &mut Option<Sim>) -> Result<(), Violation> {
    let sim = holder.insert(Sim::new(seed, net(mix), Config::default()));
    sim.check_every = 1;
    let r = sim.node_config.r;
    let mut next = 0usize;
    // 1..=10 nodes joining concurrently (small rings included).
    let n = 1 + sim.rand(10) as usize;
    sim.start(Sim::addr(next), vec![]);
    next += 1;
    for _ in 1..n {
        let gap = sim.rand(400);
        sim.run_for(ms(gap))?;
        sim.start_joining(Sim::addr(next), 3);
        next += 1;
    }
    sim.net.loss = 0.0;
    sim.run_until_ideal(Duration::from_secs(60), ms(500))?;
    sim.net = net(mix);

    // Registrations, some updated.
    let users: Vec<String> = (0..12).map(|i| format!("user_{seed}_{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        let via = sim.random_members(1);
        if let Some(v) = via.first() {
            sim.register(*v, Sim::make_record(u, 1 + (i as u64 % 3)));
        }
        let d = ms(sim.rand(50));
        sim.run_for(d)?;
    }
    sim.run_for(Duration::from_secs(3))?;

    // Faults, with repair between rounds.
    let rounds = 1 + sim.rand(3);
    let mut crashed: Vec<SocketAddrV4> = Vec::new();
    for round in 0..rounds {
        let members = sim.members().len();
        match mix {
            Mix::Clean | Mix::Lossy => {
                if members > 1 && sim.rand(2) == 0 {
                    let v = adjacent(sim, 1);
                    for a in v {
                        sim.crash(a);
                        crashed.push(a);
                    }
                } else {
                    sim.start_joining(Sim::addr(next), 3);
                    next += 1;
                }
            }
            Mix::Churn => {
                let k = 1 + sim.rand((r - 1) as u64) as usize;
                match sim.rand(4) {
                    0 | 1 if members > k => {
                        for a in adjacent(sim, k) {
                            sim.crash(a);
                            crashed.push(a);
                        }
                    }
                    2 if members > 1 => {
                        let v = adjacent(sim, 1);
                        for a in v {
                            sim.leave(a);
                        }
                    }
                    _ => {
                        if let Some(a) = crashed.pop() {
                            let keep = sim.rand(2) == 0;
                            sim.restart(a, keep);
                        } else {
                            sim.start_joining(Sim::addr(next), 3);
                            next += 1;
                        }
                    }
                }
            }
            Mix::Splits => {}
            Mix::Partitions => {
                let live = sim.members();
                for _ in 0..(1 + sim.rand(4)) {
                    if live.len() < 2 {
                        break;
                    }
                    let a = live[sim.rand(live.len() as u64) as usize];
                    let b = live[sim.rand(live.len() as u64) as usize];
                    let one_way = sim.rand(2) == 0;
                    let d = ms(50 + sim.rand(350));
                    sim.partition(a, b, one_way, d);
                }
                if members > 2 && round == 0 {
                    let k = 1 + sim.rand(2) as usize;
                    for a in adjacent(sim, k) {
                        sim.crash(a);
                        crashed.push(a);
                    }
                }
            }
        }
        let mut split_until = None;
        if mix == Mix::Splits {
            // Cut the ring into two arcs (or isolate one node) for 2 to 15 s.
            let mut order: Vec<(u64, SocketAddrV4)> = sim
                .members()
                .into_iter()
                .map(|a| (sim.node(a).unwrap().id(), a))
                .collect();
            order.sort();
            let order: Vec<SocketAddrV4> = order.into_iter().map(|(_, a)| a).collect();
            if order.len() >= 2 {
                let start = sim.rand(order.len() as u64) as usize;
                let len = 1 + sim.rand((order.len() - 1) as u64) as usize;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for (i, x) in order.iter().enumerate() {
                    if (i + order.len() - start) % order.len() < len {
                        a.push(*x);
                    } else {
                        b.push(*x);
                    }
                }
                let d = ms(2000 + sim.rand(13_000));
                sim.check_every = 0;
                sim.split(&a, &b, d);
                split_until = Some(sim.now + d);
            }
        }
        // Traffic during the fault.
        for i in 0..4 {
            let u = &users[sim.rand(users.len() as u64) as usize];
            if let Some(v) = sim.random_members(1).first() {
                let ver = 10 + round * 10 + i;
                sim.register(*v, Sim::make_record(u, ver));
            }
            let d = ms(sim.rand(300));
            sim.run_for(d)?;
        }
        if let Some(t) = split_until {
            sim.run_until(t)?;
        }
        sim.net.loss = 0.0;
        // After a split the two rings merge first; "one ring" holds again from then on.
        sim.run_until_ideal(Duration::from_secs(90), ms(500))?;
        sim.check_every = 1;
        sim.net = net(mix);
    }

    // Quiescence: ideal ring, every acknowledged registration everywhere.
    sim.net = NetConfig {
        loss: 0.0,
        dup: 0.0,
        ..net(mix)
    };
    sim.run_until_ideal(Duration::from_secs(60), ms(500))?;
    // Quiescent traffic is bounded: no livelock (a 16-node ring uses ~2k events/s).
    let t = sim.now + Duration::from_secs(3);
    sim.drive_bounded(t, 100_000)?;
    sim.check_ideal()?;
    sim.check_records(None, Duration::from_secs(3))?;
    if sim.lost_records() != 0 {
        return Err(Violation(format!("{} records lost", sim.lost_records())));
    }
    Ok(())
}

fn run_mix(mix: Mix, default_seeds: u64, base: u64) {
    if let Ok(m) = std::env::var("FLOCK_MIX") {
        if Mix::parse(&m) != Some(mix) {
            return;
        }
    }
    let seeds: Vec<u64> = match std::env::var("FLOCK_SEED") {
        Ok(s) => vec![s.parse().expect("FLOCK_SEED is a number")],
        Err(_) => {
            let n = std::env::var("FLOCK_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_seeds);
            (base..base + n).collect()
        }
    };
    let mut failed = Vec::new();
    for seed in seeds {
        if let Err(v) = scenario(seed, mix, std::env::var("FLOCK_SEED").is_ok()) {
            eprintln!("FAILED: FLOCK_SEED={seed} FLOCK_MIX={}: {v}", mix.name());
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "mix {} failed seeds {failed:?}",
        mix.name()
    );
}

#[test]
fn seeds_clean() {
    run_mix(Mix::Clean, 50, 1000);
}

#[test]
fn seeds_lossy() {
    run_mix(Mix::Lossy, 50, 2000);
}

#[test]
fn seeds_churn() {
    run_mix(Mix::Churn, 50, 3000);
}

#[test]
fn seeds_partitions() {
    run_mix(Mix::Partitions, 50, 4000);
}

#[test]
fn seeds_splits() {
    run_mix(Mix::Splits, 50, 5000);
}
