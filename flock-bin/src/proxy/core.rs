//! What the proxy does with one datagram, without sockets or clocks: where it came from,
//! whether it is a discovery request worth forwarding, and what goes to the server side.
//!
//! Rules, in order (the first that matches decides):
//! 1. from one of the proxy's own addresses: dropped;
//! 2. from a server-side subnet: dropped (nothing goes back to the client side);
//! 3. from outside every client-side subnet, or from an address no host sends from
//!    (unspecified, broadcast, multicast, loopback, the subnet's own network or broadcast
//!    address, port 0): dropped as spoofed-looking;
//! 4. longer than any discovery request, or not a frame: dropped;
//! 5. anything but `DISCOVER` or plain `DISCOVER_SERVER`: dropped (an already proxied
//!    `DISCOVER_SERVER:<ip>:<port>` is never forwarded again, which also keeps two
//!    proxies on the same pair of subnets from feeding each other);
//! 6. over the client address's rate, or over the proxy's total rate: dropped;
//! 7. otherwise forwarded once, as `DISCOVER_SERVER:<client_ip>:<client_port>`, to the
//!    discovery group on every server-side leg. Servers answer the client directly.
//!
//! Every datagram lands in exactly one counter, so the counters add up to `received`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use flock_proto::Frame;

use crate::ratelimit::RateLimiter;

/// The longest datagram the proxy looks at: `DISCOVER_SERVER:255.255.255.255:65535` is 38
/// bytes, so anything longer is not a discovery request.
pub const MAX_REQUEST: usize = 64;

/// An IPv4 subnet: a leg's address and prefix length (`10.1.0.254/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// An address in the subnet (the proxy's own, for a leg).
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Subnet {
    /// `addr/prefix`; `None` if `prefix` is over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }

    /// Whether `ip` is a host address of this subnet: inside it and, for prefixes up to
    /// /30, neither its network nor its broadcast address.
    pub fn has_host(self, ip: Ipv4Addr) -> bool {
        let host = u32::from(ip) & !self.mask();
        self.contains(ip) && (self.prefix >= 31 || (host != 0 && host != !self.mask()))
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(self, other: Self) -> bool {
        let narrow = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        narrow.contains(other.addr) && narrow.contains(self.addr)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which discovery request a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `DISCOVER_SERVER`, multicast to the discovery group.
    Multicast,
    /// `DISCOVER`, broadcast.
    Broadcast,
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Sent by the proxy itself.
    Own,
    /// Came from a server-side subnet.
    ServerSide,
    /// Came from an address outside the client-side subnets or one no host sends from.
    Spoofed,
    /// Longer than [`MAX_REQUEST`].
    Oversized,
    /// Not a frame.
    Malformed,
    /// A frame, but not a discovery request.
    NotDiscovery,
    /// A `DISCOVER_SERVER:<ip>:<port>` (another proxy's, or a forged one).
    AlreadyProxied,
    /// The client address is over its rate.
    RateLimited,
}

/// What to do with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send `datagram` to the discovery group on every server-side leg.
    Forward {
        /// What the client asked.
        request: Request,
        /// The client, where servers will answer.
        client: SocketAddrV4,
        /// `DISCOVER_SERVER:<client_ip>:<client_port>`.
        datagram: Vec<u8>,
    },
    /// Nothing to send.
    Drop(Dropped),
}

/// How hard the proxy may be pushed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests per second forwarded per client IP, sustained.
    pub rate: f64,
    /// Requests per client IP forwarded at once.
    pub burst: f64,
    /// Client IPs tracked by the rate limiter at most.
    pub max_clients: usize,
    /// Requests per second forwarded in all, whatever their source (as many at once):
    /// bounds what many client addresses, real or forged, can make the servers send.
    pub total_rate: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: 2.0,
            burst: 8.0,
            max_clients: 4096,
            total_rate: 200.0,
        }
    }
}

