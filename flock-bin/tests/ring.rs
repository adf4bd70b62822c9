//! Real `flock server` processes, one per network namespace on a private bridge: ring
//! formation by broadcast, the original's acceptance scenario, crash recovery, reads
//! during repair (every survivor sampled every 250 ms after a kill -9), restarts from the
//! data directory and spoofed ring frames. Needs root (skips loudly without).
//!
//! Every wait is a condition poll with a deadline; every server is killed on drop.

mod common {
    pub mod flock;
    pub mod netns;
}

use std::path::Path;
use std::time::{Duration, Instant};

use common::flock::{
    self as f, Server, all_resolve, register, ring_order, status, users, wait_member, wait_ring,
};
use common::netns::{Host, Net, wait_for};

/// The tests of this file run one at a time: each starts up to seven processes whose
/// failure detectors (200 ms timeouts) must not starve on a busy machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Servers of one test; prints their log tails if the test fails.
struct Cluster {
    servers: Vec<Option<Server>>,
}

impl Cluster {
    fn new() -> Self {
        Self {
            servers: Vec::new(),
        }
    }

    fn start(&mut self, host: &Host, name: &str, dir: &Path, extra: &[&str]) -> usize {
        self.servers
            .push(Some(Server::start(host, name, dir, extra)));
        self.servers.len() - 1
    }

    fn get(&mut self, i: usize) -> &mut Server {
        self.servers[i].as_mut().expect("server running")
    }

    fn addr(&self, i: usize) -> String {
        self.servers[i].as_ref().expect("server running").addr()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in self.servers.iter().flatten() {
                eprintln!(
                    "---- log of {} ({}) ----\n{}",
                    s.name,
                    s.host.ip,
                    s.log_tail(40)
                );
            }
        }
    }
}

fn addr_of(h: &Host) -> String {
    format!("{}:12345", h.ip)
}

/// Starts node 0 alone, waits until it founds the ring, then starts the others at once;
/// all find the ring by broadcast. Waits for one consistent ring.
fn form_ring(net: &Net, cl: &mut Cluster, dir: &Path, n: usize, extra: &[&str]) -> Vec<String> {
    let h0 = net.host(0).clone();
    cl.start(&h0, "n1", dir, extra);
    wait_member(&h0, &addr_of(&h0), Duration::from_secs(20));
    for i in 1..n {
        cl.start(net.host(i), &format!("n{}", i + 1), dir, extra);
    }
    let addrs: Vec<String> = (0..n).map(|i| addr_of(net.host(i))).collect();
    wait_ring(&h0, &addrs, Duration::from_secs(60))
}

#[test]
fn five_servers_form_one_ring_by_broadcast() {
    let _serial = serial();
    let Some(net) = Net::new("five_servers_form_one_ring_by_broadcast", 5) else {
        return;
    };
    let dir = f::tempdir("five");
    let mut cl = Cluster::new();
    let order = form_ring(&net, &mut cl, dir.path(), 5, &[]);
    eprintln!("ring order: {order:?}");
    // Every node sees the same ring.
    let addrs: Vec<String> = (0..5).map(|i| addr_of(net.host(i))).collect();
    for i in 0..5 {
        assert!(
            ring_order(net.host(i), &addrs).is_some(),
            "ring as seen from node {i}"
        );
    }
    // Discovery as the original's clients do it: multicast DISCOVER_SERVER gets every
    // server's IP, broadcast DISCOVER every server's name.
    let ips = f::send_raw(
        net.host(0),
        "224.0.0.1:10003",
        &["DISCOVER_SERVER".into()],
        false,
    );
    for i in 0..5 {
        let ip = net.host(i).ip.to_string();
        assert!(
            ips.lines().any(|l| l == ip),
            "{ip} answers DISCOVER_SERVER: {ips:?}"
        );
    }
    let names = f::send_raw(
        net.host(0),
        "255.255.255.255:12345",
        &["DISCOVER".into()],
        false,
    );
    for i in 1..=5 {
        assert!(
            names.lines().any(|l| l == format!("n{i}")),
            "n{i} answers DISCOVER: {names:?}"
        );
    }
    // A user registered through one node resolves through every other.
    let u = vec!["alice".to_string()];
    assert!(register(
        net.host(2),
        &addrs[2],
        &dir.path().join("keys"),
        &u
    ));
    for (i, a) in addrs.iter().enumerate() {
        wait_for(
            &format!("alice via node {}", i + 1),
            Duration::from_secs(10),
            || all_resolve(net.host(i), a, &u, 1500).then_some(()),
        );
    }
    drop(cl);
}

