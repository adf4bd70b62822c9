//! Figures for the ring, from the deterministic simulator.
//!
//! ```text
//! cargo run -p flock-chord --release --example sim -- hops --sizes 16,256,1024,4096
//! cargo run -p flock-chord --release --example sim -- kill --nodes 64 --users 2000
//! cargo run -p flock-chord --release --example sim -- churn --nodes 1000 --secs 3600
//! cargo run -p flock-chord --release --example sim -- upkeep --nodes 1000 --secs 120
//! cargo run -p flock-chord --release --example sim -- seeds --count 1000
//! ```
// Wall-clock time is what this example measures; the simulation itself never reads it.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use flock_chord::Config;
use flock_chord::sim::{NetConfig, Sim, Traffic};

#[derive(Parser)]
#[command(about = "Flock ring figures from the deterministic simulator")]
struct Cli {
    /// Simulator seed.
    #[arg(long, default_value_t = 1, global = true)]
    seed: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hops per RESOLVE with fingers and with successor-only routing, on the same rings.
    Hops {
        /// Ring sizes.
        #[arg(long, value_delimiter = ',', default_value = "16,256,1024,4096")]
        sizes: Vec<usize>,
        /// RESOLVEs per size and routing mode.
        #[arg(long, default_value_t = 2000)]
        lookups: usize,
    },
    /// Kill 1, 2 and 3 adjacent nodes: time to an ideal ring and records lost.
    Kill {
        /// Ring size.
        #[arg(long, default_value_t = 64)]
        nodes: usize,
        /// Registered users.
        #[arg(long, default_value_t = 2000)]
        users: usize,
    },
    /// N nodes for a simulated time with churn: wall time and datagrams per wall second.
    Churn {
        /// Ring size.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Simulated seconds.
        #[arg(long, default_value_t = 3600)]
        secs: u64,
        /// Mean simulated seconds between churn events (crash, restart, join, leave).
        #[arg(long, default_value_t = 10)]
        every: u64,
    },
    /// Datagrams per node per second by message type, on a quiet ring with users.
    Upkeep {
        /// Ring size.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Simulated seconds measured (after a minute of settling).
        #[arg(long, default_value_t = 120)]
        secs: u64,
        /// Registered users.
        #[arg(long, default_value_t = 5000)]
        users: usize,
    },
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Builds a ring of `n` nodes through the real join protocol.
fn build(seed: u64, n: usize, cfg: Config) -> Sim {
    let mut sim = Sim::new(
        seed,
        NetConfig {
            codec: true,
            ..NetConfig::default()
        },
        cfg,
    );
    sim.check_every = (n as u64).max(1) * 4;
    sim.start(Sim::addr(0), vec![]);
    let t0 = Instant::now();
    for i in 1..n {
        sim.run_for(ms(40)).expect("invariants hold while building");
        sim.start_joining(Sim::addr(i), 8);
    }
    let took = sim
        .run_until_ideal(Duration::from_secs(600), ms(1000))
        .expect("ring converges");
    eprintln!(
        "built N={n}: ideal {took:?} after the last start, sim {:?}, wall {:.1?}",
        sim.now,
        t0.elapsed()
    );
    sim
}

fn stats(hist: &[u64]) -> (f64, u64, u64) {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return (0.0, 0, 0);
    }
    let sum: u64 = hist.iter().enumerate().map(|(h, c)| h as u64 * c).sum();
    let mut acc = 0;
    let mut p99 = 0;
    for (h, c) in hist.iter().enumerate() {
        acc += c;
        if acc * 100 >= total * 99 {
            p99 = h as u64;
            break;
        }
    }
    (sum as f64 / total as f64, p99, total)
}