/// Every datagram the proxy received, by fate. The fields add up to `received`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams looked at.
    pub received: u64,
    /// `DISCOVER_SERVER` requests forwarded.
    pub forwarded_multicast: u64,
    /// `DISCOVER` requests forwarded.
    pub forwarded_broadcast: u64,
    /// See [`Dropped::Own`].
    pub own: u64,
    /// See [`Dropped::ServerSide`].
    pub server_side: u64,
    /// See [`Dropped::Spoofed`].
    pub spoofed: u64,
    /// See [`Dropped::Oversized`].
    pub oversized: u64,
    /// See [`Dropped::Malformed`].
    pub malformed: u64,
    /// See [`Dropped::NotDiscovery`].
    pub not_discovery: u64,
    /// See [`Dropped::AlreadyProxied`].
    pub already_proxied: u64,
    /// See [`Dropped::RateLimited`].
    pub rate_limited: u64,
}

impl Counters {
    /// `(name, value)` for every counter, `received` first.
    pub fn fields(&self) -> [(&'static str, u64); 11] {
        [
            ("received", self.received),
            ("forwarded_multicast", self.forwarded_multicast),
            ("forwarded_broadcast", self.forwarded_broadcast),
            ("own", self.own),
            ("server_side", self.server_side),
            ("spoofed", self.spoofed),
            ("oversized", self.oversized),
            ("malformed", self.malformed),
            ("not_discovery", self.not_discovery),
            ("already_proxied", self.already_proxied),
            ("rate_limited", self.rate_limited),
        ]
    }

    fn count(&mut self, verdict: &Verdict) {
        self.received += 1;
        let c = match verdict {
            Verdict::Forward {
                request: Request::Multicast,
                ..
            } => &mut self.forwarded_multicast,
            Verdict::Forward {
                request: Request::Broadcast,
                ..
            } => &mut self.forwarded_broadcast,
            Verdict::Drop(d) => match d {
                Dropped::Own => &mut self.own,
                Dropped::ServerSide => &mut self.server_side,
                Dropped::Spoofed => &mut self.spoofed,
                Dropped::Oversized => &mut self.oversized,
                Dropped::Malformed => &mut self.malformed,
                Dropped::NotDiscovery => &mut self.not_discovery,
                Dropped::AlreadyProxied => &mut self.already_proxied,
                Dropped::RateLimited => &mut self.rate_limited,
            },
        };
        *c += 1;
    }
}

/// `received=.. forwarded_multicast=.. ...`: the counters line.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.fields().iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

/// A configuration the proxy cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No client-side or no server-side leg.
    #[error("a proxy needs at least one client-side and one server-side leg")]
    MissingSide,
    /// A client-side subnet overlaps a server-side one: requests would loop.
    #[error("client side {client} overlaps server side {server}")]
    Overlap {
        /// The client-side leg.
        client: Subnet,
        /// The server-side leg.
        server: Subnet,
    },
}

/// The proxy's decisions: the loop rules, per-client rate limits and counters.
#[derive(Debug)]
pub struct ProxyCore {
    client_side: Vec<Subnet>,
    server_side: Vec<Subnet>,
    limiter: RateLimiter,
    total: RateLimiter,
    counters: Counters,
}

impl ProxyCore {
    /// A proxy between `client_side` and `server_side` legs (the proxy's own address and
    /// subnet on each).
    ///
    /// # Errors
    /// A side is empty, or a client-side subnet overlaps a server-side one.
    pub fn new(
        client_side: Vec<Subnet>,
        server_side: Vec<Subnet>,
        limits: Limits,
    ) -> Result<Self, ConfigError> {
        if client_side.is_empty() || server_side.is_empty() {
            return Err(ConfigError::MissingSide);
        }
        for &client in &client_side {
            if let Some(&server) = server_side.iter().find(|s| s.overlaps(client)) {
                return Err(ConfigError::Overlap { client, server });
            }
        }
        Ok(Self {
            client_side,
            server_side,
            limiter: RateLimiter::new(limits.rate, limits.burst, limits.max_clients),
            total: RateLimiter::new(limits.total_rate, limits.total_rate, 1),
            counters: Counters::default(),
        })
    }

