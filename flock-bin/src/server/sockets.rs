//! Socket set-up: the command socket, the broadcast listener, the PING socket and the
//! multicast discovery listener, and the address the node is known by.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};

use flock_proto::limits;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::warn;

use super::{Cidr, ServerError, ServerOptions, io_err};

/// Every socket of a server, bound, and the addresses it starts with.
pub(crate) struct Sockets {
    /// The node's identity: the advertised IP and the command port.
    pub(crate) me: SocketAddrV4,
    /// The command socket.
    pub(crate) command: UdpSocket,
    /// Broadcast listener (bound to one address and broadcasting).
    pub(crate) broadcast: Option<UdpSocket>,
    /// The PING-only socket.
    pub(crate) ping: Option<UdpSocket>,
    /// The multicast discovery listener.
    pub(crate) multicast: Option<UdpSocket>,
    /// Where the node looks for a ring: `--join` targets, then the broadcast address.
    pub(crate) bootstrap: Vec<SocketAddrV4>,
    /// Whether it may found a ring when nobody answers (no `--join`, broadcasting).
    pub(crate) may_found: bool,
}

impl Sockets {
    /// Resolves `--join`, binds every socket and picks the advertised address.
    pub(crate) fn open(opts: &ServerOptions) -> Result<Self, ServerError> {
        let command = command_socket(SocketAddrV4::new(opts.bind, opts.port))
            .map_err(bind_err(opts.bind, opts.port, "--port"))?;
        let port = command
            .local_addr()
            .map_err(io_err("local address"))?
            .port();
        let joins = opts
            .join
            .iter()
            .map(|j| resolve_v4(j))
            .collect::<Result<Vec<_>, _>>()?;
        let ip = match opts.advertise {
            Some(ip) => ip,
            None if !opts.bind.is_unspecified() => opts.bind,
            None => joins
                .first()
                .and_then(|j| local_ip_toward(*j))
                .or_else(|| {
                    local_ip_toward(SocketAddrV4::new(
                        limits::DISCOVERY_GROUP,
                        limits::DISCOVERY_PORT,
                    ))
                })
                .unwrap_or(Ipv4Addr::LOCALHOST),
        };
        let broadcasting = !opts.no_broadcast && !opts.bind.is_loopback();
        let broadcast = if broadcasting && !opts.bind.is_unspecified() {
            broadcast_socket(port)
                .inspect_err(|e| warn!("no broadcast listener on 255.255.255.255:{port}: {e}"))
                .ok()
        } else {
            None
        };
        let ping_port = opts.ping_port.unwrap_or(if opts.port == 0 {
            0
        } else {
            port.wrapping_add(1)
        });
        let ping = if ping_port == 0 {
            None
        } else {
            Some(
                plain_socket(SocketAddrV4::new(opts.bind, ping_port)).map_err(bind_err(
                    opts.bind,
                    ping_port,
                    "--ping-port",
                ))?,
            )
        };
        let multicast = if opts.no_multicast {
            None
        } else {
            multicast_socket(limits::DISCOVERY_GROUP, limits::DISCOVERY_PORT, opts.bind)
                .inspect_err(|e| {
                    warn!(
                        "no multicast discovery on {}:{}: {e}",
                        limits::DISCOVERY_GROUP,
                        limits::DISCOVERY_PORT
                    )
                })
                .ok()
        };
        let may_found = joins.is_empty() && broadcasting;
        let mut bootstrap = joins;
        if broadcasting {
            bootstrap.push(SocketAddrV4::new(Ipv4Addr::BROADCAST, port));
        }
        Ok(Self {
            me: SocketAddrV4::new(ip, port),
            command,
            broadcast,
            ping,
            multicast,
            bootstrap,
            may_found,
        })
    }

    /// The PING port (0: off).
    pub(crate) fn ping_port(&self) -> u16 {
        self.ping
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port())
    }
}

/// A bind failure; "in use" names the fix (`option`: the flag that picks the port).
fn bind_err(
    ip: Ipv4Addr,
    port: u16,
    option: &'static str,
) -> impl FnOnce(io::Error) -> ServerError {
    move |e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            ServerError::Config(format!(
                "{ip}:{port} is already in use ({e}): is another server running here? \
                 Give this one another port with {option} (and --join the first to form a ring)"
            ))
        } else {
            io_err(format!("bind {ip}:{port}"))(e)
        }
    }
}

/// The first IPv4 address of `host:port`.
fn resolve_v4(j: &str) -> Result<SocketAddrV4, ServerError> {
    j.to_socket_addrs()
        .map_err(io_err(format!("--join {j}")))?
        .find_map(|a| match a {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| ServerError::Config(format!("--join {j}: no IPv4 address")))
}

/// Kernel buffer size asked for on the command socket (bursts of pipelined requests).
const SOCKET_BUFFER: usize = 4 << 20;

fn udp() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
}

fn into_tokio(s: Socket) -> io::Result<UdpSocket> {
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// The command socket: `bind:port`, broadcast allowed (to send `RING DISCOVER` to
/// 255.255.255.255), large buffers.
fn command_socket(bind: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.set_broadcast(true)?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&SocketAddr::V4(bind).into())?;
    into_tokio(s)
}

