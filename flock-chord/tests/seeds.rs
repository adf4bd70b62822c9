//! Many seeds across fault mixes. A failure prints `FLOCK_SEED=<n> FLOCK_MIX=<mix>`;
//! rerun exactly that case with
//! `FLOCK_SEED=<n> FLOCK_MIX=<mix> cargo test -p flock-chord --test seeds -- --nocapture`.
//! `FLOCK_SEEDS=<count>` runs more seeds per mix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddrV4;
use std::time::Duration;

use flock_chord::sim::{NetConfig, Sim, Violation};
use flock_chord::{Config, FakeVerifier};
use flock_proto::ring::{FindError, FindOp, Outcome, Peer, RingFrame};
use flock_proto::space::MODULUS;
use flock_proto::{Frame, Record};

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
    /// A non-member sends every ring frame type (random and forged fields, records under
    /// another key, replays of what it received, cookies answered) into the running ring
    /// through joins and crashes; an open ring, so its `JOIN`s make it a member that then
    /// lies (`LEAVE` naming made-up nodes or real ones under false ids) and falls silent.
    Hostile,
    /// The same with a cluster key: members are authenticated (`Config::authenticated`)
    /// and the stranger's ring frames fail the driver's check (never reach a node); its
    /// client frames still do.
    HostileKeyed,
}

impl Mix {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "clean" => Self::Clean,
            "lossy" => Self::Lossy,
            "churn" => Self::Churn,
            "partitions" => Self::Partitions,
            "splits" => Self::Splits,
            "hostile" => Self::Hostile,
            "hostile-keyed" => Self::HostileKeyed,
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
            Self::Hostile => "hostile",
            Self::HostileKeyed => "hostile-keyed",
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
        Mix::Splits | Mix::Hostile | Mix::HostileKeyed => NetConfig {
            latency_max: ms(20),
            ..NetConfig::default()
        },
    }
}

/// The stranger of the hostile mixes: an outside address that speaks the ring protocol.
struct Stranger {
    me: SocketAddrV4,
    /// Whether its ring frames reach the nodes (no cluster key).
    ring: bool,
    /// Requests sent, by rid (resent with the cookie a node answers).
    sent: Vec<(SocketAddrV4, RingFrame)>,
    /// Ring frames received, replayed to other nodes.
    heard: Vec<RingFrame>,
    users: Vec<String>,
    frames: u64,
}

/// `user`'s record under the stranger's key, validly signed.
fn forged(user: &str, version: u64) -> Record {
    let mut r = Sim::make_record(user, version);
    r.pubkey_b64 = format!("EVIL{user}");
    r.sig_b64 = FakeVerifier::sign(&r);
    r
}

