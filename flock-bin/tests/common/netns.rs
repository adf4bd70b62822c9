//! Test hosts in Linux network namespaces: one namespace per host, all joined by a bridge
//! that lives in a namespace of its own, so no test traffic ever reaches the machine's own
//! network. Needs root; without it, [`Net::new`] says loudly that the test is skipped.

#![allow(dead_code, unreachable_pub)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A private test network of hosts on 10.<subnet>.0.0/24.
pub struct Net {
    prefix: String,
    bridge_ns: String,
    subnet: u8,
    hosts: Vec<Host>,
}

/// One test host: a network namespace with one interface `eth0`.
#[derive(Clone, Debug)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// The host's address on the bridge.
    pub ip: Ipv4Addr,
}

/// Runs `ip <args>`; its stderr as the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process can make network namespaces.
pub fn have_root() -> bool {
    let euid = Command::new("id").arg("-u").output().ok();
    let root = euid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root && (Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists())
}

/// Whether this process can make network namespaces; if not, prints the loud SKIPPED
/// line for `test`.
pub fn root_or_skip(test: &str) -> bool {
    let root = have_root();
    if !root {
        eprintln!(
            "\n*** SKIPPED {test}: needs root to create network namespaces (CI runs it as root) ***\n"
        );
    }
    root
}

impl Net {
    /// Builds a bridge and `n` hosts. Returns `None` (after printing a loud SKIPPED line)
    /// when not running as root.
    pub fn new(test: &str, n: usize) -> Option<Self> {
        if !root_or_skip(test) {
            return None;
        }
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names are at most 15 bytes; namespace names are free-form.
        let prefix = format!("fl{}{}", pid % 100_000, k);
        let subnet = 100 + ((pid as u8).wrapping_add(k as u8 * 7)) % 100;
        let bridge_ns = format!("{prefix}-br");
        let mut net = Self {
            prefix,
            bridge_ns,
            subnet,
            hosts: Vec::new(),
        };
        net.setup_bridge().expect("create bridge namespace");
        for i in 0..n {
            net.add_host()
                .unwrap_or_else(|e| panic!("add host {i}: {e}"));
        }
        Some(net)
    }

    fn setup_bridge(&mut self) -> Result<(), String> {
        let _ = ip(&["netns", "del", &self.bridge_ns]);
        ip(&["netns", "add", &self.bridge_ns])?;
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
        ])?;
        ip(&["-n", &self.bridge_ns, "link", "set", "br0", "up"])?;
        Ok(())
    }

    /// Adds one more host and returns it.
    pub fn add_host(&mut self) -> Result<Host, String> {
        let i = self.hosts.len() + 1;
        let ns = format!("{}-h{i}", self.prefix);
        let a = format!("{}a{i}", self.prefix);
        let b = format!("{}b{i}", self.prefix);
        let addr = Ipv4Addr::new(10, self.subnet, 0, i as u8);
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        ip(&["link", "set", &a, "netns", &ns])?;
        ip(&["link", "set", &b, "netns", &self.bridge_ns])?;
        ip(&["-n", &self.bridge_ns, "link", "set", &b, "master", "br0"])?;
        ip(&["-n", &self.bridge_ns, "link", "set", &b, "up"])?;
        ip(&["-n", &ns, "link", "set", &a, "name", "eth0"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // Broadcast and multicast need a route; everything stays on our bridge.
        ip(&["-n", &ns, "route", "add", "default", "dev", "eth0"])?;
        let host = Host { ns, ip: addr };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// The hosts, in creation order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i` (0-based).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Cuts host `i` off the bridge (a partition), or reconnects it.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let b = format!("{}b{}", self.prefix, i + 1);
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &b,
            if up { "up" } else { "down" },
        ])
    }
}

impl Host {
    /// A command that runs `program` inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Spawns `program args` in the namespace with piped stdio.
    pub fn spawn(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Child {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }
}

/// Kills anything still running in namespace `ns`, then deletes it.
pub fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            remove_namespace(&h.ns);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns]);
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}
