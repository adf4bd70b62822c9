//! Failover that finds the ring (issue 13 item 2), with real processes.
//!
//! - A `flock chat` given only one server of a 3-server ring on non-default loopback
//!   ports learns the ring's members from it (`MEMBERS`) and survives `kill -9` of that
//!   server and then of the one it moved to, registering again within 5 s each time.
//! - Discovery reports servers on non-default ports, to a client on another host and to
//!   one on the servers' own host (in network namespaces: multicast on the machine's
//!   loopback is not reliable and other tests share the machine).
//!
//! Every wait is a condition poll with a deadline; child processes are killed on drop.

mod common {
    pub mod flock;
    pub mod netns;
    pub mod proc;
}

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use common::flock::{self as f, Server};
use common::netns::Net;
use common::proc::{FAST_CLIENT, Proc, WAIT, loopback_ring_server, wait_nodes, wait_pong};

/// How soon the client must be registered again after its server is killed.
const REREGISTER: Duration = Duration::from_secs(5);

/// A ring server on 127.0.0.1:`port` (PING on `port + 1`), joining 127.0.0.1:`join`;
/// returns once it answers PING.
fn server(dir: &Path, name: &str, port: u16, join: Option<u16>) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let p = loopback_ring_server(name, port, join, &dir.join(name), &log);
    wait_pong(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port + 1));
    p
}

/// Waits until the client's log has a line with every one of `needles`.
fn wait_log(log: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_given_one_server_survives_kill_9_of_it_and_of_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = [31900u16, 31902, 31904];
    let mut ring: Vec<Option<Proc>> = vec![Some(server(dir.path(), "a", ports[0], None))];
    for (i, p) in ports.iter().enumerate().skip(1) {
        let name = ["a", "b", "c"][i];
        ring.push(Some(server(dir.path(), name, *p, Some(ports[0]))));
    }
    wait_nodes(ports[0], 3);

    // Its log lines go to `<data>/flock-chat.log`.
    let log = dir.path().join("alice/flock-chat.log");
    let mut args: Vec<String> = [
        "chat",
        "--user",
        "alice",
        "--password",
        "Flock-Test-1",
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--server",
        "127.0.0.1:31900",
        "--data-dir",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(dir.path().join("alice").display().to_string());
    args.extend(FAST_CLIENT.iter().map(|s| (*s).to_owned()));
    let alice = Proc::flock("alice", &args, &dir.path().join("alice.stderr"));
    alice.contains("registered with 127.0.0.1:31900");

    let mut killed: Vec<u16> = Vec::new();
    let mut current = ports[0];
    let mut times = Vec::new();
    for round in 1..=2 {
        // The client knows the others from its server before that server dies.
        let mut needles = vec![
            "ring members learned".to_owned(),
            format!("server=127.0.0.1:{current}"),
        ];
        needles.extend(
            (ports.iter())
                .filter(|p| **p != current && !killed.contains(p))
                .map(|p| format!("127.0.0.1:{p}")),
        );
        let learned = wait_log(
            &log,
            &needles.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        eprintln!("round {round}: {learned}");

        let i = ports.iter().position(|p| *p == current).expect("port");
        ring[i].take().expect("running").kill();
        let t0 = Instant::now();
        killed.push(current);
        let line = alice.wait_for("registered with another server", |l| {
            l.contains("registered with 127.0.0.1:")
                && !killed.iter().any(|k| l.contains(&format!("127.0.0.1:{k}")))
        });
        let took = t0.elapsed();
        eprintln!("round {round}: killed {current}; {line:?} after {took:?}");
        assert!(took < REREGISTER, "registered again after {took:?}: {line}");
        times.push(took);
        current = (ports.iter().copied())
            .find(|p| line.contains(&format!("127.0.0.1:{p}")))
            .expect("a ring port");
    }
    eprintln!("re-registration times: {times:?}");

    // The steps it printed, each once per failover, and never a dead server retried.
    let text = std::fs::read_to_string(&log).expect("log");
    let steps: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["connecting", "registered", "lost", "ring members", "trying"]
                .iter()
                .any(|s| l.contains(s))
        })
        .collect();
    eprintln!("client steps:\n{}", steps.join("\n"));
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("trying the ring members it named"))
            .count(),
        2,
        "{text}"
    );
    for dead in &ports[..1] {
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("connecting") && l.contains(&format!("127.0.0.1:{dead}")))
                .count(),
            1,
            "a dead server was tried again:\n{text}"
        );
    }
}

#[test]
fn discovery_lists_servers_on_non_default_ports() {
    discovery_lists_ports("discovery_lists_servers_on_non_default_ports", false);
}

/// The same with `flock chat` on the servers' own host: the answers come back over the
/// host's loopback, from each server's socket, so with its real port.
#[test]
fn discovery_on_the_servers_host_lists_their_ports() {
    discovery_lists_ports("discovery_on_the_servers_host_lists_their_ports", true);
}

/// Two servers on ports 23001 and 23003 of one host; `flock chat` without `--server`
/// (on another host, or on the same one with `same_host`) must list both at their real
/// ports and never the default 12345.
fn discovery_lists_ports(name: &str, same_host: bool) {
    let Some(net) = Net::new(name, if same_host { 1 } else { 2 }) else {
        return;
    };
    let dir = f::tempdir("discports");
    let server_host = net.host(0);
    let mut servers = Vec::new();
    for (name, port) in [("d1", 23001u16), ("d2", 23003)] {
        let (p, ping) = (port.to_string(), (port + 1).to_string());
        let extra = ["--port", p.as_str(), "--ping-port", ping.as_str()];
        servers.push(Server::start(server_host, name, dir.path(), &extra));
    }
    let want: Vec<String> = [23001, 23003]
        .iter()
        .map(|p| format!("{}:{p}", server_host.ip))
        .collect();
    // `flock chat` without --server lists what discovery found, then (stdin closed)
    // gives up choosing.
    let client = net.host(usize::from(!same_host));
    let data = dir.path().join("client");
    let data = data.display().to_string();
    let mut last = String::new();
    let found = common::netns::wait_for("both servers discovered", WAIT, || {
        let out = client
            .command(f::bin())
            .args(["chat", "--user", "carol", "--password", "Flock-Test-1"])
            .args(["--data-dir", &data])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("flock chat");
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        want.iter().all(|w| last.contains(w)).then(|| last.clone())
    });
    eprintln!("discovered:\n{found}");
    assert!(!found.contains(":12345"), "{found}");
    drop(servers);
}
