//! Two subnets joined by routers: a client bridge (10.S.1.0/24) and a server bridge
//! (10.S.2.0/24), each in a namespace of its own, hosts on either side whose default
//! route goes through the first router, and router namespaces with a leg on each bridge
//! (`eth0` client side at 10.S.1.(254 - i), `eth1` server side at 10.S.2.(254 - i)) and IP
//! forwarding on. Link-local multicast (224.0.0.1) and broadcasts stay on their bridge;
//! unicast crosses. Needs root; without it, [`Routed::new`] says the test is skipped.
//! A `flock proxy` process helper with its counters line is here too.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::flock::bin;
use super::netns::{Host, ip, remove_namespace, root_or_skip, wait_for};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Which bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// 10.S.1.0/24.
    Client,
    /// 10.S.2.0/24.
    Server,
}

/// A router: one namespace, a leg on each bridge.
#[derive(Clone, Debug)]
pub struct Router {
    /// The namespace, as a host whose `ip` is its client-side address.
    pub host: Host,
    /// Its address on the client bridge (`eth0`).
    pub client_ip: Ipv4Addr,
    /// Its address on the server bridge (`eth1`).
    pub server_ip: Ipv4Addr,
}

/// The two-subnet test network.
pub struct Routed {
    prefix: String,
    subnet: u8,
    bridges: [String; 2],
    namespaces: Vec<String>,
    links: usize,
    /// Hosts on the client bridge, in creation order.
    pub clients: Vec<Host>,
    /// Hosts on the server bridge, in creation order.
    pub servers: Vec<Host>,
    /// Routers, in creation order.
    pub routers: Vec<Router>,
}

impl Routed {
    /// Both bridges, `routers` routers, `clients` and `servers` hosts. `None` (after a
    /// loud SKIPPED line) when not root.
    pub fn new(test: &str, clients: usize, servers: usize, routers: usize) -> Option<Self> {
        if !root_or_skip(test) {
            return None;
        }
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("fr{}{}", pid % 100_000, k);
        let subnet = 1 + ((pid as u8).wrapping_add(k as u8 * 13)) % 250;
        let bridges = [format!("{prefix}-cbr"), format!("{prefix}-sbr")];
        let mut net = Self {
            prefix,
            subnet,
            bridges,
            namespaces: Vec::new(),
            links: 0,
            clients: Vec::new(),
            servers: Vec::new(),
            routers: Vec::new(),
        };
        net.setup(clients, servers, routers)
            .unwrap_or_else(|e| panic!("routed network: {e}"));
        Some(net)
    }

