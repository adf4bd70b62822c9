//! Replies to discovery, which carry no verb.
//!
//! `DISCOVER` is answered with the server's name, raw; `DISCOVER_SERVER` (plain or
//! proxied) with the server's IPv4 address, raw. Neither reply can be told apart from
//! other datagrams by its bytes, so the caller, which knows what it asked, decodes them
//! with these functions rather than [`Frame::decode`](crate::Frame::decode).

use std::net::Ipv4Addr;

use crate::error::DecodeError;
use crate::limits::MAX_DATAGRAM;

/// Checks length and UTF-8 as [`Frame::decode`](crate::Frame::decode) does.
fn text(datagram: &[u8]) -> Result<&str, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong(datagram.len()));
    }
    std::str::from_utf8(datagram).map_err(|_| DecodeError::NotUtf8)
}

/// Decodes the reply to `DISCOVER`: the server's name, any non-empty UTF-8 text.
///
/// ```
/// assert_eq!(flock_proto::decode_discover_reply(b"node1"), Ok("node1"));
/// ```
pub fn decode_discover_reply(datagram: &[u8]) -> Result<&str, DecodeError> {
    crate::decode::discover_reply(text(datagram)?)
}

/// Encodes the reply to `DISCOVER`: the server's name, raw.
pub fn encode_discover_reply(name: &str, out: &mut Vec<u8>) {
    crate::encode::discover_reply(name, out);
}

/// Decodes the reply to `DISCOVER_SERVER`: the server's IPv4 address as a dotted quad.
///
/// ```
/// use std::net::Ipv4Addr;
/// assert_eq!(
///     flock_proto::decode_discover_server_reply(b"10.0.0.7"),
///     Ok(Ipv4Addr::new(10, 0, 0, 7))
/// );
/// ```
pub fn decode_discover_server_reply(datagram: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    crate::decode::discover_server_reply(text(datagram)?)
}

/// Encodes the reply to `DISCOVER_SERVER`: the server's IPv4 address as a dotted quad.
pub fn encode_discover_server_reply(ip: Ipv4Addr, out: &mut Vec<u8>) {
    crate::encode::discover_server_reply(ip, out);
}

/// The extension query `MEMBERS`: a client asks its server for the ring's members, to
/// fail over through them. The original's servers do not answer it.
pub const MEMBERS_REQUEST: &[u8] = b"MEMBERS";

/// Most addresses a `MEMBERS` answer carries.
pub const MAX_MEMBERS: usize = 32;

/// Encodes the answer to `MEMBERS`: `MEMBERS <ip:port> <ip:port> ...`, at most
/// [`MAX_MEMBERS`] addresses, duplicates left out.
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddrV4};
/// let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 23001);
/// let mut out = Vec::new();
/// flock_proto::encode_members_reply([a, a], &mut out);
/// assert_eq!(out, b"MEMBERS 127.0.0.1:23001");
/// assert_eq!(flock_proto::decode_members_reply(&out), Ok(vec![a]));
/// ```
pub fn encode_members_reply(
    members: impl IntoIterator<Item = std::net::SocketAddrV4>,
    out: &mut Vec<u8>,
) {
    use std::io::Write as _;
    out.extend_from_slice(MEMBERS_REQUEST);
    let mut seen = Vec::with_capacity(MAX_MEMBERS);
    for m in members {
        if seen.len() == MAX_MEMBERS {
            break;
        }
        if !seen.contains(&m) {
            seen.push(m);
            let _ = write!(out, " {m}");
        }
    }
}

/// Decodes the answer to `MEMBERS`: the addresses, in order, without duplicates (an
/// empty list when the server knows no member).
///
/// # Errors
/// Not a `MEMBERS` answer, more than [`MAX_MEMBERS`] addresses, or an address that is not
/// `ip:port`.
pub fn decode_members_reply(datagram: &[u8]) -> Result<Vec<std::net::SocketAddrV4>, DecodeError> {
    const VERB: &str = "MEMBERS";
    let text = text(datagram)?;
    let mut words = text.split(' ');
    if words.next() != Some(VERB) {
        return Err(DecodeError::UnknownVerb);
    }
    let mut members = Vec::new();
    for (i, w) in words.enumerate() {
        let addr = w.parse().map_err(|_| DecodeError::BadField {
            verb: VERB,
            field: "member",
        })?;
        if i == MAX_MEMBERS {
            return Err(DecodeError::Fields { verb: VERB });
        }
        if !members.contains(&addr) {
            members.push(addr);
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_replies_round_trip_and_bad_ones_are_refused() {
        let m: Vec<std::net::SocketAddrV4> = (0..40)
            .map(|i| std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 12345))
            .collect();
        let mut out = Vec::new();
        encode_members_reply(m.iter().copied(), &mut out);
        assert_eq!(decode_members_reply(&out).unwrap(), m[..MAX_MEMBERS]);
        assert_eq!(decode_members_reply(b"MEMBERS"), Ok(vec![]));
        for bad in [
            &b""[..],
            b"MEMBER",
            b"MEMBERS ",
            b"MEMBERS 1.2.3.4",
            b"MEMBERS 1.2.3.4:99999",
            b"MEMBERS  1.2.3.4:1",
            b"OK 1.2.3.4:1",
            b"MEMBERS \xff",
        ] {
            assert!(decode_members_reply(bad).is_err(), "{bad:?}");
        }
        let mut long = b"MEMBERS".to_vec();
        for _ in 0..=MAX_MEMBERS {
            long.extend_from_slice(b" 1.2.3.4:1 1.2.3.4:1");
        }
        assert!(decode_members_reply(&long).is_err());
    }
}