#[test]
fn original_acceptance_scenario() {
    acceptance_scenario("original_acceptance_scenario", false);
}

/// The same scenario in a ring whose members share a cluster key.
#[test]
fn original_acceptance_scenario_with_a_cluster_key() {
    acceptance_scenario("acceptance_keyed", true);
}

/// Makes a cluster key file in `dir` (with `flock keygen --cluster` on the first host).
fn cluster_key(net: &Net, dir: &Path) -> String {
    let key = dir.join("cluster.key").to_string_lossy().into_owned();
    assert!(f::flock(net.host(0), &["keygen", "--cluster", &key]).0);
    key
}

fn acceptance_scenario(test: &str, keyed: bool) {
    let _serial = serial();
    let Some(mut net) = Net::new(test, 3) else {
        return;
    };
    let h4 = net.add_host().expect("host 4");
    let dir = f::tempdir(test);
    let key = keyed.then(|| cluster_key(&net, dir.path()));
    let mut cl = Cluster::new();
    // The original's defaults: no --bind (0.0.0.0, broadcasts on the command socket).
    let mut defaults = vec!["--bind", "-"];
    if let Some(key) = &key {
        defaults.extend(["--cluster-key", key.as_str()]);
    }
    form_ring(&net, &mut cl, dir.path(), 3, &defaults);
    let keys = dir.path().join("keys");
    let names = ["alice", "bob", "carol"];
    for (i, name) in names.iter().enumerate() {
        let u = vec![name.to_string()];
        assert!(
            register(net.host(i), &cl.addr(i), &keys, &u),
            "register {name}"
        );
    }
    let all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    // Stop 2 and 3 (graceful), start 4, stop 1.
    assert!(
        cl.get(1).terminate(Duration::from_secs(10)),
        "node 2 exits on SIGTERM"
    );
    assert!(
        cl.get(2).terminate(Duration::from_secs(10)),
        "node 3 exits on SIGTERM"
    );
    let i4 = cl.start(&h4, "n4", dir.path(), &defaults);
    let a1 = cl.addr(0);
    let a4 = cl.addr(i4);
    wait_ring(&h4, &[a1.clone(), a4.clone()], Duration::from_secs(30));
    wait_for(
        "all users via 1 before it stops",
        Duration::from_secs(15),
        || all_resolve(&h4, &a1, &all, 1500).then_some(()),
    );
    assert!(
        cl.get(0).terminate(Duration::from_secs(10)),
        "node 1 exits on SIGTERM"
    );
    wait_for(
        "alice, bob and carol via node 4",
        Duration::from_secs(20),
        || all_resolve(&h4, &a4, &all, 1500).then_some(()),
    );
    let s = status(&h4, &a4).expect("status of 4");
    assert_eq!(s["owned"].as_u64(), Some(3), "node 4 owns everything: {s}");
}

/// A 6-node ring with 30 registered users, and the `k` adjacent nodes (in ring order)
/// that own the most records between them, chosen to be killed.
struct Doomed {
    net: Net,
    _dir: tempfile::TempDir,
    cl: Cluster,
    us: Vec<String>,
    victims: Vec<usize>,
    survivors: Vec<usize>,
    owned_before: u64,
}

