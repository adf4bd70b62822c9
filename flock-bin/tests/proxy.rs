//! `flock proxy` with real processes: a client subnet and a server subnet joined by a
//! router namespace (IP forwarding on), the proxy running in the router. Discovery by
//! multicast and by broadcast across the router, a chat that survives its server, two
//! proxies on the same pair of subnets (no amplification, no echoes), and bad input on
//! both sides. Needs root (skips loudly without).
//!
//! Every wait is a condition poll with a deadline; every process is killed on drop.

mod common {
    pub mod flock;
    pub mod netns;
    pub mod proc;
    pub mod routed;
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::flock::{self as f, Server, wait_member, wait_ring};
use common::netns::{Host, wait_for};
use common::proc::{FAST_CLIENT, FLOCK, Proc};
use common::routed::{ProxyProc, Routed, Side};

/// The tests of this file run one at a time (each starts several servers).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const GROUP: &str = "224.0.0.1:10003";
const BROADCAST: &str = "255.255.255.255:12345";

/// Sends `msgs` from `host` to `to`, collects replies for `wait_ms`: one per line.
fn send(host: &Host, to: &str, msgs: &[&str], wait_ms: u64) -> Vec<String> {
    let wait = wait_ms.to_string();
    let mut args = vec!["send-raw", "--wait-ms", &wait, "--to", to];
    args.extend_from_slice(msgs);
    f::flock(host, &args).1.lines().map(str::to_owned).collect()
}

/// The distinct replies to one discovery request from `host` to `to`.
fn discover(host: &Host, to: &str, msg: &str) -> BTreeSet<String> {
    send(host, to, &[msg], 1_000).into_iter().collect()
}

/// Starts one server per host of `hosts` (the first founds the ring, the others find it
/// by broadcast) and waits for one ring.
fn ring(hosts: &[Host], dir: &Path) -> Vec<Server> {
    let mut servers = vec![Server::start(&hosts[0], "n0", dir, &[])];
    wait_member(&hosts[0], &servers[0].addr(), Duration::from_secs(20));
    for (i, h) in hosts.iter().enumerate().skip(1) {
        servers.push(Server::start(h, &format!("n{i}"), dir, &[]));
    }
    let addrs: Vec<String> = servers.iter().map(Server::addr).collect();
    if addrs.len() > 1 {
        wait_ring(&hosts[0], &addrs, Duration::from_secs(60));
    }
    servers
}

/// A server's `discovery_replies` counter.
fn discovery_replies(from: &Host, server: &Server) -> u64 {
    f::status(from, &server.addr())
        .and_then(|s| s.get("net")?.get("discovery_replies")?.as_u64())
        .expect("STATUS with net.discovery_replies")
}

/// `flock chat` for `user` on `host` (discovery on, short timeouts).
fn chat(host: &Host, dir: &Path, user: &str, extra: &[&str]) -> Proc {
    let data = dir.join(user);
    let mut cmd = host.command(FLOCK);
    cmd.args([
        "chat",
        "--user",
        user,
        "--password",
        "Flock-Test-1",
        "--data-dir",
    ])
    .arg(&data)
    .args(FAST_CLIENT)
    .args(extra)
    .env("RUST_LOG", "info");
    Proc::spawn(user, &mut cmd, &dir.join(format!("{user}.log")), false)
}

/// The server a chat registered with (the last `registered with` line).
fn registered_with(p: &Proc) -> String {
    p.contains("registered with");
    let lines = p.lines();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("registered with"))
        .expect("line");
    line.rsplit(' ').next().expect("address").to_owned()
}

fn exchange(from: &mut Proc, from_name: &str, to: &mut Proc, to_name: &str, text: &str) {
    from.say(&format!("@{to_name}"));
    from.say(text);
    to.contains(&format!("<{from_name}> {text}"));
    from.wait_for("delivered", |l| {
        l.starts_with(&format!("* to {to_name}: delivered"))
    });
}

