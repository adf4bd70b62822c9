//! Hostile input on loopback (no root needed): malformed, oversized and non-UTF-8
//! datagrams are counted and dropped (or answered with an ERROR) and the node keeps
//! serving; a flood from one source is rate-limited while another source is served; and
//! known answers through a real `flock server` process.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flock_bin::server::{self, ServerArgs};

fn start(name: &str, dir: &std::path::Path) -> server::Running {
    let mut args = ServerArgs::new(name);
    args.bind = Ipv4Addr::LOCALHOST;
    args.port = 0;
    args.ping_port = Some(0);
    args.no_multicast = true;
    args.no_broadcast = true;
    args.data_dir = Some(dir.join(name));
    args.rate = 200.0;
    args.burst = 400.0;
    args.leave_timeout = 0.5;
    server::start(args).expect("server starts")
}

fn client(ip: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind client");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// Sends `req` and waits up to `limit` (resending every 200 ms) for a reply.
fn ask(s: &UdpSocket, to: SocketAddrV4, req: &[u8], limit: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < limit {
        s.send_to(req, to).ok()?;
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// Reads replies for `wait`; returns them.
fn drain(s: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < wait && out.len() < 100_000 {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            out.push(buf[..n].to_vec());
        }
    }
    out
}

/// `STATUS` as the tools ask it, with the address-cookie round trip if the server wants it
/// (loopback is an admin address and counts as validated).
fn status(s: &UdpSocket, to: SocketAddrV4) -> serde_json::Value {
    let first = [flock_bin::tools::COOKIE_PLACEHOLDER, b"STATUS"].concat();
    let mut r = ask(s, to, &first, Duration::from_secs(5)).expect("STATUS answered");
    if let Some(req) = flock_bin::tools::with_cookie(&r, &first) {
        r = ask(s, to, &req, Duration::from_secs(5)).expect("STATUS answered");
    }
    let text = String::from_utf8(r).expect("utf-8");
    serde_json::from_str(text.strip_prefix("OK ").expect("OK {json}")).expect("json")
}

#[test]
fn malformed_oversized_and_non_utf8_datagrams_are_dropped_and_node_still_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start("hostile1", dir.path());
    let to = node.addr;
    let c = client(Ipv4Addr::LOCALHOST);
    let mut bad: Vec<Vec<u8>> = vec![
        Vec::new(),
        b" ".to_vec(),
        b"RESOLVE".to_vec(),
        b"RESOLVE  bob".to_vec(),
        b"RESOLVE a b c".to_vec(),
        b"NOSUCHVERB x".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"RESOLVE \xc3\x28".to_vec(),
        b"RESOLVE bob\0".to_vec(),
        b"RING".to_vec(),
        b"RING JOIN x y".to_vec(),
        b"RING FIND 1 2 3 REGISTER".to_vec(),
        b"STATUS extra".to_vec(),
        vec![b'A'; 65_507],
        {
            let mut v = b"RESOLVE ".to_vec();
            v.resize(65_507, b'x');
            v
        },
        {
            let mut v = b"REGISTER ".to_vec();
            v.resize(65_507, b'\xff');
            v
        },
    ];
    for _ in 0..3 {
        bad.push(b"RING RECORDS 1 0 1 1 a 1.2.3.4 5 6 - -".to_vec());
    }
    for d in &bad {
        c.send_to(d, to).expect("send");
    }
    // Only a broken REGISTER is answered (the original's payload error).
    let bad_register = b"REGISTER alice 10.0.0.1 notaport 5 key sig".to_vec();
    // Replies to the datagrams above (a 404) may still be on their way: read until the
    // REGISTER's answer, keeping the others as strays.
    let mut stray = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    c.send_to(&bad_register, to).expect("send");
    loop {
        assert!(Instant::now() < deadline, "the broken REGISTER is answered");
        let got = drain(&c, Duration::from_millis(200));
        let answered = got
            .iter()
            .any(|r| r.as_slice() == b"ERROR Invalid registration payload");
        stray.extend(
            got.into_iter()
                .filter(|r| r.as_slice() != b"ERROR Invalid registration payload"),
        );
        if answered {
            break;
        }
        c.send_to(&bad_register, to).expect("send");
    }
    stray.extend(drain(&c, Duration::from_millis(300)));
    // (A RESOLVE of a 65,499-character name is well-formed and gets a 404, smaller than
    // the request.)
    assert!(
        stray.len() <= 2 && stray.iter().all(|r| r.starts_with(b"ERROR ")),
        "malformed input gets at most an ERROR: {:?}",
        stray
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>()
    );
    // Still serving.
    let r = ask(&c, to, b"RESOLVE nobody", Duration::from_secs(5)).expect("RESOLVE answered");
    assert_eq!(r, b"ERROR 404 User not found");
    let r = ask(&c, to, b"PING", Duration::from_secs(5)).expect("PING answered");
    assert_eq!(r, b"PONG");
    let s = status(&c, to);
    let net = &s["net"];
    assert!(net["decode_failed"].as_u64().unwrap_or(0) >= 10, "{s}");
    // 65,507 bytes is the IPv4 maximum, so `too_long` cannot happen over UDP; the two
    // maximal undecodable datagrams are among the decode failures.
    assert_eq!(net["too_long"].as_u64(), Some(0), "{s}");
    assert!(net["not_utf8"].as_u64().unwrap_or(0) >= 2, "{s}");
    node.stop().expect("clean stop");
}

#[test]
fn a_flood_from_one_source_is_limited_while_another_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start("hostile2", dir.path());
    let to = node.addr;
    let flood = client(Ipv4Addr::LOCALHOST);
    flood.set_nonblocking(true).expect("nonblocking");
    let other = client(Ipv4Addr::new(127, 0, 0, 2));
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut answered_other = 0;
    // 20,000 requests as fast as the socket takes them, with the other source asking in
    // between; bounded in time.
    for round in 1..=40 {
        if t0.elapsed() > Duration::from_secs(20) {
            break;
        }
        for _ in 0..500 {
            if flood.send_to(b"RESOLVE flooder", to).is_ok() {
                sent += 1;
            }
        }
        // Drain what came back so the flood socket's buffer never fills.
        let mut buf = [0u8; 256];
        while flood.recv_from(&mut buf).is_ok() {}
        if round % 10 == 0 {
            if let Some(r) = ask(&other, to, b"RESOLVE someone", Duration::from_secs(2)) {
                assert_eq!(r, b"ERROR 404 User not found");
                answered_other += 1;
            }
        }
    }
    assert_eq!(
        answered_other, 4,
        "the other source is served during the flood"
    );
    let s = status(&other, to);
    let limited = s["net"]["rate_limited"].as_u64().unwrap_or(0);
    let lookups = s["counters"]["client_requests"].as_u64().unwrap_or(0);
    eprintln!(
        "flood: sent {sent} in {:.2} s, node refused {limited}, served {lookups} lookups",
        t0.elapsed().as_secs_f64()
    );
    assert!(limited > 0, "flood is rate-limited: {s}");
    // The flooder got at most its burst plus its rate over the flood's duration.
    let allowed = 400.0 + 200.0 * (t0.elapsed().as_secs_f64() + 1.0);
    assert!(
        (lookups as f64) <= allowed + 10.0,
        "served {lookups} > allowed {allowed}"
    );
    node.stop().expect("clean stop");
}