/// Forms the ring of [`Doomed`] (`keyed`: with a cluster key); `None` without root.
fn doomed_ring(test: &str, k: usize, keyed: bool) -> Option<Doomed> {
    let net = Net::new(test, 6)?;
    let dir = f::tempdir(test);
    let key = keyed.then(|| cluster_key(&net, dir.path()));
    let extra: Vec<&str> = match &key {
        Some(key) => vec!["--cluster-key", key],
        None => Vec::new(),
    };
    let mut cl = Cluster::new();
    let order = form_ring(&net, &mut cl, dir.path(), 6, &extra);
    let us = users("user", 30);
    let keys = dir.path().join("keys");
    for (i, chunk) in us.chunks(5).enumerate() {
        assert!(register(net.host(i), &cl.addr(i), &keys, chunk));
    }
    let h0 = net.host(0).clone();
    // Replication settles (registrations are acknowledged after replication already).
    wait_for(
        "every record resolves before the kill",
        Duration::from_secs(15),
        || all_resolve(&h0, &cl.addr(0), &us, 1500).then_some(()),
    );
    let idx = |a: &str| (0..6).find(|&i| cl.addr(i) == a).expect("known node");
    let owned: Vec<u64> = order
        .iter()
        .map(|a| status(&h0, a).map_or(0, |s| s["owned"].as_u64().unwrap_or(0)))
        .collect();
    let start = (0..6)
        .max_by_key(|&s| (0..k).map(|j| owned[(s + j) % 6]).sum::<u64>())
        .expect("six nodes");
    let victims: Vec<usize> = (0..k).map(|j| idx(&order[(start + j) % 6])).collect();
    let owned_before: u64 = (0..k).map(|j| owned[(start + j) % 6]).sum();
    let survivors: Vec<usize> = (0..6).filter(|i| !victims.contains(i)).collect();
    Some(Doomed {
        net,
        _dir: dir,
        cl,
        us,
        victims,
        survivors,
        owned_before,
    })
}

impl Doomed {
    fn kill(&mut self) -> Instant {
        let t0 = Instant::now();
        for &v in &self.victims {
            self.cl.get(v).kill9();
        }
        t0
    }

    /// After repair: every record resolves through every survivor, the survivors form
    /// one ring, and each record is owned exactly once.
    fn check_repaired(&self) {
        let hs = self.net.host(self.survivors[0]).clone();
        for &s in &self.survivors {
            assert!(
                all_resolve(self.net.host(s), &self.cl.addr(s), &self.us, 3000),
                "every record via survivor {s}"
            );
        }
        let addrs: Vec<String> = self.survivors.iter().map(|&s| self.cl.addr(s)).collect();
        wait_ring(&hs, &addrs, Duration::from_secs(30));
        let total: u64 = self
            .survivors
            .iter()
            .map(|&s| status(&hs, &self.cl.addr(s)).map_or(0, |j| j["owned"].as_u64().unwrap_or(0)))
            .sum();
        assert_eq!(total, 30, "each record owned exactly once after repair");
    }
}

/// Kills `k` adjacent nodes of a 6-node ring with SIGKILL; every record must resolve
/// again through every survivor. Prints the recovery time. `keyed`: the ring uses a
/// cluster key.
fn kill_adjacent(k: usize, keyed: bool) {
    let _serial = serial();
    let test = format!(
        "kill9_{k}_adjacent_of_6{}",
        if keyed { "_keyed" } else { "" }
    );
    let Some(mut d) = doomed_ring(&test, k, keyed) else {
        return;
    };
    let t0 = d.kill();
    let entry = d.survivors[0];
    let hs = d.net.host(entry).clone();
    wait_for(
        "every record resolves after the kill",
        Duration::from_secs(45),
        || all_resolve(&hs, &d.cl.addr(entry), &d.us, 1500).then_some(()),
    );
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "RECOVERY: kill -9 of {k} adjacent node(s) of 6 ({} records owned by them, cluster key: {keyed}): \
         all 30 records resolve again after {secs:.2} s",
        d.owned_before
    );
    d.check_repaired();
}