fn ips(servers: &[Server]) -> BTreeSet<String> {
    servers.iter().map(|s| s.host.ip.to_string()).collect()
}

#[test]
fn a_client_across_the_router_finds_every_server_and_survives_its_server() {
    let _serial = serial();
    let Some(net) = Routed::new("proxy_discovery", 1, 4, 1) else {
        return;
    };
    let dir = f::tempdir("proxy-discovery");
    let alice_host = net.clients[0].clone();
    let mut servers = ring(&net.servers[..3], dir.path());
    let want = ips(&servers);

    // Without the proxy nothing crosses the router: not the multicast, not the broadcast.
    assert!(discover(&alice_host, GROUP, "DISCOVER_SERVER").is_empty());
    assert!(discover(&alice_host, BROADCAST, "DISCOVER").is_empty());

    let proxy = ProxyProc::start(&net.routers[0], dir.path(), "proxy", &[]);
    // Every server answers, straight to the client: by multicast and by broadcast (the
    // broadcast is forwarded in the proxied form, so the answers are IPs too).
    for (to, msg) in [(GROUP, "DISCOVER_SERVER"), (BROADCAST, "DISCOVER")] {
        let got = wait_for(&format!("{msg} answers"), Duration::from_secs(20), || {
            let got = discover(&alice_host, to, msg);
            (got == want).then_some(got)
        });
        assert_eq!(got, want);
    }
    let c = proxy.counters();
    assert!(
        c["forwarded_multicast"] >= 1 && c["forwarded_broadcast"] >= 1,
        "{c:?}"
    );
    assert!(
        proxy.log_text().contains("Multicast from"),
        "forwards are logged at debug level"
    );

    // The console chat: discovery lists the three servers, alice picks the first.
    let mut alice = chat(&alice_host, dir.path(), "alice", &[]);
    alice.contains("3) ");
    alice.say("1");
    let first = registered_with(&alice);
    let bob_server = servers
        .iter()
        .map(Server::addr)
        .find(|a| *a != first)
        .expect("another server");
    let mut bob = chat(
        &net.servers[3],
        dir.path(),
        "bob",
        &["--server", &bob_server],
    );
    bob.contains("registered with");
    exchange(
        &mut alice,
        "alice",
        &mut bob,
        "bob",
        "hello across the router",
    );
    bob.say("@alice");
    bob.say("hello back");
    alice.contains("<bob> hello back");

    // Alice's server dies: her rediscovery goes through the proxy too.
    let i = servers
        .iter()
        .position(|s| s.addr() == first)
        .expect("hers");
    servers[i].kill9();
    alice.contains(&format!("{first} is not answering"));
    alice.wait_for("registered with another server", |l| {
        l.contains("registered with") && !l.ends_with(&first)
    });
    exchange(&mut alice, "alice", &mut bob, "bob", "after the crash");
    bob.say("still here");
    alice.contains("<bob> still here");
}

/// Both proxies' counters and the servers' `discovery_replies`.
fn snapshot(
    proxies: &[ProxyProc],
    servers: &[Server],
    from: &Host,
) -> (Vec<BTreeMap<String, u64>>, Vec<u64>) {
    (
        proxies.iter().map(ProxyProc::counters).collect(),
        servers.iter().map(|s| discovery_replies(from, s)).collect(),
    )
}

