//! `flock proxy`: lets clients on one subnet find the ring's servers on another, as the
//! original's router (`router/multicast_proxy.py`) does, without its source spoofing.
//!
//! The proxy runs on a host with a leg in each subnet. A client's multicast
//! `DISCOVER_SERVER` (224.0.0.1:10003) and broadcast `DISCOVER` (255.255.255.255:12345)
//! stay on the client's link; the proxy catches them there and multicasts
//! `DISCOVER_SERVER:<client_ip>:<client_port>` on every server-side leg, and every
//! server answers the client directly, by unicast, through the router's forwarding.
//! A `DISCOVER` is forwarded in that form too (there is no proxied `DISCOVER`), so its
//! answers carry the server's IP where a `DISCOVER` answer carries its name: our client
//! takes either.
//!
//! No mode needs privileges: the proxy binds port 12345 on the broadcast address and
//! 10003 (shared with servers on the same host) and sends from its own addresses.
//!
//! [`core`] decides (loop rules, rate limits, counters; sans-IO); [`Proxy`] is the tokio
//! driver with the sockets.

pub mod core;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use flock_proto::limits::{DISCOVERY_GROUP, DISCOVERY_PORT, DISCOVERY_TTL, SERVER_PORT};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

pub use self::core::{ConfigError, Counters, Dropped, Limits, ProxyCore, Request, Subnet, Verdict};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A `--client-side` / `--server-side` value names no usable address.
    #[error("{0}")]
    Leg(String),
    /// The legs make no proxy.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProxyError {
    let what = what.into();
    move |source| ProxyError::Io { what, source }
}

/// `flock proxy` arguments.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ProxyArgs {
    /// The leg on the clients' subnet: an interface (`eth1`), an address of this host
    /// (`10.1.0.254`) or an address with its prefix (`10.1.0.254/24`). Repeatable.
    #[cfg_attr(
        feature = "cli",
        arg(long = "client-side", value_name = "IFACE_OR_IP", required = true)
    )]
    pub client_side: Vec<String>,
    /// The leg on the servers' subnet, in the same forms. Repeatable.
    #[cfg_attr(
        feature = "cli",
        arg(long = "server-side", value_name = "IFACE_OR_IP", required = true)
    )]
    pub server_side: Vec<String>,
    /// Requests forwarded per second per client IP, sustained.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Limits::default().rate))]
    pub rate: f64,
    /// Requests forwarded per client IP at once.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Limits::default().burst))]
    pub burst: f64,
    /// Client IPs tracked by the rate limiter at most.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Limits::default().max_clients))]
    pub max_clients: usize,
    /// Requests forwarded per second in all.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = Limits::default().total_rate))]
    pub total_rate: f64,
    /// Relay only the multicast `DISCOVER_SERVER`, not broadcast `DISCOVER` (and leave
    /// port 12345 alone, e.g. for a server on this host bound to 0.0.0.0).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_broadcast: bool,
    /// Log the counters line this often, in seconds (it is always logged on SIGUSR1).
    #[cfg_attr(feature = "cli", arg(long, value_name = "SECS"))]
    pub stats_interval: Option<u64>,
}

/// One leg of the proxy: its interface name (if known), address and subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// The interface, as given or found; empty when given as `IP/PREFIX`.
    pub iface: String,
    /// The proxy's address and subnet on this leg.
    pub subnet: Subnet,
}

impl Leg {
    /// Reads `IFACE_OR_IP`: `IP/PREFIX` as is; an interface or a bare address is looked
    /// up in `ip -j -4 addr` (iproute2) for its first IPv4 address and prefix.
    ///
    /// # Errors
    /// No such interface or address, or `ip` cannot be run for the look-up.
    pub fn parse(spec: &str) -> Result<Self, ProxyError> {
        if let Some((ip, prefix)) = spec.split_once('/') {
            let subnet = ip
                .parse()
                .ok()
                .zip(prefix.parse().ok())
                .and_then(|(ip, p)| Subnet::new(ip, p))
                .ok_or_else(|| ProxyError::Leg(format!("bad leg {spec:?}: want IP/PREFIX")))?;
            return Ok(Self {
                iface: String::new(),
                subnet,
            });
        }
        let out = std::process::Command::new("ip")
            .args(["-j", "-4", "addr", "show"])
            .output()
            .map_err(|e| {
                ProxyError::Leg(format!(
                    "looking up {spec:?} needs `ip` (iproute2): {e}; give IP/PREFIX instead"
                ))
            })?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| ProxyError::Leg(format!("`ip -j -4 addr show`: {e}")))?;
        Self::find(&json, spec).ok_or_else(|| {
            ProxyError::Leg(format!(
                "no interface or local IPv4 address {spec:?} (see `ip -4 addr`)"
            ))
        })
    }

    /// The leg named `spec` (an interface name or one of its addresses) in the output
    /// of `ip -j -4 addr show`.
    fn find(json: &serde_json::Value, spec: &str) -> Option<Self> {
        let want_ip: Option<Ipv4Addr> = spec.parse().ok();
        json.as_array()?.iter().find_map(|link| {
            let iface = link.get("ifname")?.as_str()?;
            link.get("addr_info")?.as_array()?.iter().find_map(|a| {
                let ip: Ipv4Addr = a.get("local")?.as_str()?.parse().ok()?;
                let prefix = u8::try_from(a.get("prefixlen")?.as_u64()?).ok()?;
                let hit = want_ip.map_or(iface == spec, |w| w == ip);
                Some(Self {
                    iface: iface.to_owned(),
                    subnet: Subnet::new(ip, prefix).filter(|_| hit)?,
                })
            })
        })
    }
}

