//! Issue 10 with real `flock server` processes in network namespaces: the ring is not a
//! reflector (bytes out per byte in from a source that never proved its address, for
//! every request type), admin requests need a proven address from `--admin-allow`, and
//! the legitimate flows (our tools' cookie round trip) still work. Needs root (skips
//! loudly without).

mod common {
    pub mod flock;
    pub mod netns;
}

use std::process::Stdio;
use std::time::Duration;

use common::flock::{self as f, Server, register, status, users, wait_member};
use common::netns::{Net, wait_for};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints the server's log if the test fails.
struct LogOnPanic<'a>(&'a Server);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.0.name, self.0.log_tail(60));
        }
    }
}

/// Sends `msg` once from a fresh socket on `host` (a source that never proved its
/// address) and returns (bytes in, bytes out) as the server saw them.
fn one_exchange(host: &common::netns::Host, addr: &str, msg: &str) -> (usize, usize, String) {
    let out = f::send_raw(host, addr, &[msg.to_string()], false);
    let bytes: usize = out.lines().map(str::len).sum();
    let first = out.lines().next().unwrap_or("").chars().take(60).collect();
    (msg.len(), bytes, first)
}

/// Waits until the node at `addr` answers `PING` from `host`.
fn wait_ping(host: &common::netns::Host, addr: &str) {
    wait_for("the node answers PING", Duration::from_secs(20), || {
        f::send_raw(host, addr, &["PING".into()], false)
            .contains("PONG")
            .then_some(())
    });
}

/// Servers `n1..` on `hosts` (one each), all with `extra`, the others joining the first;
/// returns them once they form one ring (as seen from `watch`).
fn start_ring(
    hosts: &[common::netns::Host],
    watch: &common::netns::Host,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Vec<Server>, Vec<String>) {
    let mut servers = vec![Server::start(&hosts[0], "n1", dir, extra)];
    let a0 = servers[0].addr();
    wait_member(watch, &a0, Duration::from_secs(20));
    for (i, h) in hosts.iter().enumerate().skip(1) {
        let mut e = extra.to_vec();
        e.extend(["--join", &a0]);
        servers.push(Server::start(h, &format!("n{}", i + 1), dir, &e));
    }
    let addrs: Vec<String> = servers.iter().map(Server::addr).collect();
    f::wait_ring(watch, &addrs, Duration::from_secs(30));
    (servers, addrs)
}

