//! Socket set-up: the command socket, the broadcast listener, the PING socket and the
//! multicast discovery listener.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

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
pub(crate) fn command_socket(bind: SocketAddrV4) -> io::Result<UdpSocket> {
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
pub(crate) fn broadcast_socket(port: u16) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, port)).into())?;
    into_tokio(s)
}

/// A plain socket (the PING port).
pub(crate) fn plain_socket(bind: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.bind(&SocketAddr::V4(bind).into())?;
    into_tokio(s)
}

/// The multicast discovery listener: `group:port`, shared with other servers on the
/// same host (`SO_REUSEADDR`), joined on `iface` (unspecified: the default interface).
pub(crate) fn multicast_socket(
    group: Ipv4Addr,
    port: u16,
    iface: Ipv4Addr,
) -> io::Result<UdpSocket> {
    let s = udp()?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.join_multicast_v4(&group, &iface)?;
    s.set_multicast_ttl_v4(flock_proto::limits::DISCOVERY_TTL)?;
    into_tokio(s)
}

/// The address this host uses to reach the network: the source address the kernel picks
/// for a datagram to `toward` (no datagram is sent). `None` if there is no route.
pub(crate) fn local_ip_toward(toward: SocketAddrV4) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(toward).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}