fn measure(
    sim: &mut Sim,
    users: &[String],
    lookups: usize,
    fingers: bool,
) -> (f64, u64, u64, usize) {
    let members = sim.members();
    for a in &members {
        let n = sim.node_mut(*a).expect("member");
        n.set_finger_routing(fingers);
        n.set_lookup_limits(100_000, Duration::from_secs(3600));
        n.reset_hop_stats();
    }
    let mut asks = Vec::new();
    for i in 0..lookups {
        let via = members[sim.rand(members.len() as u64) as usize];
        let u = &users[i % users.len()];
        asks.push(sim.resolve(via, u));
        if i % 50 == 49 {
            sim.run_for(ms(20)).expect("invariants");
        }
    }
    let limit = sim.now + Duration::from_secs(if fingers { 30 } else { 900 });
    let mut answered = 0;
    while sim.now < limit {
        sim.run_for(Duration::from_secs(1)).expect("invariants");
        answered = asks.iter().filter(|c| !sim.replies(**c).is_empty()).count();
        if answered == asks.len() {
            break;
        }
    }
    let mut hist: Vec<u64> = Vec::new();
    for a in &members {
        for (h, c) in sim
            .node(*a)
            .expect("member")
            .hop_stats()
            .histogram
            .iter()
            .enumerate()
        {
            if hist.len() <= h {
                hist.resize(h + 1, 0);
            }
            hist[h] += c;
        }
    }
    let (mean, p99, n) = stats(&hist);
    (mean, p99, n, answered)
}

fn hops(seed: u64, sizes: &[usize], lookups: usize) {
    println!(
        "| N | log2 N | goal 0.5*log2 N + 1 | fingers mean | fingers p99 | successor-only mean | successor-only p99 | answered |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let mut sim = build(seed, n, Config::default());
        // Let the finger tables fill (one finger per fix interval).
        sim.run_for(Duration::from_secs(40)).expect("invariants");
        let users: Vec<String> = (0..200).map(|i| format!("user{i}")).collect();
        for u in &users {
            let via = sim.random_members(1)[0];
            sim.register(via, Sim::make_record(u, 1));
        }
        sim.run_for(Duration::from_secs(5)).expect("invariants");
        let fingers: usize = sim
            .members()
            .iter()
            .map(|a| sim.node(*a).expect("m").fingers().len())
            .sum();
        eprintln!(
            "N={n}: mean distinct fingers per node {:.1}",
            fingers as f64 / n as f64
        );
        let (fm, fp, fc, fa) = measure(&mut sim, &users, lookups, true);
        let (sm, sp, sc, sa) = measure(
            &mut sim,
            &users,
            lookups.min(if n >= 1024 { 400 } else { lookups }),
            false,
        );
        let l = (n as f64).log2();
        println!(
            "| {n} | {l:.0} | {:.1} | {fm:.2} | {fp} | {sm:.1} | {sp} | {fa}/{fc} fingers, {sa}/{sc} succ-only |",
            0.5 * l + 1.0
        );
    }
}

fn adjacent(sim: &Sim, start: usize, k: usize) -> Vec<SocketAddrV4> {
    let mut ring: Vec<(u64, SocketAddrV4)> = sim
        .members()
        .into_iter()
        .map(|a| (sim.node(a).expect("m").id(), a))
        .collect();
    ring.sort();
    (0..k).map(|i| ring[(start + i) % ring.len()].1).collect()
}

fn kill(seed: u64, nodes: usize, users: usize) {
    println!(
        "| killed adjacent | time to ideal ring + all records at owners and replicas | records lost | RESOLVE check from 16 nodes |"
    );
    println!("|---|---|---|---|");
    for k in 1..=3 {
        let mut sim = build(seed + k as u64, nodes, Config::default());
        register_users(&mut sim, users);
        sim.run_for(Duration::from_secs(5)).expect("invariants");
        sim.check_owners().expect("replicated before the kill");
        let acked = sim.acked().len();
        let start = sim.rand(nodes as u64) as usize;
        for a in adjacent(&sim, start, k) {
            sim.crash(a);
        }
        let took = sim.run_until_ideal(Duration::from_secs(120), ms(50));
        let lost = sim.lost_records();
        let via = sim.random_members(16);
        let check = sim.check_records(Some(via), Duration::from_secs(3));
        println!(
            "| {k} | {} | {lost} of {acked} | {} |",
            match took {
                Ok(t) => format!("{:.2} s", t.as_secs_f64()),
                Err(e) => format!("not reached: {e}"),
            },
            match check {
                Ok(()) => "all newest".to_string(),
                Err(e) => e.to_string(),
            }
        );
    }
}

/// Registers `users` users (version 1) through random members, 100 every 50 ms.
fn register_users(sim: &mut Sim, users: usize) {
    for i in 0..users {
        let via = sim.random_members(1)[0];
        sim.register(via, Sim::make_record(&format!("user{i}"), 1));
        if i % 100 == 99 {
            sim.run_for(ms(50)).expect("invariants");
        }
    }
}