    /// Decides about one datagram that arrived from `from` at `now`, and counts it.
    pub fn handle(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> Verdict {
        let verdict = self.decide(now, from, datagram);
        self.counters.count(&verdict);
        verdict
    }

    fn decide(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> Verdict {
        let ip = *from.ip();
        let own = self.client_side.iter().chain(&self.server_side);
        if own.clone().any(|s| s.addr == ip) {
            return Verdict::Drop(Dropped::Own);
        }
        if self.server_side.iter().any(|s| s.contains(ip)) {
            return Verdict::Drop(Dropped::ServerSide);
        }
        let odd = ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip.is_loopback()
            || from.port() == 0;
        if odd || !self.client_side.iter().any(|s| s.has_host(ip)) {
            return Verdict::Drop(Dropped::Spoofed);
        }
        if datagram.len() > MAX_REQUEST {
            return Verdict::Drop(Dropped::Oversized);
        }
        let request = match Frame::decode(datagram) {
            Err(_) => return Verdict::Drop(Dropped::Malformed),
            Ok(Frame::Discover) => Request::Broadcast,
            Ok(Frame::DiscoverServer { reply_to: None }) => Request::Multicast,
            Ok(Frame::DiscoverServer { reply_to: Some(_) }) => {
                return Verdict::Drop(Dropped::AlreadyProxied);
            }
            Ok(_) => return Verdict::Drop(Dropped::NotDiscovery),
        };
        if !self.limiter.allow(ip, 1.0, now) || !self.total.allow(Ipv4Addr::UNSPECIFIED, 1.0, now) {
            return Verdict::Drop(Dropped::RateLimited);
        }
        Verdict::Forward {
            request,
            client: from,
            datagram: Frame::DiscoverServer {
                reply_to: Some(from),
            }
            .encode_to_vec(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The client-side legs.
    pub fn client_side(&self) -> &[Subnet] {
        &self.client_side
    }

    /// The server-side legs.
    pub fn server_side(&self) -> &[Subnet] {
        &self.server_side
    }

    /// Client IPs the rate limiter tracks now (at most `Limits::max_clients`).
    pub fn tracked_clients(&self) -> usize {
        self.limiter.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn net(a: [u8; 4], prefix: u8) -> Subnet {
        Subnet::new(Ipv4Addr::from(a), prefix).expect("prefix")
    }

    fn core(limits: Limits) -> ProxyCore {
        ProxyCore::new(
            vec![net([10, 1, 0, 254], 24)],
            vec![net([10, 2, 0, 254], 24)],
            limits,
        )
        .expect("config")
    }

    fn addr(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    const CLIENT: [u8; 4] = [10, 1, 0, 7];

    #[test]
    fn forwards_both_requests_in_the_proxied_form() {
        let mut p = core(Limits::default());
        let now = Instant::now();
        for (req, kind) in [
            (&b"DISCOVER_SERVER"[..], Request::Multicast),
            (b"DISCOVER", Request::Broadcast),
        ] {
            let v = p.handle(now, addr(CLIENT, 40001), req);
            assert_eq!(
                v,
                Verdict::Forward {
                    request: kind,
                    client: addr(CLIENT, 40001),
                    datagram: b"DISCOVER_SERVER:10.1.0.7:40001".to_vec(),
                }
            );
        }
        let c = p.counters();
        assert_eq!(
            (c.received, c.forwarded_multicast, c.forwarded_broadcast),
            (2, 1, 1)
        );
        assert_eq!(
            c.to_string(),
            "received=2 forwarded_multicast=1 forwarded_broadcast=1 own=0 server_side=0 \
             spoofed=0 oversized=0 malformed=0 not_discovery=0 already_proxied=0 rate_limited=0"
        );
    }

    #[test]
    fn never_forwards_own_server_side_or_proxied_datagrams() {
        let mut p = core(Limits::default());
        let now = Instant::now();
        let cases: [(SocketAddrV4, &[u8], Dropped); 5] = [
            // Its own forward or request.
            (
                addr([10, 2, 0, 254], 5000),
                b"DISCOVER_SERVER:10.1.0.7:1",
                Dropped::Own,
            ),
            (
                addr([10, 1, 0, 254], 5000),
                b"DISCOVER_SERVER",
                Dropped::Own,
            ),
            // A server-side client or another proxy's forward.
            (
                addr([10, 2, 0, 3], 5000),
                b"DISCOVER_SERVER",
                Dropped::ServerSide,
            ),
            (
                addr([10, 2, 0, 253], 5000),
                b"DISCOVER_SERVER:10.1.0.7:1",
                Dropped::ServerSide,
            ),
            // A proxied form on the client side (another proxy's, or forged).
            (
                addr(CLIENT, 5000),
                b"DISCOVER_SERVER:10.9.9.9:53",
                Dropped::AlreadyProxied,
            ),
        ];
        for (from, data, why) in cases {
            assert_eq!(
                p.handle(now, from, data),
                Verdict::Drop(why),
                "{from} {data:?}"
            );
        }
        let c = p.counters();
        assert_eq!((c.own, c.server_side, c.already_proxied), (2, 2, 1));
        assert_eq!(c.forwarded_multicast + c.forwarded_broadcast, 0);
    }

    #[test]
    fn bad_and_spoofed_looking_datagrams_are_counted_and_dropped() {
        let mut p = core(Limits::default());
        let now = Instant::now();
        let big = vec![b'A'; 2000];
        let cases: [(SocketAddrV4, &[u8], Dropped); 11] = [
            (addr([0, 0, 0, 0], 5000), b"DISCOVER", Dropped::Spoofed),
            (
                addr([255, 255, 255, 255], 5000),
                b"DISCOVER",
                Dropped::Spoofed,
            ),
            (addr([224, 0, 0, 1], 5000), b"DISCOVER", Dropped::Spoofed),
            (addr([127, 0, 0, 1], 5000), b"DISCOVER", Dropped::Spoofed),
            (addr([10, 1, 0, 255], 5000), b"DISCOVER", Dropped::Spoofed),
            (addr([10, 1, 0, 0], 5000), b"DISCOVER", Dropped::Spoofed),
            (addr([192, 168, 1, 1], 5000), b"DISCOVER", Dropped::Spoofed),
            (addr(CLIENT, 0), b"DISCOVER", Dropped::Spoofed),
            (addr(CLIENT, 5000), &big, Dropped::Oversized),
            (addr(CLIENT, 5000), b"\xff\xfe DISCOVER", Dropped::Malformed),
            (addr(CLIENT, 5000), b"RESOLVE alice", Dropped::NotDiscovery),
        ];
        for (from, data, why) in cases {
            assert_eq!(p.handle(now, from, data), Verdict::Drop(why), "{from}");
        }
        for junk in [
            &b""[..],
            b"DISCOVER_SERVER:1.2.3",
            b"DISCOVER_SERVER:x:y",
            b"\0",
        ] {
            assert_eq!(
                p.handle(now, addr(CLIENT, 5000), junk),
                Verdict::Drop(Dropped::Malformed)
            );
        }
        let c = p.counters();
        assert_eq!(c.spoofed, 8);
        assert_eq!((c.oversized, c.malformed, c.not_discovery), (1, 5, 1));
        let dropped: u64 = c.fields()[3..].iter().map(|(_, v)| v).sum();
        assert_eq!(dropped, c.received);
        // Nothing was spent on them: the client still has its whole burst.
        let burst = Limits::default().burst as usize;
        let ok = (0..burst)
            .filter(|_| {
                matches!(
                    p.handle(now, addr(CLIENT, 5000), b"DISCOVER"),
                    Verdict::Forward { .. }
                )
            })
            .count();
        assert_eq!(ok, burst);
    }

    #[test]
    fn rate_limits_per_client_and_bounds_its_table() {
        let limits = Limits {
            rate: 1.0,
            burst: 3.0,
            max_clients: 4,
            total_rate: 1000.0,
        };
        let mut p = core(limits);
        let t0 = Instant::now();
        let fwd = |p: &mut ProxyCore, t, a| {
            matches!(p.handle(t, a, b"DISCOVER_SERVER"), Verdict::Forward { .. })
        };
        assert_eq!(
            (0..10).filter(|_| fwd(&mut p, t0, addr(CLIENT, 1))).count(),
            3
        );
        // Another client is not held back by the first.
        assert!(fwd(&mut p, t0, addr([10, 1, 0, 8], 1)));
        // A second later, one more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            (0..10).filter(|_| fwd(&mut p, t1, addr(CLIENT, 1))).count(),
            1
        );
        // Many clients: the table stays bounded.
        for i in 1..=200u8 {
            fwd(&mut p, t1, addr([10, 1, 0, i], 1));
        }
        assert!(p.tracked_clients() <= 4);
        let c = p.counters();
        assert_eq!(c.rate_limited, c.received - c.forwarded_multicast);
        assert!(c.rate_limited >= 7 + 9 + 190, "{c}");
    }

    #[test]
    fn many_clients_together_stay_under_the_total_rate() {
        let limits = Limits {
            total_rate: 50.0,
            ..Limits::default()
        };
        let mut p = core(limits);
        let t0 = Instant::now();
        let mut forwarded = 0;
        for i in 1..=250u8 {
            let v = p.handle(t0, addr([10, 1, 0, i], 1), b"DISCOVER");
            forwarded += u32::from(matches!(v, Verdict::Forward { .. }));
        }
        assert_eq!(forwarded, 50);
        // Half a second later, 25 more.
        let t1 = t0 + Duration::from_millis(500);
        let again = (1..=100u8)
            .filter(|&i| {
                matches!(
                    p.handle(t1, addr([10, 1, 0, i], 2), b"DISCOVER"),
                    Verdict::Forward { .. }
                )
            })
            .count();
        assert_eq!(again, 25);
    }

    #[test]
    fn a_burst_forwards_at_most_once_per_request() {
        // Two proxies on the same pair of subnets: each sees the client's requests and
        // the other's forwards; only the client's requests go anywhere.
        let limits = Limits {
            rate: 1000.0,
            burst: 1000.0,
            max_clients: 16,
            total_rate: 1000.0,
        };
        let mut a = core(limits);
        let mut b = ProxyCore::new(
            vec![net([10, 1, 0, 253], 24)],
            vec![net([10, 2, 0, 253], 24)],
            limits,
        )
        .expect("config");
        let now = Instant::now();
        for n in [10u64, 20, 40] {
            let before = a.counters().forwarded_multicast + b.counters().forwarded_multicast;
            let mut server_side = Vec::new();
            for i in 0..n {
                let from = addr(CLIENT, 40000 + i as u16);
                for p in [&mut a, &mut b] {
                    if let Verdict::Forward { datagram, .. } =
                        p.handle(now, from, b"DISCOVER_SERVER")
                    {
                        server_side.push(datagram);
                    }
                }
            }
            // Should a proxy hear the forwards on a server leg (the driver keeps the
            // group out there), it drops them.
            for d in &server_side {
                for (p, src) in [(&mut a, [10, 2, 0, 254]), (&mut b, [10, 2, 0, 254])] {
                    assert!(matches!(p.handle(now, addr(src, 9), d), Verdict::Drop(_)));
                }
            }
            let after = a.counters().forwarded_multicast + b.counters().forwarded_multicast;
            assert_eq!(server_side.len() as u64, 2 * n);
            assert_eq!(after - before, 2 * n);
        }
    }

    #[test]
    fn overlapping_sides_are_refused() {
        let e = ProxyCore::new(
            vec![net([10, 1, 0, 254], 16)],
            vec![net([10, 1, 7, 254], 24)],
            Limits::default(),
        );
        assert!(matches!(e, Err(ConfigError::Overlap { .. })));
        assert!(matches!(
            ProxyCore::new(vec![], vec![net([10, 1, 7, 254], 24)], Limits::default()),
            Err(ConfigError::MissingSide)
        ));
        assert!(net([10, 1, 0, 1], 0).contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert!(net([10, 1, 0, 1], 32).has_host(Ipv4Addr::new(10, 1, 0, 1)));
        assert!(!net([10, 1, 0, 1], 32).contains(Ipv4Addr::new(10, 1, 0, 2)));
        assert!(Subnet::new(Ipv4Addr::LOCALHOST, 33).is_none());
    }
}