// ---- a real `flock server` process ----------------------------------------------------

/// Kills the server on drop, even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `path` contains `needle`, for at most `limit`.
fn wait_log(path: &std::path::Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "no {needle:?} in the server log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The design document's 3-field REGISTER stores an unsigned record; RESOLVE answers it
/// with exactly `OK <ip> <port>` (it has no key or version to send).
#[test]
fn unsigned_register_resolves_as_ip_and_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = dir.path().join("server.log");
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_flock"))
            .args(["server", "kat", "--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--ping-port", "0", "--no-multicast", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn flock server"),
    );
    // Bound to loopback, no --join: nobody to ask, so it founds a ring and says so.
    let text = wait_log(&log, "founded a new ring", Duration::from_secs(20));
    assert!(!text.contains("joined the ring"), "{text}");
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let reg = ask(
        &s,
        to,
        b"REGISTER alice 10.0.0.5 4000",
        Duration::from_secs(10),
    )
    .expect("REGISTER answered");
    assert_eq!(
        String::from_utf8_lossy(&reg),
        "OK User 'alice' in (10.0.0.5:4000) successfully registered"
    );
    let res = ask(&s, to, b"RESOLVE alice", Duration::from_secs(10)).expect("RESOLVE answered");
    assert_eq!(String::from_utf8_lossy(&res), "OK 10.0.0.5 4000");
    drop(server);
}