/// What a [`Proxy`] needs: its legs, ports and limits.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Legs on client subnets.
    pub client_side: Vec<Leg>,
    /// Legs on server subnets.
    pub server_side: Vec<Leg>,
    /// The discovery group (224.0.0.1).
    pub group: Ipv4Addr,
    /// The discovery port (10003).
    pub discovery_port: u16,
    /// The port clients broadcast `DISCOVER` to (12345); `None`: multicast only.
    pub broadcast_port: Option<u16>,
    /// Rate limits and table bounds.
    pub limits: Limits,
    /// Log the counters line this often.
    pub stats_interval: Option<Duration>,
    /// Log the counters line on SIGUSR1 (installs a handler: the binary's choice).
    pub stats_on_sigusr1: bool,
}

impl ProxyOptions {
    /// The standard ports and group, default limits, between these legs.
    pub fn new(client_side: Vec<Leg>, server_side: Vec<Leg>) -> Self {
        Self {
            client_side,
            server_side,
            group: DISCOVERY_GROUP,
            discovery_port: DISCOVERY_PORT,
            broadcast_port: Some(SERVER_PORT),
            limits: Limits::default(),
            stats_interval: None,
            stats_on_sigusr1: false,
        }
    }

    /// Options from the command line (interfaces looked up).
    ///
    /// # Errors
    /// A leg names no usable address.
    pub fn from_args(args: &ProxyArgs) -> Result<Self, ProxyError> {
        let legs = |specs: &[String]| -> Result<Vec<Leg>, ProxyError> {
            specs.iter().map(|s| Leg::parse(s)).collect()
        };
        let mut opts = Self::new(legs(&args.client_side)?, legs(&args.server_side)?);
        opts.limits = Limits {
            rate: args.rate,
            burst: args.burst,
            max_clients: args.max_clients,
            total_rate: args.total_rate,
        };
        if args.no_broadcast {
            opts.broadcast_port = None;
        }
        opts.stats_interval = args
            .stats_interval
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        opts.stats_on_sigusr1 = true;
        Ok(opts)
    }
}

/// The proxy on its sockets: listeners on the client side, one sender per server leg.
#[derive(Debug)]
pub struct Proxy {
    core: ProxyCore,
    multicast: UdpSocket,
    broadcast: Option<UdpSocket>,
    senders: Vec<(Leg, UdpSocket)>,
    group: SocketAddrV4,
    stats_interval: Option<Duration>,
    stats_on_sigusr1: bool,
}

fn udp() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
}