impl Stranger {
    fn new(sim: &mut Sim, ring: bool, users: &[String]) -> Self {
        let me = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 66, 0, 1), 6666);
        sim.add_outside(me);
        Self {
            me,
            ring,
            sent: Vec::new(),
            heard: Vec::new(),
            users: users.to_vec(),
            frames: 0,
        }
    }

    fn send(&mut self, sim: &mut Sim, to: SocketAddrV4, f: Frame<'static>) {
        if matches!(f, Frame::Ring(_)) && !self.ring {
            return; // dropped by the driver's cluster-key check
        }
        self.frames += 1;
        sim.send_from_client(self.me, to, f);
    }

    fn peer(&self, sim: &mut Sim) -> Peer {
        let members = sim.members();
        let addr = match sim.rand(3) {
            0 => self.me,
            1 if !members.is_empty() => members[sim.rand(members.len() as u64) as usize],
            _ => SocketAddrV4::new(std::net::Ipv4Addr::new(10, 66, 0, 2), 7000),
        };
        Peer {
            id: sim.rand(MODULUS),
            addr,
        }
    }

    fn records(&self, sim: &mut Sim) -> Vec<Record> {
        (0..sim.rand(3) + 1)
            .map(|_| {
                let u = &self.users[sim.rand(self.users.len() as u64) as usize];
                let v = sim.rand(100) + 1;
                match sim.rand(4) {
                    // A replay of a real record (an old version, say).
                    0 => Sim::make_record(u, v),
                    // A signature that does not match.
                    1 => {
                        let mut r = forged(u, v);
                        r.port ^= 1;
                        r
                    }
                    _ => forged(u, v + 1000),
                }
            })
            .collect()
    }

    /// One random frame of a random type (every ring frame type) to a random member.
    fn one(&mut self, sim: &mut Sim) {
        let members = sim.members();
        if members.is_empty() {
            return;
        }
        let to = members[sim.rand(members.len() as u64) as usize];
        let rid = sim.rand(u64::MAX);
        let victim = sim.node(to).map(flock_chord::Node::id);
        let id = match victim {
            Some(v) if sim.rand(2) == 0 => (v + MODULUS - 1) % MODULUS,
            _ => sim.rand(MODULUS),
        };
        let key = sim.rand(MODULUS);
        let user = self.users[sim.rand(self.users.len() as u64) as usize].clone();
        let records = self.records(sim);
        let peers: Vec<Peer> = (0..sim.rand(4)).map(|_| self.peer(sim)).collect();
        let (pred, lo, hi) = (self.peer(sim), sim.rand(MODULUS), sim.rand(MODULUS));
        let op = match sim.rand(4) {
            0 => FindOp::Locate,
            1 => FindOp::Resolve { user: user.clone() },
            2 => FindOp::Held { user: user.clone() },
            _ => FindOp::Register {
                record: records[0].clone(),
            },
        };
        let outcome = match sim.rand(4) {
            0 => Outcome::Node,
            1 => Outcome::Registered,
            2 => Outcome::Error(FindError::NotFound),
            _ => Outcome::Record(records[0].clone()),
        };
        let n = sim.rand(1000) as u32;
        let frame = match sim.rand(25) {
            0 => RingFrame::Discover { rid },
            1 => RingFrame::Here { rid, lo, hi },
            2 => RingFrame::Cookie { rid, cookie: key },
            // In an open ring a JOIN makes it a member (that then lies and falls silent).
            3 => RingFrame::Join { rid, cookie: 0 },
            4 => RingFrame::Welcome {
                rid,
                id,
                chunks: n % 3,
                pred,
                succs: peers,
            },
            5 => RingFrame::Refuse { rid },
            6 => RingFrame::Records {
                rid,
                seq: n % 2,
                total: 1 + n % 2,
                records,
            },
            7 => RingFrame::Ack { rid, seq: n % 3 },
            8 => RingFrame::GetState { rid, cookie: 0 },
            9 => RingFrame::State {
                rid,
                id,
                pred: Some(pred),
                succs: peers,
            },
            10 | 11 => RingFrame::Rectify { rid, cookie: 0, id },
            12 => RingFrame::Ping { rid, cookie: 0 },
            13 | 14 => RingFrame::Find {
                rid,
                cookie: 0,
                key,
                op,
            },
            15 => RingFrame::Refer { rid, peer: pred },
            16 => RingFrame::Found { rid, id, outcome },
            17 => RingFrame::Busy { rid },
            18 | 19 => RingFrame::Replicate {
                rid,
                cookie: 0,
                records,
            },
            20 => RingFrame::Sync {
                rid,
                cookie: 0,
                lo,
                hi,
                count: n.into(),
                digest: key,
            },
            21 => RingFrame::Synced { rid, want: true },
            22 => RingFrame::Fetch {
                rid,
                cookie: 0,
                lo,
                hi,
            },
            23 => RingFrame::Fix { rid, cookie: 0 },
            _ => match sim.rand(2) {
                0 => RingFrame::Leave {
                    rid,
                    cookie: 0,
                    chunks: n % 2,
                    pred: Some(pred),
                    succs: peers,
                },
                _ => RingFrame::Drop {
                    rid,
                    cookie: 0,
                    lo,
                    hi,
                },
            },
        };
        if frame.cookie().is_some() && self.sent.len() < 4096 {
            self.sent.push((to, frame.clone()));
        }
        self.send(sim, to, Frame::Ring(frame));
        // Client frames too: a forged registration of a registered name.
        if sim.rand(4) == 0 {
            let r = forged(&user, sim.rand(1000) + 1000);
            let f = Frame::Register((&r).into()).into_owned();
            self.send(sim, to, f);
        }
    }

    /// Answers cookie challenges (resending the request with the cookie), replays a
    /// frame it heard, and sends a new one.
    fn act(&mut self, sim: &mut Sim) {
        for (from, f) in sim.take_outside(self.me) {
            let Frame::Ring(rf) = f else { continue };
            if let RingFrame::Cookie { rid, cookie } = rf {
                let again: Vec<RingFrame> = self
                    .sent
                    .iter()
                    .filter(|(to, q)| *to == from && q.rid() == rid)
                    .map(|(_, q)| q.clone())
                    .collect();
                for mut q in again {
                    q.set_cookie(cookie);
                    self.send(sim, from, Frame::Ring(q));
                }
            } else if self.heard.len() < 1024 {
                self.heard.push(rf);
            }
        }
        if !self.heard.is_empty() && sim.rand(3) == 0 {
            let f = self.heard[sim.rand(self.heard.len() as u64) as usize].clone();
            let members = sim.members();
            if !members.is_empty() {
                let to = members[sim.rand(members.len() as u64) as usize];
                self.send(sim, to, Frame::Ring(f));
            }
        }
        self.one(sim);
    }
}

