//! Known answers through a real `flock server` process on loopback (no root needed).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Sends `req` every 200 ms until a reply comes, for at most `limit`.
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