    fn setup(&mut self, clients: usize, servers: usize, routers: usize) -> Result<(), String> {
        for br in self.bridges.clone() {
            let _ = ip(&["netns", "del", &br]);
            ip(&["netns", "add", &br])?;
            ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &br, "link", "set", "br0", "up"])?;
        }
        for i in 0..routers {
            let ns = self.namespace(&format!("r{i}"))?;
            let last = 254 - i as u8;
            let client_ip = self.addr(Side::Client, last);
            let server_ip = self.addr(Side::Server, last);
            self.leg(&ns, "eth0", Side::Client, client_ip, 24)?;
            self.leg(&ns, "eth1", Side::Server, server_ip, 24)?;
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ])
                .output()
                .map_err(|e| format!("sysctl: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "sysctl in {ns}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            self.routers.push(Router {
                host: Host { ns, ip: client_ip },
                client_ip,
                server_ip,
            });
        }
        for _ in 0..clients {
            self.add_host(Side::Client)?;
        }
        for _ in 0..servers {
            self.add_host(Side::Server)?;
        }
        Ok(())
    }

    /// `10.S.1.last` or `10.S.2.last`.
    pub fn addr(&self, side: Side, last: u8) -> Ipv4Addr {
        let third = match side {
            Side::Client => 1,
            Side::Server => 2,
        };
        Ipv4Addr::new(10, self.subnet, third, last)
    }

    fn namespace(&mut self, name: &str) -> Result<String, String> {
        let ns = format!("{}-{name}", self.prefix);
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }

    /// A veth from namespace `ns` (named `iface` there, `addr/prefix`) to `side`'s bridge.
    fn leg(
        &mut self,
        ns: &str,
        iface: &str,
        side: Side,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), String> {
        self.links += 1;
        let a = format!("{}a{}", self.prefix, self.links);
        let b = format!("{}b{}", self.prefix, self.links);
        let br = &self.bridges[usize::from(side == Side::Server)];
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        ip(&["link", "set", &a, "netns", ns])?;
        ip(&["link", "set", &b, "netns", br])?;
        ip(&["-n", br, "link", "set", &b, "master", "br0"])?;
        ip(&["-n", br, "link", "set", &b, "up"])?;
        ip(&["-n", ns, "link", "set", &a, "name", iface])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            iface,
        ])?;
        ip(&["-n", ns, "link", "set", iface, "up"])
    }

    /// One more host on `side`, routed through the first router.
    pub fn add_host(&mut self, side: Side) -> Result<Host, String> {
        let list = match side {
            Side::Client => &self.clients,
            Side::Server => &self.servers,
        };
        let last = list.len() as u8 + 1;
        let tag = match side {
            Side::Client => "c",
            Side::Server => "s",
        };
        let ns = self.namespace(&format!("{tag}{last}"))?;
        let addr = self.addr(side, last);
        self.leg(&ns, "eth0", side, addr, 24)?;
        let gw = match (side, self.routers.first()) {
            (Side::Client, Some(r)) => r.client_ip.to_string(),
            (Side::Server, Some(r)) => r.server_ip.to_string(),
            (_, None) => return Err("no router".into()),
        };
        ip(&[
            "-n", &ns, "route", "add", "default", "via", &gw, "dev", "eth0",
        ])?;
        let host = Host { ns, ip: addr };
        match side {
            Side::Client => self.clients.push(host.clone()),
            Side::Server => self.servers.push(host.clone()),
        }
        Ok(host)
    }

    /// A host on `side`'s bridge whose address (`10.S.9.last/24`) is in neither subnet:
    /// what it sends looks spoofed to anyone who checks sources.
    pub fn add_stranger(&mut self, side: Side, last: u8) -> Result<Host, String> {
        let ns = self.namespace(&format!("x{last}"))?;
        let addr = Ipv4Addr::new(10, self.subnet, 9, last);
        self.leg(&ns, "eth0", side, addr, 24)?;
        ip(&["-n", &ns, "route", "add", "default", "dev", "eth0"])?;
        Ok(Host { ns, ip: addr })
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            remove_namespace(ns);
        }
        for br in &self.bridges {
            let _ = ip(&["netns", "del", br]);
        }
    }
}

/// A running `flock proxy` (debug log to a file); killed when dropped.
pub struct ProxyProc {
    pub log: PathBuf,
    child: Child,
}

impl ProxyProc {
    /// `flock proxy --client-side eth0 --server-side eth1 <extra>` in `router`; waits
    /// until it runs.
    pub fn start(router: &Router, dir: &Path, name: &str, extra: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let logf = std::fs::File::create(&log).expect("proxy log");
        let child = router
            .host
            .command(bin())
            .args(["proxy", "--client-side", "eth0", "--server-side", "eth1"])
            .args(extra)
            .env("RUST_LOG", "info,flock_bin::proxy=debug")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .expect("spawn flock proxy");
        let p = Self { log, child };
        wait_for("the proxy to start", Duration::from_secs(20), || {
            p.log_text().contains("proxy: client side").then_some(())
        });
        p
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn counter_lines(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("proxy counters:"))
            .map(str::to_owned)
            .collect()
    }

    /// Asks for the counters line (SIGUSR1) and returns it parsed.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let before = self.counter_lines().len();
        let _ = std::process::Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status();
        let line = wait_for("a counters line", Duration::from_secs(10), || {
            self.counter_lines().get(before).cloned()
        });
        let text = line.split("proxy counters:").nth(1).unwrap_or_default();
        text.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- proxy log {} ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}