#[test]
fn two_proxies_on_the_same_subnets_do_not_amplify_or_echo() {
    let _serial = serial();
    let Some(net) = Routed::new("proxy_loop", 1, 2, 2) else {
        return;
    };
    let dir = f::tempdir("proxy-loop");
    let client = net.clients[0].clone();
    let servers = ring(&net.servers, dir.path());
    let fast = ["--rate", "1000", "--burst", "1000", "--total-rate", "1000"];
    let proxies = [
        ProxyProc::start(&net.routers[0], dir.path(), "proxy0", &fast),
        ProxyProc::start(&net.routers[1], dir.path(), "proxy1", &fast),
    ];
    let from = &net.servers[0];
    eprintln!(
        "PROXY-LOOP requests  kind        replies  forwarded(p0,p1)  heard_from_server_side(p0,p1)  server_replies(s0,s1)  client_side_proxied_rx"
    );
    for n in [10u64, 20, 40] {
        for (to, msg, kind) in [
            (GROUP, "DISCOVER_SERVER", "forwarded_multicast"),
            (BROADCAST, "DISCOVER", "forwarded_broadcast"),
        ] {
            let (p0, s0) = snapshot(&proxies, &servers, from);
            let msgs = vec![msg; n as usize];
            let replies = send(&client, to, &msgs, 1_500).len() as u64;
            // Wait until both proxies have seen the whole burst and both servers both
            // forwards of it.
            let (p1, s1) = wait_for("the burst to be counted", Duration::from_secs(20), || {
                let (p1, s1) = snapshot(&proxies, &servers, from);
                let done = (0..2)
                    .all(|i| p1[i]["received"] - p0[i]["received"] >= n && s1[i] - s0[i] >= 2 * n);
                done.then_some((p1, s1))
            });
            let d = |i: usize, k: &str| p1[i][k] - p0[i][k];
            let forwarded = [d(0, kind), d(1, kind)];
            // Neither proxy hears its own forward or the other's: its multicast listener
            // is deaf to the server-side legs.
            let server_rx = [
                d(0, "own") + d(0, "server_side"),
                d(1, "own") + d(1, "server_side"),
            ];
            let proxied_rx = d(0, "already_proxied") + d(1, "already_proxied");
            let server_replies = [s1[0] - s0[0], s1[1] - s0[1]];
            eprintln!(
                "PROXY-LOOP {n:8}  {msg:15} {replies:7}  {forwarded:?}  {server_rx:?}  {server_replies:?}  {proxied_rx}"
            );
            // One forward per request per proxy, nothing more: linear in n.
            assert_eq!(forwarded, [n, n]);
            assert_eq!(server_rx, [0, 0]);
            assert_eq!(server_replies, [2 * n, 2 * n]);
            // Nothing proxied ever appears on the client side, and nothing else moved.
            assert_eq!(proxied_rx, 0);
            assert_eq!([d(0, "received"), d(1, "received")], [n, n], "{p1:?}");
            // The client got one answer per server per proxy per request.
            assert_eq!(replies, 2 * 2 * n);
        }
    }
}