#[test]
fn no_reply_exceeds_three_times_the_request_from_an_unvalidated_source() {
    let _serial = serial();
    let Some(net) = Net::new("no_reply_exceeds_three_times", 3) else {
        return;
    };
    let dir = f::tempdir("amplification");
    let (h0, h1, evil) = (
        net.host(0).clone(),
        net.host(1).clone(),
        net.host(2).clone(),
    );
    let server = Server::start(&h0, "n1", dir.path(), &["--no-broadcast"]);
    let _log = LogOnPanic(&server);
    let a = server.addr();
    // `flock status` from another host works: the cookie round trip is transparent.
    wait_member(&h1, &a, Duration::from_secs(20));
    let us = users("amp", 40);
    assert!(register(&h1, &a, &dir.path().join("keys"), &us));
    // `flock resolve` (our tools) gets every record through the cookie.
    wait_for("every user resolves", Duration::from_secs(20), || {
        f::all_resolve(&h1, &a, &us, 2000).then_some(())
    });

    let e = evil.ip;
    let victim = h1.ip;
    let alice = &us[0];
    let key = "TUlJQklqQU5CZ2txaGtpRzl3MEJBUUVGQUFPQ0FROEFNSUlCQ2dLQ0FRRUE=";
    // Every row from a fresh socket: a fresh source address.
    let requests: Vec<(&str, String)> = vec![
        ("RESOLVE_REGISTERED", format!("RESOLVE {alice}")),
        ("PING", "PING".into()),
        ("DISCOVER", "DISCOVER".into()),
        ("DISCOVER_SERVER", "DISCOVER_SERVER".into()),
        (
            // From the local subnet: in scope, answered to that address with a reply
            // smaller than the request (the third party gets < 1 byte per byte).
            "DISCOVER_SERVER_PROXIED_TO_THIRD_PARTY",
            "DISCOVER_SERVER:192.0.2.7:9".into(),
        ),
        ("RANGE", "RANGE".into()),
        ("RESOLVE_UNKNOWN", "RESOLVE nobody_here".into()),
        ("REGISTER_3FIELD", format!("REGISTER newbie {e} 4000")),
        (
            "REGISTER_BADSIG",
            format!("REGISTER evil {e} 6666 99 {key} c2ln"),
        ),
        ("STATUS", "STATUS".into()),
        ("SNAPSHOT", "SNAPSHOT".into()),
        ("CHECKSUM", "CHECKSUM".into()),
        (
            "STATUS_COOKIE_PLACEHOLDER",
            "COOKIE 0000000000000000 STATUS".into(),
        ),
        (
            "SNAPSHOT_FORGED_COOKIE",
            "COOKIE 0123456789abcdef SNAPSHOT".into(),
        ),
        ("FORWARDED_RESOLVE", format!("RESOLVE {victim} 9 {alice}")),
        ("JOIN", "JOIN".into()),
        ("PRED_CHANGE", format!("PRED_CHANGE {e}")),
        ("KILL", "KILL".into()),
        ("RING_DISCOVER", "RING DISCOVER 7".into()),
        ("RING_JOIN", "RING JOIN 11 0".into()),
        ("RING_GET_STATE", "RING GET_STATE 12 0".into()),
        ("RING_PING", "RING PING 13 0".into()),
        ("RING_FIX_SHORTEST", "RING FIX 1 0".into()),
        ("RING_RECTIFY", "RING RECTIFY 14 0 1".into()),
        (
            "RING_FIND_RESOLVE",
            format!("RING FIND 15 0 5 RESOLVE {alice}"),
        ),
        ("RING_FETCH", "RING FETCH 16 0 0 1000000000000000002".into()),
        (
            "RING_SYNC",
            "RING SYNC 17 0 0 1000000000000000002 0 0".into(),
        ),
        ("GARBAGE", "\u{1}\u{2}garbage".into()),
        // Credit banked by a large request from another port does not pay (the bound is
        // per source address).
        ("JUNK_2000_BYTES", "x".repeat(2000)),
        ("RESOLVE_REGISTERED_AFTER_JUNK", format!("RESOLVE {alice}")),
    ];
    let mut worst: f64 = 0.0;
    let mut rows = Vec::new();
    let (mut total_in, mut total_out) = (0, 0);
    for (name, msg) in &requests {
        let (bytes_in, bytes_out, first) = one_exchange(&evil, &a, msg);
        total_in += bytes_in;
        total_out += bytes_out;
        let ratio = bytes_out as f64 / bytes_in as f64;
        println!(
            "AMPLIFICATION {name:<32} in={bytes_in:>5} out={bytes_out:>6} ratio={ratio:>5.2} first={first:?}"
        );
        worst = worst.max(ratio);
        rows.push((name, ratio, first));
    }
    let total = total_out as f64 / total_in as f64;
    println!(
        "AMPLIFICATION worst ratio {worst:.2}; host total in={total_in} out={total_out} ratio={total:.2}"
    );
    for (name, ratio, _) in &rows {
        assert!(*ratio <= 3.0, "{name}: {ratio:.2} bytes out per byte in");
    }
    assert!(total <= 3.0, "the host's total: {total:.2}");
    let (_, _, first) = rows
        .iter()
        .find(|r| *r.0 == "RESOLVE_REGISTERED_AFTER_JUNK")
        .cloned()
        .expect("row");
    assert!(first.starts_with("ERROR COOKIE "), "{first}");
    // The original's client (no cookies) gets the cookie, not the record, for a
    // RESOLVE whose answer is larger than 3x its request.
    let (_, _, first) = rows
        .iter()
        .find(|r| *r.0 == "RESOLVE_REGISTERED")
        .cloned()
        .expect("row");
    assert!(first.starts_with("ERROR COOKIE "), "{first}");
    // Small answers still go: a 404 is smaller than 3x its request.
    let (_, _, first) = rows
        .iter()
        .find(|r| *r.0 == "RESOLVE_UNKNOWN")
        .cloned()
        .expect("row");
    assert_eq!(first, "ERROR 404 User not found");

    let s = status(&h1, &a).expect("status");
    let net_stats = &s["net"];
    eprintln!("net counters: {net_stats}");
    assert!(net_stats["amplification_limited"].as_u64().unwrap_or(0) >= 3);
    // Nothing changed: the 3-field REGISTER of a new name is the one legitimate write.
    assert_eq!(s["records"].as_u64(), Some(us.len() as u64 + 1), "{s}");
}