/// Reads never stop: kills `k` adjacent nodes of 6 and, every 250 ms from the kill
/// until 4 s after it, every survivor is asked for all 30 users at once (each sample a
/// client with the usual 3 s patience, resending every second). Prints the table of
/// answers per sample and survivor; every sample must get all 30.
fn reads_during_repair(k: usize) {
    const SAMPLE: Duration = Duration::from_millis(250);
    const SAMPLES: u32 = 17;
    let _serial = serial();
    let test = format!("reads_during_repair_{k}_of_6");
    let Some(mut d) = doomed_ring(&test, k, false) else {
        return;
    };
    let t0 = d.kill();
    // (sample, survivor) -> (answered, wall time of the sample).
    let rows: Vec<(u32, Vec<(usize, Duration)>)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..SAMPLES {
            let at = t0 + SAMPLE * i;
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let per: Vec<_> = d
                .survivors
                .iter()
                .map(|&v| {
                    let host = d.net.host(v).clone();
                    let addr = d.cl.addr(v);
                    let us = d.us.clone();
                    s.spawn(move || {
                        let start = Instant::now();
                        let m = f::resolve(&host, &addr, &us, 3000);
                        let ok = us
                            .iter()
                            .filter(|u| m.get(*u).is_some_and(|r| r.starts_with("OK ")))
                            .count();
                        (ok, start.elapsed())
                    })
                })
                .collect();
            handles.push((i, per));
        }
        handles
            .into_iter()
            .map(|(i, per)| {
                let got = per
                    .into_iter()
                    .map(|h| h.join().expect("sampler"))
                    .collect();
                (i, got)
            })
            .collect()
    });
    let names: Vec<String> = d.survivors.iter().map(|&v| d.cl.addr(v)).collect();
    eprintln!(
        "READS DURING REPAIR: kill -9 of {k} adjacent node(s) of 6 ({} records owned by them)",
        d.owned_before
    );
    eprintln!("| t after kill | {} | slowest sample |", names.join(" | "));
    eprintln!("|---|{}---|", "---|".repeat(names.len()));
    let mut short = Vec::new();
    for (i, got) in &rows {
        let slowest = got.iter().map(|(_, t)| *t).max().unwrap_or_default();
        let cells: Vec<String> = got.iter().map(|(ok, _)| format!("{ok}/30")).collect();
        eprintln!(
            "| {:.2} s | {} | {:.2} s |",
            (SAMPLE * *i).as_secs_f64(),
            cells.join(" | "),
            slowest.as_secs_f64()
        );
        for (j, (ok, _)) in got.iter().enumerate() {
            if *ok != 30 {
                short.push(format!("t={i}x250ms via {}: {ok}/30", names[j]));
            }
        }
    }
    assert!(short.is_empty(), "reads stopped during repair: {short:?}");
    d.check_repaired();
}

#[test]
fn kill9_one_of_six_every_read_answered_during_repair() {
    reads_during_repair(1);
}

#[test]
fn kill9_two_adjacent_of_six_every_read_answered_during_repair() {
    reads_during_repair(2);
}

#[test]
fn kill9_three_adjacent_of_six_every_read_answered_during_repair() {
    reads_during_repair(3);
}

#[test]
fn kill9_two_adjacent_of_six_with_a_cluster_key_loses_nothing() {
    kill_adjacent(2, true);
}

#[test]
fn kill9_one_node_of_six_loses_nothing() {
    kill_adjacent(1, false);
}

#[test]
fn kill9_two_adjacent_of_six_loses_nothing() {
    kill_adjacent(2, false);
}

#[test]
fn kill9_three_adjacent_of_six_loses_nothing() {
    kill_adjacent(3, false);
}