/// Prints what was sent between two snapshots, per type, per node and second.
fn upkeep_table(traffic: &Traffic, nodes: usize, secs: f64) {
    let per = |n: u64| n as f64 / nodes as f64 / secs;
    println!("| message type | datagrams | per node per second |");
    println!("|---|---|---|");
    for (verb, n) in traffic.iter() {
        println!("| {verb} | {n} | {:.2} |", per(n));
    }
    println!(
        "| **all** | {} | **{:.2}** |",
        traffic.total(),
        per(traffic.total())
    );
}

fn upkeep(seed: u64, nodes: usize, secs: u64, users: usize) {
    let mut sim = build(seed, nodes, Config::default());
    register_users(&mut sim, users);
    sim.run_for(Duration::from_secs(60)).expect("invariants");
    let before = sim.traffic().clone();
    sim.run_for(Duration::from_secs(secs)).expect("invariants");
    let sent = sim.traffic().since(&before);
    println!("steady state, N={nodes}, {users} users, {secs} simulated s:\n");
    upkeep_table(&sent, sim.members().len(), secs as f64);
}

fn churn(seed: u64, nodes: usize, secs: u64, every: u64) {
    let t0 = Instant::now();
    let mut sim = build(seed, nodes, Config::default());
    let build_wall = t0.elapsed();
    let users: u64 = 5000;
    register_users(&mut sim, users as usize);
    sim.run_for(Duration::from_secs(5)).expect("invariants");
    let (d0, e0) = (sim.delivered, sim.events);
    let sent0 = sim.traffic().clone();
    let t1 = Instant::now();
    let start = sim.now;
    let end = start + Duration::from_secs(secs);
    let mut crashed: Vec<SocketAddrV4> = Vec::new();
    let mut next = nodes;
    let mut churn_events = 0;
    let mut version = 2;
    while sim.now < end {
        let gap = 1 + sim.rand(2 * every * 1000);
        sim.run_for(ms(gap)).expect("invariants");
        churn_events += 1;
        match sim.rand(5) {
            0 => {
                let v = sim.random_members(1);
                sim.crash(v[0]);
                crashed.push(v[0]);
            }
            1 => {
                if let Some(a) = crashed.pop() {
                    let keep = sim.rand(2) == 0;
                    sim.restart(a, keep);
                }
            }
            2 => {
                sim.start_joining(Sim::addr(next), 3);
                next += 1;
            }
            3 => {
                let v = sim.random_members(1);
                sim.leave(v[0]);
            }
            _ => {
                for _ in 0..20 {
                    let u = format!("user{}", sim.rand(users));
                    let via = sim.random_members(1)[0];
                    sim.register(via, Sim::make_record(&u, version));
                    version += 1;
                }
            }
        }
    }
    let wall = t1.elapsed();
    let sent = sim.traffic().since(&sent0);
    let delivered = sim.delivered - d0;
    let events = sim.events - e0;
    let took = sim.run_until_ideal(Duration::from_secs(300), ms(1000));
    let lost = sim.lost_records();
    println!(
        "| nodes | simulated | churn events | wall (build) | wall (simulated period) | datagrams | datagrams per wall s | events per wall s | converged after | records lost |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {nodes} | {secs} s | {churn_events} | {:.1} s | {:.1} s | {delivered} | {:.0} | {:.0} | {} | {lost} of {} |",
        build_wall.as_secs_f64(),
        wall.as_secs_f64(),
        delivered as f64 / wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64(),
        match took {
            Ok(t) => format!("{:.1} s", t.as_secs_f64()),
            Err(e) => format!("not reached: {e}"),
        },
        sim.acked().len()
    );
    println!("\nsent during the simulated period, with churn:\n");
    upkeep_table(&sent, nodes, secs as f64);
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Hops { sizes, lookups } => hops(cli.seed, &sizes, lookups),
        Cmd::Kill { nodes, users } => kill(cli.seed, nodes, users),
        Cmd::Churn { nodes, secs, every } => churn(cli.seed, nodes, secs, every),
        Cmd::Upkeep { nodes, secs, users } => upkeep(cli.seed, nodes, secs, users),
    }
}
