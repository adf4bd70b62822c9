//! Helpers for tests that run real `flock` processes in network namespaces: a process
//! guard that kills on drop, server start-up, and the `flock` client commands run inside
//! a namespace.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::{Host, wait_for};

/// The `flock` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flock")
}

/// A running `flock server`; killed (SIGKILL) when dropped.
pub struct Server {
    pub name: String,
    pub host: Host,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts `flock server <name> --bind <host ip>` with data under `dir/<name>`.
    pub fn start(host: &Host, name: &str, dir: &Path, extra: &[&str]) -> Self {
        let data = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        Self::start_with(host, name, &data, &log, extra)
    }

    /// Starts a server with an explicit data directory (to restart one).
    pub fn start_with(host: &Host, name: &str, data: &Path, log: &Path, extra: &[&str]) -> Self {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let ip = host.ip.to_string();
        // `--bind -` (a test convention): no --bind at all, the original's defaults.
        let bind: Vec<&str> = if extra.first() == Some(&"--bind") && extra.get(1) == Some(&"-") {
            Vec::new()
        } else {
            vec!["--bind", &ip]
        };
        let extra = if bind.is_empty() { &extra[2..] } else { extra };
        // The test networks' hosts ask STATUS of each other (10.<subnet>.0.0/24), and
        // a host of itself over loopback.
        let admin: &[&str] = if extra.contains(&"--admin-allow") {
            &[]
        } else {
            &[
                "--admin-allow",
                "127.0.0.0/8",
                "--admin-allow",
                "10.0.0.0/8",
            ]
        };
        let child = host
            .command(bin())
            .args(["server", name])
            .args(&bind)
            .args(admin)
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .expect("spawn flock server");
        Self {
            name: name.into(),
            host: host.clone(),
            data: data.into(),
            log: log.into(),
            child: Some(child),
        }
    }

    /// `ip:12345`.
    pub fn addr(&self) -> String {
        format!("{}:12345", self.host.ip)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful leave), then wait up to `limit` for the exit; SIGKILL after.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `flock <args>` inside `host`'s namespace; (success, stdout).
pub fn flock(host: &Host, args: &[&str]) -> (bool, String) {
    let out = host
        .command(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run flock");
    if !out.status.success() && !out.stderr.is_empty() {
        eprintln!(
            "flock {args:?} in {}: {}",
            host.ns,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `STATUS` of `addr`, asked from `host`.
pub fn status(host: &Host, addr: &str) -> Option<serde_json::Value> {
    let (ok, out) = flock(host, &["status", "--json", addr]);
    if !ok {
        return None;
    }
    serde_json::from_str(out.trim()).ok()
}

/// Registers `users` through `addr` (one shared key under `keys`); true if all OK.
pub fn register(host: &Host, addr: &str, keys: &Path, users: &[String]) -> bool {
    let keys = keys.to_string_lossy().into_owned();
    let mut args = vec!["register", "--one-key", "--server", addr, "--keys", &keys];
    args.extend(users.iter().map(String::as_str));
    let (ok, out) = flock(host, &args);
    if !ok {
        eprintln!("register via {addr} failed:\n{out}");
    }
    ok
}

/// Resolves `users` through `addr`: user -> reply line.
pub fn resolve(
    host: &Host,
    addr: &str,
    users: &[String],
    timeout_ms: u64,
) -> BTreeMap<String, String> {
    let t = timeout_ms.to_string();
    let mut args = vec!["resolve", "--timeout-ms", &t, "--server", addr];
    args.extend(users.iter().map(String::as_str));
    let (_, out) = flock(host, &args);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(u, r)| (u.to_string(), r.to_string()))
        .collect()
}

/// Whether every user resolves (`OK ...`) through `addr`.
pub fn all_resolve(host: &Host, addr: &str, users: &[String], timeout_ms: u64) -> bool {
    let m = resolve(host, addr, users, timeout_ms);
    users
        .iter()
        .all(|u| m.get(u).is_some_and(|r| r.starts_with("OK ")))
}

/// Sends raw datagrams from `host` to `addr`; the replies, one per line.
pub fn send_raw(host: &Host, addr: &str, msgs: &[String], echo_cookie: bool) -> String {
    send_raw_from(host, None, addr, msgs, echo_cookie)
}

/// [`send_raw`] from the local address `from` (`None`: any free port).
pub fn send_raw_from(
    host: &Host,
    from: Option<&str>,
    addr: &str,
    msgs: &[String],
    echo_cookie: bool,
) -> String {
    let mut args = vec!["send-raw", "--wait-ms", "300", "--to", addr];
    if echo_cookie {
        args.push("--echo-cookie");
    }
    if let Some(f) = from {
        args.extend(["--from", f]);
    }
    args.extend(msgs.iter().map(String::as_str));
    flock(host, &args).1
}

/// The ring as the nodes at `addrs` report it, if it is one complete, consistent ring:
/// every node a member, following `succs[0]` from any node visits all of them once, and
/// every node's predecessor is the node before it. Returns the ring order.
pub fn ring_order(host: &Host, addrs: &[String]) -> Option<Vec<String>> {
    let mut succ = BTreeMap::new();
    let mut pred = BTreeMap::new();
    for a in addrs {
        let s = status(host, a)?;
        if s.get("member")?.as_bool() != Some(true) {
            return None;
        }
        let first = s.get("succs")?.as_array()?.first()?.as_str()?.to_string();
        succ.insert(a.clone(), first);
        pred.insert(a.clone(), s.get("pred")?.as_str()?.to_string());
    }
    let mut order = vec![addrs[0].clone()];
    let mut cur = addrs[0].clone();
    for _ in 0..addrs.len() {
        let next = succ.get(&cur)?.clone();
        if pred.get(&next)? != &cur {
            return None;
        }
        if next == addrs[0] {
            break;
        }
        if order.contains(&next) {
            return None;
        }
        order.push(next.clone());
        cur = next;
    }
    (order.len() == addrs.len() && succ.get(&cur)? == &addrs[0]).then_some(order)
}

/// Waits until the nodes at `addrs` form one ring.
pub fn wait_ring(host: &Host, addrs: &[String], limit: Duration) -> Vec<String> {
    wait_for("one consistent ring", limit, || ring_order(host, addrs))
}

/// Waits until `addr` reports itself a ring member.
pub fn wait_member(host: &Host, addr: &str, limit: Duration) {
    wait_for(&format!("{addr} to be a member"), limit, || {
        status(host, addr)
            .and_then(|s| s.get("member")?.as_bool())
            .filter(|m| *m)
    });
}

/// `n` usernames ending in `_prefix`. They start with different letters: the ring hash
/// is a polynomial, so names that differ only at the end land next to each other.
pub fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}{i}_{prefix}", char::from(b'a' + (i % 26) as u8)))
        .collect()
}

/// A fresh temporary directory for a test.
pub fn tempdir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("flock-{test}-"))
        .tempdir()
        .expect("tempdir")
}