fn into_tokio(s: Socket) -> io::Result<UdpSocket> {
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

impl Proxy {
    /// Checks the legs and opens the sockets.
    ///
    /// # Errors
    /// Bad legs ([`ProxyError::Config`]) or a socket that cannot be set up (a port taken
    /// by a program that does not share it, an address not on this host).
    pub async fn bind(opts: ProxyOptions) -> Result<Self, ProxyError> {
        let subnets = |legs: &[Leg]| legs.iter().map(|l| l.subnet).collect();
        let core = ProxyCore::new(
            subnets(&opts.client_side),
            subnets(&opts.server_side),
            opts.limits,
        )?;
        // Multicast: shared with servers on this host, joined on every client-side leg,
        // and (IP_MULTICAST_ALL off) deaf to the group on every other interface: what
        // arrives on a server-side leg, the proxy's own forwards included, never reaches
        // it.
        let m = udp().map_err(io_err("multicast socket"))?;
        m.set_reuse_address(true).map_err(io_err("SO_REUSEADDR"))?;
        m.set_multicast_all_v4(false)
            .map_err(io_err("IP_MULTICAST_ALL"))?;
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, opts.discovery_port);
        m.bind(&SocketAddr::V4(any).into())
            .map_err(io_err(format!("bind {any}")))?;
        for leg in &opts.client_side {
            m.join_multicast_v4(&opts.group, &leg.subnet.addr)
                .map_err(io_err(format!("join {} on {}", opts.group, leg.subnet)))?;
        }
        let multicast = into_tokio(m).map_err(io_err("multicast socket"))?;
        // Broadcast: a socket on 255.255.255.255 sees only broadcasts, shared likewise.
        let broadcast = match opts.broadcast_port {
            None => None,
            Some(port) => {
                let b = udp().map_err(io_err("broadcast socket"))?;
                b.set_reuse_address(true).map_err(io_err("SO_REUSEADDR"))?;
                let at = SocketAddrV4::new(Ipv4Addr::BROADCAST, port);
                b.bind(&SocketAddr::V4(at).into()).map_err(io_err(format!(
                    "bind {at} (a server on this host bound to 0.0.0.0? give it --bind IP, \
                     or run the proxy with --no-broadcast)"
                )))?;
                Some(into_tokio(b).map_err(io_err("broadcast socket"))?)
            }
        };
        let mut senders = Vec::new();
        for leg in &opts.server_side {
            let what = format!("server-side socket on {}", leg.subnet);
            let s = udp().map_err(io_err(&what))?;
            s.bind(&SocketAddr::from((leg.subnet.addr, 0)).into())
                .map_err(io_err(&what))?;
            s.set_multicast_if_v4(&leg.subnet.addr)
                .map_err(io_err(&what))?;
            s.set_multicast_ttl_v4(DISCOVERY_TTL)
                .map_err(io_err(&what))?;
            senders.push((leg.clone(), into_tokio(s).map_err(io_err(&what))?));
        }
        Ok(Self {
            core,
            multicast,
            broadcast,
            senders,
            group: SocketAddrV4::new(opts.group, opts.discovery_port),
            stats_interval: opts.stats_interval,
            stats_on_sigusr1: opts.stats_on_sigusr1,
        })
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.core.counters()
    }

    /// Runs until `shutdown` resolves; returns the counters (also logged).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Counters {
        tokio::pin!(shutdown);
        let mut usr1 = if self.stats_on_sigusr1 {
            use tokio::signal::unix::{SignalKind, signal};
            signal(SignalKind::user_defined1())
                .map_err(|e| warn!("no SIGUSR1 handler: {e}"))
                .ok()
        } else {
            None
        };
        let mut tick = self.stats_interval.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut mbuf = vec![0u8; 2048];
        let mut bbuf = vec![0u8; 2048];
        info!(
            "proxy: client side {}, server side {}",
            legs_text(self.core.client_side()),
            legs_text(self.core.server_side())
        );
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                r = self.multicast.recv_from(&mut mbuf) => {
                    if let Ok((n, from)) = r {
                        self.on_datagram(from, &mbuf[..n]).await;
                    }
                }
                r = recv(self.broadcast.as_ref(), &mut bbuf) => {
                    if let Ok((n, from)) = r {
                        self.on_datagram(from, &bbuf[..n]).await;
                    }
                }
                Some(()) = recv_signal(usr1.as_mut()) => {
                    info!("proxy counters: {}", self.core.counters());
                }
                _ = tick_next(tick.as_mut()) => {
                    info!("proxy counters: {}", self.core.counters());
                }
            }
        }
        let c = self.core.counters();
        info!("proxy counters: {c}");
        c
    }

    async fn on_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let SocketAddr::V4(from) = from else {
            return;
        };
        match self.core.handle(Instant::now(), from, datagram) {
            Verdict::Drop(why) => debug!(
                "proxy: dropped {} bytes from {from}: {why:?}",
                datagram.len()
            ),
            Verdict::Forward {
                request,
                client,
                datagram,
            } => {
                for (leg, socket) in &self.senders {
                    match socket.send_to(&datagram, self.group).await {
                        Ok(_) => debug!(
                            "proxy: {request:?} from {client} -> {} via {}",
                            self.group, leg.subnet
                        ),
                        Err(e) => warn!("proxy: send via {}: {e}", leg.subnet),
                    }
                }
            }
        }
    }
}

fn legs_text(legs: &[Subnet]) -> String {
    legs.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn recv_signal(sig: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn tick_next(tick: Option<&mut tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `flock proxy`: runs until Ctrl-C or SIGTERM.
///
/// # Errors
/// Bad legs or sockets that cannot be set up.
pub fn run(args: &ProxyArgs) -> Result<(), ProxyError> {
    let opts = ProxyOptions::from_args(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("tokio runtime"))?;
    rt.block_on(async move {
        let proxy = Proxy::bind(opts).await?;
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        proxy.run(shutdown).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_from_ip_prefix_and_from_ip_json() {
        let leg = Leg::parse("10.1.0.254/24").expect("leg");
        assert_eq!(leg.subnet.to_string(), "10.1.0.254/24");
        for bad in ["10.1.0.254/33", "10.1.0/24", "x/y"] {
            assert!(Leg::parse(bad).is_err(), "{bad}");
        }
        let json: serde_json::Value = serde_json::from_str(
            r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
                {"ifindex":2,"ifname":"eth1","addr_info":[{"family":"inet","local":"10.2.0.254","prefixlen":24}]}]"#,
        )
        .expect("json");
        let by_name = Leg::find(&json, "eth1").expect("eth1");
        assert_eq!(by_name.subnet.to_string(), "10.2.0.254/24");
        assert_eq!(Leg::find(&json, "10.2.0.254"), Some(by_name));
        assert_eq!(Leg::find(&json, "eth9"), None);
        assert_eq!(Leg::find(&json, "10.9.0.1"), None);
    }
}
