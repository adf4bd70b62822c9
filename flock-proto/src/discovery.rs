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