#[test]
fn restarted_node_rejoins_with_its_records() {
    let _serial = serial();
    let Some(net) = Net::new("restarted_node_rejoins_with_its_records", 4) else {
        return;
    };
    let dir = f::tempdir("restart");
    let mut cl = Cluster::new();
    form_ring(&net, &mut cl, dir.path(), 4, &[]);
    let us = users("rec", 20);
    let keys = dir.path().join("keys");
    assert!(register(net.host(0), &cl.addr(0), &keys, &us));
    let h0 = net.host(0).clone();
    // Node 3 (index 2) holds records: with 3 replicas per record, every node of 4 does.
    let victim = 2;
    wait_for("victim stores the records", Duration::from_secs(15), || {
        status(&h0, &cl.addr(victim))
            .and_then(|s| {
                s["stored"]["owned"]
                    .as_u64()
                    .zip(s["stored"]["replicas"].as_u64())
            })
            .filter(|(o, r)| o + r == 20)
    });
    let (data, log, host, name) = {
        let s = cl.get(victim);
        (
            s.data.clone(),
            s.log.clone(),
            s.host.clone(),
            s.name.clone(),
        )
    };
    cl.get(victim).kill9();
    let others = [0usize, 1, 3];
    let addrs: Vec<String> = others.iter().map(|&i| cl.addr(i)).collect();
    wait_ring(&h0, &addrs, Duration::from_secs(30));
    // Restart from the same data directory.
    let s = Server::start_with(&host, &name, &data, &log, &[]);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    cl.servers[victim] = Some(s);
    wait_for(
        "the restarted node's start-up line",
        Duration::from_secs(10),
        || {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            t[log_text.len().min(t.len())..]
                .lines()
                .find(|l| l.contains("listening on"))
                .map(str::to_string)
        },
    );
    let t = std::fs::read_to_string(&log).unwrap_or_default();
    let restarted = &t[log_text.len().min(t.len())..];
    assert!(
        restarted.contains("(20 records)"),
        "restart loads the 20 records from disk:\n{restarted}"
    );
    let all: Vec<String> = (0..4).map(|i| cl.addr(i)).collect();
    wait_ring(&h0, &all, Duration::from_secs(30));
    wait_for(
        "the restarted node holds every record again",
        Duration::from_secs(20),
        || {
            status(&h0, &cl.addr(victim))
                .and_then(|s| s["records"].as_u64())
                .filter(|n| *n == 20)
        },
    );
    assert!(all_resolve(&host, &cl.addr(victim), &us, 3000));
}