#[test]
fn admin_requests_need_a_proven_address_from_admin_allow() {
    let _serial = serial();
    let Some(net) = Net::new("admin_requests_need_admin_allow", 2) else {
        return;
    };
    let dir = f::tempdir("admin");
    let (h0, h1) = (net.host(0).clone(), net.host(1).clone());
    // Only loopback may ask (the default).
    let server = Server::start(
        &h0,
        "n1",
        dir.path(),
        &["--no-broadcast", "--admin-allow", "127.0.0.0/8"],
    );
    let _log = LogOnPanic(&server);
    let a = server.addr();
    wait_ping(&h1, &a);
    // A proven address outside --admin-allow: refused, in a reply smaller than the ask.
    let (ok, out) = f::flock(&h1, &["status", "--json", &a]);
    assert!(!ok, "STATUS from outside --admin-allow must fail: {out}");
    // Through the cookie, SNAPSHOT and CHECKSUM are refused the same way.
    for req in ["SNAPSHOT", "CHECKSUM"] {
        let first = format!("COOKIE 0000000000000000 {req}");
        let out = f::flock(&h1, &["send-raw", "--wait-ms", "500", "--to", &a, &first]).1;
        let cookie = out
            .lines()
            .find_map(|l| l.strip_prefix("ERROR COOKIE "))
            .unwrap_or_else(|| panic!("a cookie for {req}: {out}"))
            .to_string();
        // A new socket has another port: the cookie is not valid there.
        let again = format!("COOKIE {cookie} {req}");
        let out = f::flock(&h1, &["send-raw", "--wait-ms", "500", "--to", &a, &again]).1;
        assert!(
            out.lines().all(|l| !l.starts_with("OK ")),
            "{req} answered to another port or a non-admin: {out}"
        );
    }
}

/// Member spoofing (issue 10): an attacker host takes a member's IP as a second address
/// (not answering ARP for it, so the member keeps its traffic) and sends from the member's
/// exact `ip:port`: floods of cookie-less ring requests, answers nobody asked for carrying
/// forged records, and a `REPLICATE`. It gains nothing: no rate-limit exemption (the
/// flood is limited), no signature work, no state, no forged record.
#[test]
fn a_spoofed_member_address_gains_no_exemption_and_no_state() {
    let _serial = serial();
    let Some(net) = Net::new("member_spoof", 3) else {
        return;
    };
    let dir = f::tempdir("spoof");
    let hosts: Vec<_> = (0..3).map(|i| net.host(i).clone()).collect();
    let (servers, addrs) = start_ring(&hosts[..2], &hosts[2], dir.path(), &["--no-broadcast"]);
    let _logs: Vec<LogOnPanic> = servers.iter().map(LogOnPanic).collect();
    let (a, b) = (addrs[0].clone(), addrs[1].clone());
    let us = users("spoof", 6);
    assert!(register(&hosts[2], &a, &dir.path().join("keys"), &us));
    wait_for("every user resolves", Duration::from_secs(20), || {
        f::all_resolve(&hosts[2], &a, &us, 2000).then_some(())
    });
    let before = f::resolve(&hosts[2], &a, &us, 2000);

    // The attacker holds n2's IP too, silently.
    let evil = &hosts[2];
    let ns = evil.ns.as_str();
    for (k, v) in [("arp_ignore", "8"), ("arp_announce", "2")] {
        for dev in ["all", "eth0"] {
            let key = format!("net.ipv4.conf.{dev}.{k}={v}");
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw", &key])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sysctl {key}");
        }
    }
    let n2_ip = hosts[1].ip.to_string();
    common::netns::ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{n2_ip}/32"),
        "dev",
        "eth0",
    ])
    .expect("second address");
    let s0 = status(&hosts[2], &a).expect("status");
    let mallory = flock_crypto::PrivateKey::generate(&mut flock_bin::os_rng()).expect("key");
    let fields = forged_fields(&mallory, &us[0], evil.ip);
    let mut frames: Vec<String> = Vec::new();
    for k in 0..1500u64 {
        frames.push(format!("RING FETCH {} 0 0 1000000000000000002", 1000 + k));
        frames.push(format!("RING RECORDS {} 0 1 1 {fields}", 5000 + k));
    }
    frames.push(format!("RING REPLICATE 9 0 1 {fields}"));
    let sent = frames.len() as u64;
    f::send_raw_from(evil, Some(&b), &a, &frames, false);
    let d = |s: &serde_json::Value, k: &str| s["net"][k].as_u64().unwrap_or(0);
    // One socket, read in order: STATUS answered means the flood was read.
    let s1 = status(&hosts[0], &a).expect("status");
    let read = d(&s1, "datagrams_in") - d(&s0, "datagrams_in");
    let c = |s: &serde_json::Value, k: &str| s["counters"][k].as_u64().unwrap_or(0);
    let limited = d(&s1, "rate_limited") - d(&s0, "rate_limited");
    let verified = d(&s1, "verifications") - d(&s0, "verifications");
    let challenged = c(&s1, "cookie_challenge") - c(&s0, "cookie_challenge");
    println!(
        "MEMBER_SPOOF {sent} datagrams from n2's address {b} ({read} read): {limited} rate-limited, \
         {challenged} cookie challenges (sent to the real n2), {verified} RSA verifications"
    );
    // The source's burst (2,000 tokens; a record costs one more) and no more.
    assert!(limited > 0, "no exemption: {limited} of {read} limited");
    assert!(challenged <= 2000, "{challenged}");
    assert_eq!(
        verified, 0,
        "no signature work for answers nobody asked for"
    );
    // No state: the ring and every record are unchanged; the forgery never resolves.
    assert_eq!(
        f::ring_order(&hosts[0], &[a.clone(), b.clone()]).map(|o| o.len()),
        Some(2)
    );
    assert_eq!(f::resolve(&hosts[0], &a, &us, 2000), before);
    assert_eq!(f::resolve(&hosts[0], &b, &us, 2000), before);
}