/// A listener for datagrams sent to 255.255.255.255:`port`. A socket bound to a unicast
/// address never sees broadcasts, so a node bound to one IP needs this second socket.
fn broadcast_socket(port: u16) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, port)).into())?;
    into_tokio(s)
}

/// A plain socket (the PING port).
fn plain_socket(bind: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.bind(&SocketAddr::V4(bind).into())?;
    into_tokio(s)
}

/// The multicast discovery listener: `group:port`, shared with other servers on the
/// same host (`SO_REUSEADDR`), joined on `iface` (unspecified: the default interface).
fn multicast_socket(group: Ipv4Addr, port: u16, iface: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.join_multicast_v4(&group, &iface)?;
    s.set_multicast_ttl_v4(flock_proto::limits::DISCOVERY_TTL)?;
    into_tokio(s)
}

/// The address this host uses to reach the network: the source address the kernel picks
/// for a datagram to `toward` (no datagram is sent). `None` if there is no route.
pub fn local_ip_toward(toward: SocketAddrV4) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(toward).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}

/// Sends `bytes` to `to` from source address `src` (`IP_PKTINFO`) on a socket bound to
/// 0.0.0.0, whose replies would otherwise leave from whatever address routes to `to`
/// (127.0.0.1 for a peer on loopback): a node bound to 0.0.0.0 that advertises its LAN
/// address must be seen at that address by every peer, or the peer's requests and the
/// replies it gets do not match (a node joining through 127.0.0.1 never got in).
#[cfg(target_os = "linux")]
pub(crate) async fn send_from(
    sock: &UdpSocket,
    bytes: &[u8],
    to: SocketAddrV4,
    src: Ipv4Addr,
) -> io::Result<usize> {
    let control = pktinfo(src);
    let addr = socket2::SockAddr::from(to);
    let bufs = [io::IoSlice::new(bytes)];
    let msg = socket2::MsgHdr::new()
        .with_addr(&addr)
        .with_buffers(&bufs)
        .with_control(&control);
    sock.async_io(tokio::io::Interest::WRITABLE, || {
        socket2::SockRef::from(sock).sendmsg(&msg, 0)
    })
    .await
}

/// Elsewhere: a plain send.
#[cfg(not(target_os = "linux"))]
pub(crate) async fn send_from(
    sock: &UdpSocket,
    bytes: &[u8],
    to: SocketAddrV4,
    _src: Ipv4Addr,
) -> io::Result<usize> {
    sock.send_to(bytes, SocketAddr::V4(to)).await
}

/// One `IP_PKTINFO` control message (Linux `struct cmsghdr` + `struct in_pktinfo`) asking
/// for source address `src`.
#[cfg(target_os = "linux")]
/// The directly connected IPv4 subnets: the routes without a gateway in
/// `/proc/net/route` (Linux). Elsewhere, or if it cannot be read: none (only loopback is
/// then local).
pub(crate) fn local_subnets() -> Vec<Cidr> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

/// The gateway-less routes of a `/proc/net/route` table (addresses in hex, host order).
fn parse_routes(table: &str) -> Vec<Cidr> {
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_le_bytes()))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dest, gw, mask) = (hex(f.get(1)?)?, hex(f.get(2)?)?, hex(f.get(7)?)?);
            let prefix = u32::from(mask).leading_ones() as u8;
            (gw.is_unspecified() && prefix > 0).then_some(Cidr { addr: dest, prefix })
        })
        .collect()
}

fn pktinfo(src: Ipv4Addr) -> Vec<u8> {
    const IPPROTO_IP: i32 = 0;
    const IP_PKTINFO: i32 = 8;
    const PKTINFO_LEN: usize = 12; // ifindex (int), spec_dst, addr (in_addr each)
    let word = std::mem::size_of::<usize>();
    let header = word + 8; // cmsg_len (size_t), cmsg_level (int), cmsg_type (int)
    let len = header + PKTINFO_LEN;
    let mut out = Vec::with_capacity(len.div_ceil(word) * word);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&IPPROTO_IP.to_ne_bytes());
    out.extend_from_slice(&IP_PKTINFO.to_ne_bytes());
    out.extend_from_slice(&0i32.to_ne_bytes()); // any interface
    out.extend_from_slice(&src.octets()); // ipi_spec_dst: the source address
    out.extend_from_slice(&[0; 4]); // ipi_addr: ignored when sending
    out.resize(len.div_ceil(word) * word, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_names_the_fix() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let taken = command_socket(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
            let port = taken.local_addr().expect("addr").port();
            let mut opts = ServerOptions::new("second");
            opts.bind = Ipv4Addr::LOCALHOST;
            opts.port = port;
            let err = Sockets::open(&opts).err().expect("in use").to_string();
            assert!(
                err.contains("already in use") && err.contains("--port"),
                "{err}"
            );
            assert!(err.contains("--join"), "{err}");
        });
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn connected_routes_are_the_local_subnets() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let c = parse_routes(table);
        assert_eq!(c, vec!["10.0.0.0/24".parse::<Cidr>().unwrap()]);
        assert!(parse_routes("garbage\nx y z").is_empty());
    }
}
