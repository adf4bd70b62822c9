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
/// first answer. Each server is reported at the address it answered from, its real port
/// (a `DISCOVER_SERVER` answer from the multicast port 10003, as older servers send it,
/// means the standard port 12345).
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
        let Some(server) = server_of(from, datagram) else {
            continue;
        };
        if seen.insert(server) {
            found.push(server);
        }
    }
    Ok(found)
}

/// The server a discovery answer from `from` names, `None` if it is not one. A
/// `DISCOVER` answer comes from the server's socket: `from`. A `DISCOVER_SERVER` answer
/// names the server's IP, and ours come from the server's socket, so the port is
/// `from`'s; an answer from the discovery port (older servers answer from their
/// multicast socket) means the standard port 12345.
pub(crate) fn server_of(from: SocketAddrV4, datagram: &[u8]) -> Option<SocketAddrV4> {
    if let Ok(ip) = decode_discover_server_reply(datagram) {
        let port = match from.port() {
            DISCOVERY_PORT => SERVER_PORT,
            p => p,
        };
        Some(SocketAddrV4::new(ip, port))
    } else if decode_discover_reply(datagram).is_ok() {
        Some(from)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_the_port_they_came_from() {
        let at = |ip: [u8; 4], port| SocketAddrV4::new(ip.into(), port);
        // DISCOVER_SERVER answered from a server on a non-default port.
        assert_eq!(
            server_of(at([127, 0, 0, 1], 23003), b"127.0.0.1"),
            Some(at([127, 0, 0, 1], 23003))
        );
        // The body's IP counts (a server bound to 0.0.0.0 answers from another address).
        assert_eq!(
            server_of(at([10, 0, 0, 9], 23005), b"10.0.0.7"),
            Some(at([10, 0, 0, 7], 23005))
        );
        // From the discovery socket: the standard port.
        assert_eq!(
            server_of(at([10, 0, 0, 7], DISCOVERY_PORT), b"10.0.0.7"),
            Some(at([10, 0, 0, 7], SERVER_PORT))
        );
        // DISCOVER: the server's name, from its socket.
        assert_eq!(
            server_of(at([10, 0, 0, 7], 23001), b"node1"),
            Some(at([10, 0, 0, 7], 23001))
        );
        assert_eq!(server_of(at([10, 0, 0, 7], 23001), b""), None);
    }
}