/// Runs for `d`, the stranger (if any) acting every few milliseconds.
fn advance(sim: &mut Sim, stranger: &mut Option<Stranger>, d: Duration) -> Result<(), Violation> {
    let Some(s) = stranger.as_mut() else {
        return sim.run_for(d);
    };
    let end = sim.now + d;
    while sim.now < end {
        s.act(sim);
        let step = ms(5 + sim.rand(20)).min(end - sim.now);
        sim.run_for(step)?;
    }
    Ok(())
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
    let hostile = matches!(mix, Mix::Hostile | Mix::HostileKeyed);
    let config = Config {
        authenticated: mix == Mix::HostileKeyed,
        ..Config::default()
    };
    let sim = holder.insert(Sim::new(seed, net(mix), config));
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
    let mut stranger = hostile.then(|| Stranger::new(sim, mix == Mix::Hostile, &users));
    advance(sim, &mut stranger, Duration::from_secs(2))?;

    // Faults, with repair between rounds.
    let rounds = 1 + sim.rand(3);
    let mut crashed: Vec<SocketAddrV4> = Vec::new();
    for round in 0..rounds {
        let members = sim.members().len();
        match mix {
            Mix::Clean | Mix::Lossy | Mix::Hostile | Mix::HostileKeyed => {
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
            advance(sim, &mut stranger, d)?;
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
    // No node holds a record under the stranger's key for a registered name.
    for (user, rec) in sim.acked().clone() {
        for a in sim.live() {
            if let Some(r) = sim.node(a).and_then(|n| n.record(&user)) {
                if r.pubkey_b64 != rec.pubkey_b64 {
                    return Err(Violation(format!("{a} holds a forged {user}")));
                }
            }
        }
    }
    if let Some(s) = &stranger {
        if s.ring && s.frames == 0 {
            return Err(Violation("the stranger sent nothing".into()));
        }
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

#[test]
fn seeds_hostile() {
    run_mix(Mix::Hostile, 50, 6000);
}

#[test]
fn seeds_hostile_keyed() {
    run_mix(Mix::HostileKeyed, 50, 7000);
}