#[test]
fn bad_datagrams_on_both_sides_change_nothing_and_are_counted() {
    let _serial = serial();
    let Some(mut net) = Routed::new("proxy_bad_input", 1, 2, 1) else {
        return;
    };
    let dir = f::tempdir("proxy-bad");
    let client = net.clients[0].clone();
    let stranger = net.add_stranger(Side::Client, 5).expect("stranger");
    let server_stranger = net.add_stranger(Side::Server, 6).expect("stranger");
    let servers = ring(&net.servers[..1], dir.path());
    let server_side = net.servers[1].clone();
    let proxy = ProxyProc::start(
        &net.routers[0],
        dir.path(),
        "proxy",
        &["--stats-interval", "1"],
    );
    // The counters line comes by itself every --stats-interval, and on SIGUSR1.
    wait_for("a periodic counters line", Duration::from_secs(10), || {
        proxy
            .log_text()
            .contains("proxy counters: received=0 ")
            .then_some(())
    });
    let from = &net.servers[0];
    let before = (proxy.counters(), discovery_replies(from, &servers[0]));

    let big = "A".repeat(3000);
    let reflect = format!("DISCOVER_SERVER:{}:12345", net.servers[0].ip);
    let junk: Vec<&str> = vec![
        "\\xff\\xfe\\x00",
        "DISCOVER_SERVER:1.2.3",
        "DISCOVER_SERVER:999.1.1.1:5",
        "",
        &big,
        &reflect,
        "RESOLVE alice",
        "PING",
    ];
    // The client side: junk from a client, good requests from a stranger's address.
    let good = ["DISCOVER_SERVER", "DISCOVER"];
    let mut replies = Vec::new();
    for to in [GROUP, BROADCAST] {
        replies.extend(send(&client, to, &junk, 300));
        replies.extend(send(&stranger, to, &good, 300));
    }
    let client_side = 2 * (junk.len() as u64 + 2);
    wait_for(
        "the client side to be counted",
        Duration::from_secs(20),
        || {
            let c = proxy.counters();
            (c["received"] - before.0["received"] >= client_side).then_some(())
        },
    );
    // Nothing reached the server, so nothing came back (the forged proxied form aimed
    // at the server itself included).
    assert_eq!(discovery_replies(from, &servers[0]), before.1);
    assert!(replies.is_empty(), "{replies:?}");
    // The server side: good requests from a host there (the server answers it on its
    // own subnet) and from a stranger's address. The proxy hears only the broadcasts:
    // its multicast listener is deaf on server-side legs.
    for to in [GROUP, BROADCAST] {
        for host in [&server_side, &server_stranger] {
            send(host, to, &good, 300);
        }
    }
    let after = wait_for(
        "the server side to be counted",
        Duration::from_secs(20),
        || {
            let c = proxy.counters();
            (c["received"] - before.0["received"] >= client_side + 2 * 2).then_some(c)
        },
    );
    let d = |k: &str| after[k] - before.0[k];
    eprintln!(
        "bad input: {:?}",
        after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.0[k]))
            .collect::<BTreeMap<_, _>>()
    );
    assert_eq!(
        d("forwarded_multicast") + d("forwarded_broadcast"),
        0,
        "{after:?}"
    );
    assert_eq!(d("malformed"), 2 * 4, "{after:?}");
    assert_eq!(d("oversized"), 2);
    assert_eq!(d("already_proxied"), 2);
    assert_eq!(d("not_discovery"), 2 * 2);
    assert_eq!(d("server_side"), 2, "{after:?}");
    assert_eq!(d("spoofed"), 2 * 2 + 2, "{after:?}");
    let sum: u64 = after
        .iter()
        .filter(|(k, _)| k.as_str() != "received")
        .map(|(k, _)| d(k))
        .sum();
    assert_eq!(sum, d("received"), "every datagram is counted once");

    // A burst of good requests from one client: the default limit (a burst of 8, then
    // 2 per second) lets a few through and counts the rest.
    let before = proxy.counters();
    let burst = vec!["DISCOVER_SERVER"; 30];
    let answers = send(&client, GROUP, &burst, 500).len() as u64;
    let after = wait_for("the burst to be counted", Duration::from_secs(20), || {
        let c = proxy.counters();
        (c["received"] - before["received"] >= 30).then_some(c)
    });
    let forwarded = after["forwarded_multicast"] - before["forwarded_multicast"];
    let limited = after["rate_limited"] - before["rate_limited"];
    eprintln!("burst of 30: forwarded {forwarded}, rate limited {limited}, answers {answers}");
    assert!((8..=10).contains(&forwarded), "{after:?}");
    assert_eq!(forwarded + limited, 30);
    assert_eq!(answers, forwarded);

    // Legs that do not exist: a clear message, no proxy.
    let out = net.routers[0]
        .host
        .command(f::bin())
        .args(["proxy", "--client-side", "nosuch0", "--server-side", "eth1"])
        .output()
        .expect("run flock proxy");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no interface or local IPv4 address \"nosuch0\""),
        "{err}"
    );

    // And the proxy still works.
    let mut proxy = proxy;
    assert!(proxy.alive());
    let want = ips(&servers);
    wait_for(
        "discovery through the proxy",
        Duration::from_secs(10),
        || (discover(&client, GROUP, "DISCOVER_SERVER") == want).then_some(()),
    );
}
