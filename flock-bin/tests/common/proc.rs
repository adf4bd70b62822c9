//! A child process for real-process tests: stdout collected line by line, stdin writable,
//! killed on drop (with its whole process group when asked, e.g. chromedriver and the
//! browsers it started). Every wait is a poll with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(40);

/// The `flock` binary under test.
pub const FLOCK: &str = env!("CARGO_BIN_EXE_flock");

/// Client timings for tests (`flock chat`, `flock web`): failures are noticed and
/// retried within a second or two.
pub const FAST_CLIENT: [&str; 8] = [
    "--request-timeout-ms",
    "500",
    "--keepalive-ms",
    "500",
    "--retry-base-ms",
    "300",
    "--retry-max-ms",
    "1500",
];

/// A child process whose stdout lines are collected; killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    /// Kill the whole process group on drop.
    group: bool,
}

impl Proc {
    /// Spawns `cmd` with piped stdin/stdout and stderr to `log`; `group` puts it in a
    /// process group of its own that is killed as a whole.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path, group: bool) -> Self {
        let stderr = std::fs::File::create(log).expect("log file");
        if group {
            cmd.process_group(0);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut p = Self::adopt(name, child);
        p.group = group;
        p
    }

    /// `flock <args>` with `RUST_LOG=info`.
    pub fn flock(name: &str, args: &[String], log: &Path) -> Self {
        let mut cmd = Command::new(FLOCK);
        cmd.args(args).env("RUST_LOG", "info");
        Self::spawn(name, &mut cmd, log, false)
    }

    /// Takes over a child spawned with piped stdout (and stdin, if it is to be written).
    pub fn adopt(name: &str, mut child: Child) -> Self {
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lock").push(line);
            }
        });
        Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            group: false,
        }
    }

    /// Writes one line to the child's stdin.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush");
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// How many stdout lines satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines().iter().filter(|l| pred(l)).count()
    }

    /// Waits until some line satisfies `pred`; an error with the output on timeout.
    pub fn try_wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return Ok(l);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: no line {what:?} within {WAIT:?}; output:\n{}",
                    self.name,
                    self.lines().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until some line satisfies `pred`; panics with the output on timeout.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.try_wait_for(what, pred)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for a line containing `needle`; an error on timeout.
    pub fn line_with(&self, needle: &str) -> Result<String, String> {
        self.try_wait_for(needle, |l| l.contains(needle))
    }

    /// Waits for a line containing `needle`; panics on timeout.
    pub fn contains(&self, needle: &str) -> String {
        self.wait_for(needle, |l| l.contains(needle))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the child exits; panics after [`WAIT`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The address a `flock chat` process listens on, from its login line.
    pub fn listen_addr(&self) -> SocketAddrV4 {
        let line = self.contains("listening on");
        line.rsplit(' ')
            .next()
            .expect("address")
            .parse()
            .expect("address")
    }

    /// Kills the child now.
    pub fn kill(self) {
        drop(self);
    }
}

/// Waits until `addr` answers `PING` with `PONG`.
pub fn wait_pong(addr: SocketAddrV4) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 64];
    loop {
        let _ = s.send_to(b"PING", addr);
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if &buf[..n] == b"PONG" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr} never answered");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port `p` such that UDP `p` and `p + 1` are free on 127.0.0.1 right now.
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let port = a.local_addr().expect("addr").port();
        if port < u16::MAX && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free ports in a row");
}

/// One `flock server` on 127.0.0.1 (data in `<dir>/s0`, log `<dir>/server.log`), on two
/// free ports (`port`, PING on `port + 1`): other test runs share this machine, so no
/// fixed ports.
pub fn loopback_server(dir: &Path) -> (Proc, u16) {
    let port = free_port_pair();
    let args: Vec<String> = [
        "server",
        "s0",
        "--bind",
        "127.0.0.1",
        "--no-broadcast",
        "--no-multicast",
        "--port",
        &port.to_string(),
        "--ping-port",
        &(port + 1).to_string(),
        "--data-dir",
        &dir.join("s0").display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let p = Proc::flock("server", &args, &dir.join("server.log"));
    wait_pong(SocketAddrV4::new([127, 0, 0, 1].into(), port));
    (p, port)
}

/// `flock chat` for `user` (data in `<dir>/<user>`, log `<dir>/<user>.log`) using the
/// server on 127.0.0.1:`port`, with [`FAST_CLIENT`] timings; waits until registered.
pub fn loopback_chat(dir: &Path, user: &str, port: u16) -> Proc {
    let mut args: Vec<String> = [
        "chat",
        "--user",
        user,
        "--password",
        "Flock-Test-1",
        "--data-dir",
        &dir.join(user).display().to_string(),
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--server",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(FAST_CLIENT.iter().map(|s| (*s).to_owned()));
    let p = Proc::flock(user, &args, &dir.join(format!("{user}.log")));
    p.contains("registered with");
    p
}

/// `flock server <name>` on 127.0.0.1:`port` (PING on `port + 1`, no broadcast or
/// multicast), data in `data`, joining 127.0.0.1:`join`; stderr to `log`.
pub fn loopback_ring_server(
    name: &str,
    port: u16,
    join: Option<u16>,
    data: &Path,
    log: &Path,
) -> Proc {
    loopback_ring_server_with(name, port, join, data, log, &[])
}

/// [`loopback_ring_server`] with `extra` arguments (e.g. `--cluster-key FILE`).
pub fn loopback_ring_server_with(
    name: &str,
    port: u16,
    join: Option<u16>,
    data: &Path,
    log: &Path,
    extra: &[&str],
) -> Proc {
    let mut args: Vec<String> = [
        "server",
        name,
        "--bind",
        "127.0.0.1",
        "--no-broadcast",
        "--no-multicast",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        "--port".into(),
        port.to_string(),
        "--ping-port".into(),
        (port + 1).to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ]);
    if let Some(j) = join {
        args.extend(["--join".into(), format!("127.0.0.1:{j}")]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Proc::flock(name, &args, log)
}

/// Waits until `flock status` at 127.0.0.1:`port` reports `n` nodes.
pub fn wait_nodes(port: u16, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = Command::new(FLOCK)
            .args(["status", &format!("127.0.0.1:{port}")])
            .output()
            .expect("flock status");
        if String::from_utf8_lossy(&out.stdout).contains(&format!("{n} nodes")) {
            return;
        }
        assert!(Instant::now() < deadline, "ring of {n} did not form");
        std::thread::sleep(Duration::from_millis(200));
    }
}