#[test]
fn spoofed_ring_frames_from_a_non_member_change_nothing() {
    let _serial = serial();
    let Some(mut net) = Net::new("spoofed_ring_frames_from_a_non_member_change_nothing", 4) else {
        return;
    };
    let evil = net.add_host().expect("attacker host");
    let dir = f::tempdir("spoof");
    let mut cl = Cluster::new();
    form_ring(&net, &mut cl, dir.path(), 4, &[]);
    let us = users("spoof", 12);
    let keys = dir.path().join("keys");
    assert!(register(net.host(0), &cl.addr(0), &keys, &us));
    let h0 = net.host(0).clone();
    let addrs: Vec<String> = (0..4).map(|i| cl.addr(i)).collect();
    // Let replication settle: the checksums must be stable before the attack.
    let snapshot = |h: &Host| -> Option<Vec<String>> {
        addrs
            .iter()
            .map(|a| {
                let s = status(h, a)?;
                Some(format!(
                    "{} {} {} {} {} {}",
                    s["lo"], s["hi"], s["pred"], s["succs"], s["records"], s["owned"]
                ))
            })
            .collect()
    };
    wait_for("all 12 records resolve", Duration::from_secs(15), || {
        all_resolve(&h0, &addrs[0], &us, 1500).then_some(())
    });
    let before = wait_for("a stable view of the ring", Duration::from_secs(30), || {
        let a = snapshot(&h0)?;
        std::thread::sleep(Duration::from_millis(600));
        (snapshot(&h0)? == a).then_some(a)
    });
    let before_resolve = f::resolve(&h0, &addrs[0], &us, 3000);

    let e = evil.ip;
    let victim_ip = net.host(1).ip;
    let key = "TUlJQklqQU5CZ2txaGtpRzl3MEJBUUVGQUFPQ0FROEFNSUlCQ2dLQ0FRRUE=";
    let sig = "c2ln";
    let mut frames: Vec<String> = vec![
        // The original's unauthenticated ring frames.
        "KILL".into(),
        "JOIN".into(),
        format!("PRED_CHANGE {e}"),
        format!("SUCC {e} {e}"),
        "FIX".into(),
        format!("REPLIC a0_spoof {e} 6666 99999999999999999 {key}"),
        format!("TAKEOVER b1_spoof {e} 6666 99999999999999999 {key}"),
        format!("REPLIC c2_spoof {e} 6666"),
        format!("TAKEOVER d3_spoof {e} 6666"),
        format!("DROP_REPLICS {victim_ip}"),
        // The original's forwarded forms (reflection to any address).
        format!("RESOLVE {victim_ip} 9 a0_spoof"),
        format!("REGISTER {e} 5000 evil4 {e} 6666 99999999999999999 {key} {sig}"),
        format!("REGISTER . . evil5 {e} 6666 99999999999999999 {key} {sig}"),
        // Our ring frames, with made-up cookies and request ids.
        "RING JOIN 11 0".into(),
        "RING JOIN 12 12345".into(),
        "RING RECTIFY 13 777 1".into(),
        "RING FIX 14 99".into(),
        "RING DROP 15 1 0 1000000000000000002".into(),
        format!("RING LEAVE 16 5 0 - 1 1@{e}:12345"),
        format!("RING REPLICATE 17 3 1 evil6 {e} 6666 99999999999999999 {key} {sig}"),
        format!("RING FIND 18 1 5 REGISTER evil7 {e} 6666 99999999999999999 {key} {sig}"),
        "RING SYNC 19 1 0 1000000000000000002 0 0".into(),
        "RING FETCH 20 1 0 1000000000000000002".into(),
        // Unsolicited replies.
        format!("RING STATE 21 1 1@{e}:12345 1 1@{e}:12345"),
        format!("RING WELCOME 22 5 0 1@{e}:12345 0"),
        format!("RING RECORDS 23 0 1 1 evil8 {e} 6666 99999999999999999 {key} {sig}"),
        format!("RING FOUND 24 5 REC evil9 {e} 6666 9 {key} {sig}"),
        format!("RING REFER 25 1@{e}:12345"),
        "RING ACK 26 0".into(),
        "RING SYNCED 27 1".into(),
        "RING HERE 28 0 5".into(),
    ];
    // Also a frame that does not parse at all, and one that is too long.
    frames.push("RING".into());
    frames.push(format!("RING JOIN {}", "9".repeat(400)));
    for a in &addrs {
        f::send_raw(&evil, a, &frames, false);
        // A peer that answers the cookie challenge: only real-address proof, no membership.
        let cookie_frames: Vec<String> = vec![
            "RING FIX 31 0".into(),
            "RING DROP 32 0 0 1000000000000000002".into(),
            format!("RING LEAVE 33 0 0 - 1 1@{e}:12345"),
            format!("RING REPLICATE 34 0 1 evil10 {e} 6666 99999999999999999 {key} {sig}"),
        ];
        f::send_raw(&evil, a, &cookie_frames, true);
    }
    // Nodes alive, same ring, same records, same answers.
    for i in 0..4 {
        assert!(cl.get(i).alive(), "node {} survived", i + 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = wait_for("a view of the ring", Duration::from_secs(10), || {
        snapshot(&h0)
    });
    assert_eq!(before, after, "ring state changed under spoofed frames");
    assert!(ring_order(&h0, &addrs).is_some());
    let after_resolve = f::resolve(&h0, &addrs[0], &us, 3000);
    assert_eq!(before_resolve, after_resolve, "records changed");
    for extra in ["evil4", "evil5", "evil6", "evil7", "evil8", "evil10"] {
        let m = f::resolve(&h0, &addrs[0], &[extra.to_string()], 1500);
        assert!(
            m.get(extra).is_some_and(|r| r.starts_with("ERROR 404")),
            "{extra} must not exist: {m:?}"
        );
    }
    let s = status(&h0, &addrs[1]).expect("status");
    eprintln!("victim counters after the attack: {}", s["counters"]);

    // A non-member that answers the cookie challenge proves only that it owns its
    // address. Claiming a ring position just before a node makes the ring machine
    // (Zave's rectify) take it as that node's predecessor until it fails the liveness
    // checks; the range, the successors and the records never change, and the ring is
    // back as before within seconds.
    let before_ring = wait_for("ring order", Duration::from_secs(10), || {
        ring_order(&h0, &addrs)
    });
    for a in &addrs {
        let id = status(&h0, a).expect("status")["id"]
            .as_str()
            .and_then(|x| x.parse::<u64>().ok())
            .expect("id");
        let claim = id.saturating_sub(1).max(1);
        f::send_raw(&evil, a, &[format!("RING RECTIFY 41 0 {claim}")], true);
    }
    let t = Instant::now();
    wait_for(
        "the ring as before the RECTIFY claims",
        Duration::from_secs(15),
        || (snapshot(&h0)? == before && ring_order(&h0, &addrs)? == before_ring).then_some(()),
    );
    eprintln!(
        "SPOOF: ring restored {:.2} s after cookie-answering RECTIFY claims",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(f::resolve(&h0, &addrs[0], &us, 3000), before_resolve);
}

/// The README's one-host example, its `flock server` lines verbatim but for the data
/// directory: `flock server node1`, then `b` on port 23003 and `c` on 23005, both
/// `--bind 127.0.0.1 --join 127.0.0.1:12345`. node1 is bound to 0.0.0.0 and advertises its LAN address while node2 reaches it through
/// 127.0.0.1: node1's ring frames must leave from its advertised address, or node2's
/// requests and the answers it gets never match (node2 never got in, node1 looped
/// "stopped answering"). All end up members of one ring of three, and say which founded.
#[test]
fn readme_one_host_commands_form_a_ring() {
    let _serial = serial();
    let Some(net) = Net::new("readme_one_host_commands_form_a_ring", 1) else {
        return;
    };
    let h = net.host(0).clone();
    let dir = f::tempdir("onehost");
    let mut cl = Cluster::new();
    // Exactly the README's `flock server` lines (the test adds only the data directory
    // and the admin allow-list; `--bind -`, its convention for "no --bind added").
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let lines: Vec<Vec<&str>> = readme
        .lines()
        .filter(|l| l.starts_with("flock server "))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .skip(2)
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 3, "the README starts three servers: {lines:?}");
    let mut nodes = Vec::new();
    let mut ring = Vec::new();
    for (i, words) in lines.iter().enumerate() {
        let (name, args) = words.split_first().expect("a server name");
        let mut extra = vec!["--bind", "-"];
        extra.extend_from_slice(args);
        let port = args
            .iter()
            .position(|a| *a == "--port")
            .map_or("12345", |p| args[p + 1]);
        let at = format!("127.0.0.1:{port}");
        nodes.push((
            name.to_string(),
            at.clone(),
            cl.start(&h, name, dir.path(), &extra),
        ));
        wait_member(&h, &at, Duration::from_secs(20));
        // The first node is known by its advertised address, the others by their
        // loopback one.
        ring.push(if i == 0 { addr_of(&h) } else { at });
    }
    wait_ring(&h, &ring, Duration::from_secs(30));
    for (_, at, _) in &nodes {
        let s = status(&h, at).expect("status");
        assert_eq!(s["member"], true, "{at}: {s}");
        let succs = s["succs"].as_array().map(Vec::len);
        assert_eq!(succs, Some(nodes.len() - 1), "{at}: {s}");
    }
    for (i, (name, _, n)) in nodes.iter().enumerate() {
        let log = std::fs::read_to_string(&cl.get(*n).log).unwrap_or_default();
        let said = if i == 0 {
            format!("{name} founded a new ring")
        } else {
            format!("{name} joined the ring")
        };
        assert!(log.contains(&said), "{log}");
        if i == 0 {
            assert!(!log.contains("stopped answering"), "{log}");
        }
    }
    // `flock status` through the loopback alias of the first node counts each node once,
    // every one a member.
    let (ok, table) = f::flock(&h, &["status", "127.0.0.1:12345"]);
    assert!(ok, "{table}");
    assert!(table.contains("3 nodes,"), "{table}");
}
