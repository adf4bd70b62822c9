//! Finding servers on the LAN: `DISCOVER` by broadcast and `DISCOVER_SERVER` by
//! multicast, as the original client does.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use flock_proto::limits::{DISCOVERY_GROUP, DISCOVERY_PORT, DISCOVERY_TTL, SERVER_PORT};
use flock_proto::{Frame, decode_discover_reply, decode_discover_server_reply};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Broadcasts `DISCOVER` to `255.255.255.255:12345` and multicasts `DISCOVER_SERVER` to
/// `224.0.0.1:10003`, and collects the servers that answer within `wait`, in order of
/// first answer. A `DISCOVER_SERVER` answer names an IP; its server is assumed on the
/// standard port 12345.
///
/// # Errors
/// The discovery socket could not be set up.
pub async fn discover(wait: Duration) -> std::io::Result<Vec<SocketAddrV4>> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_broadcast(true)?;
    s.set_multicast_ttl_v4(DISCOVERY_TTL)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    let socket = UdpSocket::from_std(s.into())?;
    // Either may fail (no broadcast route, no multicast route): the other may still work.
    let _ = socket
        .send_to(
            &Frame::Discover.encode_to_vec(),
            (Ipv4Addr::BROADCAST, SERVER_PORT),
        )
        .await;
    let _ = socket
        .send_to(
            &Frame::DiscoverServer { reply_to: None }.encode_to_vec(),
            (DISCOVERY_GROUP, DISCOVERY_PORT),
        )
        .await;
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let mut buf = vec![0u8; 2048];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, from))) =
        tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
    {
        let SocketAddr::V4(from) = from else {
            continue;
        };
        let datagram = &buf[..n];
        let server = if let Ok(ip) = decode_discover_server_reply(datagram) {
            SocketAddrV4::new(ip, SERVER_PORT)
        } else if decode_discover_reply(datagram).is_ok() {
            from
        } else {
            continue;
        };
        if seen.insert(server) {
            found.push(server);
        }
    }
    Ok(found)
}