/// Admin access by cluster key (issue 10): a request authenticated with the ring's key
/// (`flock status --cluster-key F`) is answered from outside `--admin-allow`, one with
/// another key or none is not; `flock status --snapshot` walks every `SNAPSHOT` page of a
/// real node and sees every record.
#[test]
fn admin_requests_by_cluster_key_and_snapshot_pages_through_a_real_process() {
    let _serial = serial();
    let Some(net) = Net::new("admin_by_key", 2) else {
        return;
    };
    let dir = f::tempdir("adminkey");
    let (h0, h1) = (net.host(0).clone(), net.host(1).clone());
    let key = dir.path().join("ring.key").to_string_lossy().into_owned();
    let other = dir.path().join("other.key").to_string_lossy().into_owned();
    assert!(f::flock(&h0, &["keygen", "--cluster", &key]).0);
    assert!(f::flock(&h0, &["keygen", "--cluster", &other]).0);
    let server = Server::start(
        &h0,
        "n1",
        dir.path(),
        &[
            "--no-broadcast",
            "--admin-allow",
            "127.0.0.0/8",
            "--cluster-key",
            &key,
        ],
    );
    let _log = LogOnPanic(&server);
    let a = server.addr();
    wait_ping(&h1, &a);
    let (ok, out) = f::flock(&h1, &["status", "--json", &a]);
    assert!(!ok, "no key, outside --admin-allow: refused: {out}");
    let (ok, out) = f::flock(&h1, &["status", "--json", "--cluster-key", &other, &a]);
    assert!(!ok, "another key: refused: {out}");
    let st = wait_for("STATUS by cluster key", Duration::from_secs(20), || {
        let (ok, out) = f::flock(&h1, &["status", "--json", "--cluster-key", &key, &a]);
        ok.then(|| serde_json::from_str::<serde_json::Value>(out.trim()).ok())
            .flatten()
            .filter(|s| s["member"] == true)
    });
    assert_eq!(st["node"].as_str(), Some(a.as_str()));
    let (ok, out) = f::flock(&h1, &["status", "--cluster-key", &key, &a]);
    assert!(ok && out.contains("1 nodes"), "the ring walk by key: {out}");

    // More records than one page holds (about 48 KB of them).
    let us = users("page", 1500);
    assert!(register(&h1, &a, &dir.path().join("keys"), &us));
    let (ok, out) = f::flock(&h1, &["status", "--snapshot", "--cluster-key", &key, &a]);
    assert!(ok, "{out}");
    let last = out.lines().last().unwrap_or("");
    println!("SNAPSHOT_PAGES {last}");
    let pages: usize = last
        .strip_prefix("1500 records in ")
        .and_then(|r| r.strip_suffix(" pages"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("every record, in pages: {last}"));
    assert!(pages >= 2, "{last}");
    let seen: std::collections::BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(u, _)| u))
        .collect();
    for u in &us {
        assert!(seen.contains(u.as_str()), "{u} missing from the snapshot");
    }
}

/// Bounded work per source: non-members that prove their addresses and flood `FETCH`
/// (never acknowledging a chunk), from many ports at once, get their quota of the pending
/// table and never the reserve: lookups through that node (remote ones included) keep
/// working. A `REPLICATE` without its cookie carrying 65 records costs 66 rate-limit
/// tokens and no signature check.
#[test]
fn a_fetch_flood_leaves_lookups_working_and_records_cost_tokens_before_verification() {
    let _serial = serial();
    let Some(net) = Net::new("fetch_flood", 3) else {
        return;
    };
    let dir = f::tempdir("fetchflood");
    let (h0, h1, evil) = (
        net.host(0).clone(),
        net.host(1).clone(),
        net.host(2).clone(),
    );
    // The default rate limits (1000 tokens per second, a burst of 2000 per source IP); a
    // small pending table (256: 16 entries per peer, 128 for transfers others asked for)
    // so that a light flood reaches the bounds.
    let n1 = Server::start(
        &h0,
        "n1",
        dir.path(),
        &["--no-broadcast", "--max-pending", "256"],
    );
    let _log1 = LogOnPanic(&n1);
    let a = n1.addr();
    wait_member(&h1, &a, Duration::from_secs(20));
    let n2 = Server::start(&h1, "n2", dir.path(), &["--no-broadcast", "--join", &a]);
    let _log2 = LogOnPanic(&n2);
    let b = n2.addr();
    f::wait_ring(&h1, &[a.clone(), b.clone()], Duration::from_secs(30));
    let us = users("flood", 30);
    assert!(register(&h1, &b, &dir.path().join("keys"), &us));

    // 12 flooders (12 source ports) at once, 40 FETCHes each, answering the cookie
    // challenge and then never acknowledging a chunk.
    let mut args: Vec<String> = ["send-raw", "--echo-cookie", "--wait-ms", "2000", "--to", &a]
        .map(String::from)
        .to_vec();
    args.extend((1..=40).map(|rid| format!("RING FETCH {rid} 0 0 1000000000000000002")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // (Their output is not read: it must not fill a pipe.)
    let flooders: Vec<_> = (0..12)
        .map(|_| {
            evil.command(f::bin())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a flooder")
        })
        .collect();
    // Lookups through the flooded node, while the flood lasts.
    let t0 = std::time::Instant::now();
    let resolved = (0..5).any(|_| f::all_resolve(&h1, &a, &us, 3000));
    let took = t0.elapsed();
    for mut c in flooders {
        let _ = c.wait();
    }
    let s = status(&h1, &a).expect("status");
    println!(
        "FETCH_FLOOD 12 sources x 40: lookups ok={resolved} in {took:?}; counters {}",
        s["counters"]
    );
    assert!(resolved, "every user resolves through the flooded node");
    let c = |k: &str| s["counters"][k].as_u64().unwrap_or(0);
    assert!(c("peer_quota") > 0, "each flooder hit its quota: {s}");
    assert!(
        c("pending_reserved") > 0,
        "together they hit the transfers' half: {s}"
    );
    assert_eq!(s["counters"]["pending_overload"].as_u64().unwrap_or(0), 0);
    let hops = s["counters"]["lookup_hops"].as_u64().unwrap_or(0);
    assert!(hops > 0, "some lookups went to n2: {s}");

    // 150 REPLICATEs with a made-up cookie, 65 records each, to n2.
    let key = "TUlJQklqQU5CZ2txaGtpRzl3MEJBUUVGQUFPQ0FROEFNSUlCQ2dLQ0FRRUE=";
    let e = evil.ip;
    let recs: Vec<String> = (0..65)
        .map(|i| format!("x{i}_amp {e} 6666 99999999999999999 {key} c2ln"))
        .collect();
    let replicates: Vec<String> = (1..=150)
        .map(|rid| format!("RING REPLICATE {rid} 3 65 {}", recs.join(" ")))
        .collect();
    let before = status(&h1, &b).expect("status");
    let t0 = std::time::Instant::now();
    f::send_raw(&evil, &b, &replicates, false);
    let secs = t0.elapsed().as_secs_f64();
    let after = wait_for("STATUS", Duration::from_secs(10), || status(&h1, &b));
    let delta =
        |k: &str| after["net"][k].as_u64().unwrap_or(0) - before["net"][k].as_u64().unwrap_or(0);
    let (limited, verified) = (delta("rate_limited"), delta("verifications"));
    println!(
        "VERIFY_AMPLIFICATION 150 REPLICATEs x 65 records, cookie wrong: rate_limited={limited} rsa_verifications={verified} in {secs:.2} s"
    );
    assert_eq!(verified, 0, "no signature checked before authentication");
    // 66 tokens each against a burst of 2000 and 1000/s.
    let passed_at_most = ((2000.0 + 1000.0 * secs) / 66.0).ceil() as u64 + 1;
    assert!(
        limited + passed_at_most >= 150,
        "{limited} of 150 refused, at most {passed_at_most} may pass"
    );
}

/// Admission with a cluster key: members holding the key form the ring; a server without
/// the key, or with another key, never becomes a member; a stranger's ring frames (even
/// answering cookie challenges) are dropped before the ring machine and change nothing.
#[test]
fn with_a_cluster_key_only_key_holders_are_members_and_strangers_change_nothing() {
    let _serial = serial();
    let Some(net) = Net::new("cluster_key", 5) else {
        return;
    };
    let dir = f::tempdir("clusterkey");
    let hosts: Vec<_> = (0..5).map(|i| net.host(i).clone()).collect();
    let key = dir.path().join("cluster.key");
    let other = dir.path().join("other.key");
    let k = key.to_string_lossy().into_owned();
    let o = other.to_string_lossy().into_owned();
    assert!(f::flock(&hosts[0], &["keygen", "--cluster", &k]).0);
    assert!(f::flock(&hosts[0], &["keygen", "--cluster", &o]).0);
    assert!(
        !f::flock(&hosts[0], &["keygen", "--cluster", &k]).0,
        "keygen never overwrites a key"
    );
    let n1 = Server::start(
        &hosts[0],
        "n1",
        dir.path(),
        &["--no-broadcast", "--cluster-key", &k],
    );
    let _l1 = LogOnPanic(&n1);
    let a = n1.addr();
    wait_member(&hosts[1], &a, Duration::from_secs(20));
    let n2 = Server::start(
        &hosts[1],
        "n2",
        dir.path(),
        &["--no-broadcast", "--join", &a, "--cluster-key", &k],
    );
    let _l2 = LogOnPanic(&n2);
    let b = n2.addr();
    f::wait_ring(&hosts[1], &[a.clone(), b.clone()], Duration::from_secs(30));
    assert!(
        !n1.log_tail(200).contains("the ring is open"),
        "keyed: no warning"
    );
    let us = users("keyed", 12);
    assert!(register(&hosts[1], &a, &dir.path().join("keys"), &us));
    wait_for("every user resolves", Duration::from_secs(20), || {
        f::all_resolve(&hosts[1], &b, &us, 2000).then_some(())
    });
    let before = f::resolve(&hosts[1], &a, &us, 3000);

    // A server without the key, and one with another key, try to join.
    let n3 = Server::start(
        &hosts[2],
        "n3",
        dir.path(),
        &["--no-broadcast", "--join", &a],
    );
    let _l3 = LogOnPanic(&n3);
    let n4 = Server::start(
        &hosts[3],
        "n4",
        dir.path(),
        &["--no-broadcast", "--join", &a, "--cluster-key", &o],
    );
    let _l4 = LogOnPanic(&n4);
    // A stranger playing every state-changing ring request, answering cookie challenges.
    let evil = &hosts[4];
    let e = evil.ip;
    let pk = "TUlJQklqQU5CZ2txaGtpRzl3MEJBUUVGQUFPQ0FROEFNSUlCQ2dLQ0FRRUE=";
    let frames: Vec<String> = vec![
        "RING DISCOVER 10".into(),
        "RING JOIN 11 0".into(),
        "RING RECTIFY 12 0 1".into(),
        format!(
            "RING REPLICATE 13 0 1 {} {e} 6666 99999999999999999 {pk} c2ln",
            us[0]
        ),
        "RING FETCH 14 0 0 1000000000000000002".into(),
        format!(
            "RING FIND 15 0 5 REGISTER {} {e} 6666 99999999999999999 {pk} c2ln",
            us[1]
        ),
        "RING SYNC 16 0 0 1000000000000000002 0 0".into(),
        format!("RING LEAVE 17 0 0 - 1 1@{e}:12345"),
        "RAUTH 1 00000000000000000000000000000000 RING JOIN 18 0".into(),
    ];
    for to in [&a, &b] {
        let replies = f::send_raw(evil, to, &frames, true);
        assert!(
            replies.trim().is_empty(),
            "a keyed node answers strangers' ring frames with nothing: {replies}"
        );
    }
    // Give the would-be joiners time to try (several join rounds), then look.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        for s in [&n3, &n4] {
            let st = status(&hosts[1], &s.addr());
            assert!(
                st.as_ref().is_none_or(|st| st["member"] != true),
                "{} became a member without the key: {st:?}",
                s.name
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        n3.log_tail(200).contains("the ring is open"),
        "an unkeyed server warns at start-up"
    );
    assert_eq!(
        f::ring_order(&hosts[1], &[a.clone(), b.clone()]).map(|o| o.len()),
        Some(2),
        "the ring is still n1 and n2"
    );
    let after = f::resolve(&hosts[1], &a, &us, 3000);
    assert_eq!(before, after, "records unchanged");
    let s = status(&hosts[1], &a).expect("status");
    println!(
        "CLUSTER_KEY n1 ring_auth_failed={} counters={}",
        s["net"]["ring_auth_failed"], s["counters"]
    );
    assert!(s["net"]["ring_auth_failed"].as_u64().unwrap_or(0) > 0);
}

/// Record authority with a cluster key (issue 10, item 1): a stranger plants a forged,
/// validly signed "alice" (another key, a higher version) on the owner's predecessor and
/// on every node, by `REPLICATE`, `FIND ... REGISTER` and a client `REGISTER`; it never
/// resolves, before or after kill -9 of the owner.
#[test]
fn a_forged_record_planted_by_a_stranger_never_resolves_with_a_cluster_key() {
    forged_alice(true);
}

/// Record authority without a key (issue 10, item 1): the same forgeries, plus an owner's
/// `SYNC` and the push it asks for, never resolve; a stranger that joins the open ring
/// owns a range, and once killed its exact address replicates forgeries of every user to
/// every node: after kill -9 of alice's owner too, every survivor resolves every user to
/// the real key.
#[test]
fn a_forged_record_planted_by_a_stranger_never_resolves_without_a_cluster_key() {
    forged_alice(false);
}

/// The owner of `name`'s hash among `addrs`, from their ranges.
fn owner_of(host: &common::netns::Host, addrs: &[String], name: &str) -> usize {
    let h = flock_proto::ring_hash(name);
    (0..addrs.len())
        .find(|&i| {
            let Some(s) = status(host, &addrs[i]) else {
                return false;
            };
            let lo: u64 = s["lo"].as_str().and_then(|v| v.parse().ok()).expect("lo");
            let hi: u64 = s["hi"].as_str().and_then(|v| v.parse().ok()).expect("hi");
            if lo <= hi {
                lo <= h && h <= hi
            } else {
                h >= lo || h <= hi
            }
        })
        .expect("an owner")
}

/// `user`'s record under `key`, validly signed: the fields after `REGISTER `.
fn forged_fields(key: &flock_crypto::PrivateKey, user: &str, ip: std::net::Ipv4Addr) -> String {
    let reg = flock_bin::tools::signed_register(key, user, ip, 6666, u64::MAX / 4).expect("signed");
    let reg = String::from_utf8(reg).expect("text");
    reg.strip_prefix("REGISTER ").expect("REGISTER").to_string()
}

fn forged_alice(keyed: bool) {
    let _serial = serial();
    let Some(net) = Net::new(if keyed { "forged_alice" } else { "forged_open" }, 4) else {
        return;
    };
    let dir = f::tempdir("forged");
    let hosts: Vec<_> = (0..4).map(|i| net.host(i).clone()).collect();
    let key = dir
        .path()
        .join("cluster.key")
        .to_string_lossy()
        .into_owned();
    let mut extra = vec!["--no-broadcast", "--replicas", "1"];
    if keyed {
        assert!(f::flock(&hosts[0], &["keygen", "--cluster", &key]).0);
        extra.extend(["--cluster-key", &key]);
    }
    let (mut servers, mut addrs) = start_ring(&hosts[..3], &hosts[3], dir.path(), &extra);
    let a0 = addrs[0].clone();
    let mut names = users("open", 8);
    names.push("alice".to_string());
    assert!(register(&hosts[3], &a0, &dir.path().join("keys"), &names));
    wait_for("every user resolves", Duration::from_secs(20), || {
        f::all_resolve(&hosts[3], &a0, &names, 2000).then_some(())
    });
    let real = f::resolve(&hosts[3], &a0, &names, 2000);
    if !keyed {
        // A stranger joins the open ring and owns a range.
        let mut e = extra.clone();
        e.extend(["--join", &a0]);
        servers.push(Server::start(&hosts[3], "stranger", dir.path(), &e));
        addrs.push(servers[3].addr());
        f::wait_ring(&hosts[3], &addrs, Duration::from_secs(30));
    }
    let owner = owner_of(&hosts[3], &addrs, "alice");
    let pred = status(&hosts[3], &addrs[owner]).expect("status")["pred"]
        .as_str()
        .map(str::to_owned)
        .expect("pred");

    // The forgery: alice under another key, a higher version, validly signed.
    let mallory = flock_crypto::PrivateKey::generate(&mut flock_bin::os_rng()).expect("key");
    let e = hosts[3].ip;
    let h = flock_proto::ring_hash("alice");
    let fields = forged_fields(&mallory, "alice", e);
    let max = flock_proto::space::MODULUS - 1;
    let frames = vec![
        format!("RING REPLICATE 21 0 1 {fields}"),
        format!("RING FIND 22 0 {h} REGISTER {fields}"),
        format!("RING FIND 23 0 0 REGISTER {fields}"),
        format!("RING RECORDS 24 0 1 1 {fields}"),
        format!("RING SYNC 25 0 0 {max} 1 1"),
        format!("REGISTER {fields}"),
    ];
    for (i, to) in std::iter::once(&pred).chain(addrs.iter()).enumerate() {
        // From a fixed port, so that the push the SYNC asks for comes from its asker.
        let me = format!("{e}:{}", 41000 + i);
        f::send_raw_from(&hosts[3], Some(&me), to, &frames, true);
        let push = vec![format!("RING RECORDS 25 0 1 1 {fields}")];
        f::send_raw_from(&hosts[3], Some(&me), to, &push, false);
    }
    let resolves_real = |via: &[usize]| {
        via.iter()
            .all(|&i| f::resolve(&hosts[3], &addrs[i], &names, 2000) == real)
    };
    let all: Vec<usize> = (0..addrs.len()).collect();
    assert!(
        resolves_real(&all),
        "the forgery never resolves, before the kill"
    );
    let mut killed = vec![owner];
    if !keyed {
        // The stranger dies; its own address replicates forgeries of every user.
        servers[3].kill9();
        killed.push(3);
        let stranger = addrs[3].clone();
        let forged: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(k, u)| {
                format!(
                    "RING REPLICATE {} 0 1 {}",
                    60 + k,
                    forged_fields(&mallory, u, e)
                )
            })
            .collect();
        for to in &addrs[..3] {
            f::send_raw_from(&hosts[3], Some(&stranger), to, &forged, true);
        }
    }
    servers[owner].kill9();
    let t0 = std::time::Instant::now();
    let survivors: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !killed.contains(i))
        .collect();
    wait_for("survivors repair", Duration::from_secs(30), || {
        resolves_real(&survivors).then_some(())
    });
    println!(
        "FORGED_ALICE keyed={keyed} owner n{} killed; every survivor resolves every user to the real key after {:.2} s",
        owner + 1,
        t0.elapsed().as_secs_f64()
    );
    // And keeps doing so.
    std::thread::sleep(Duration::from_secs(2));
    for &i in &survivors {
        assert_eq!(
            f::resolve(&hosts[3], &addrs[i], &names, 2000),
            real,
            "via {}",
            addrs[i]
        );
        let s = status(&hosts[3], &addrs[i]).expect("status");
        println!(
            "FORGED_ALICE keyed={keyed} {} record_unauthorized={} record_refused={}",
            addrs[i], s["counters"]["record_unauthorized"], s["counters"]["record_refused"]
        );
    }
}
