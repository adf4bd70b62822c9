//! Address cookies, the client's side of the server's anti-reflection gate.
//!
//! Our servers send an address that has not proven itself at most three times the bytes
//! it sent (`server::gate`); a larger answer (a signed record, ~650 bytes) is replaced by
//! `ERROR COOKIE <16 hex>`. The client then resends the same request as
//! `COOKIE <c> <request>` from the same socket and keeps prefixing what it sends to that
//! server with `<c>`; a new `ERROR COOKIE` from it means the cookie expired and replaces
//! it. Original servers never send a cookie, so nothing sent to them is ever prefixed.
//!
//! This is transport, not protocol: the driver applies it around the machine, which never
//! sees a cookie reply.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

/// What a cookie reply starts with.
const REPLY: &[u8] = b"ERROR COOKIE ";
/// What a request with a cookie starts with.
const PREFIX: &[u8] = b"COOKIE ";
/// Hex digits of a cookie.
const COOKIE_LEN: usize = 16;
/// Most destinations remembered (servers and peers alike; cleared when full).
const MAX_REMEMBERED: usize = 256;

/// Cookies by server, and the last datagram sent to each destination (to resend it).
#[derive(Debug, Default)]
pub(crate) struct Cookies {
    cookies: BTreeMap<SocketAddrV4, [u8; COOKIE_LEN]>,
    last_sent: BTreeMap<SocketAddrV4, Vec<u8>>,
    /// Cookie replies taken (for the logs and tests).
    pub(crate) received: u64,
}

impl Cookies {
    /// The bytes to send for `datagram` to `to`: prefixed with `to`'s cookie if it gave
    /// one. Remembers `datagram` (unprefixed) as the last one sent to `to`.
    pub(crate) fn outgoing(&mut self, to: SocketAddrV4, datagram: &[u8]) -> Vec<u8> {
        if self.last_sent.len() >= MAX_REMEMBERED && !self.last_sent.contains_key(&to) {
            self.last_sent.clear();
        }
        self.last_sent.insert(to, datagram.to_vec());
        self.prefixed(to, datagram)
    }

    /// Takes a datagram from `from`: `None` if it is not a cookie reply (hand it to the
    /// machine). For a cookie reply, `Some(resend)`: the last request to `from` with the
    /// new cookie, if there is one and the cookie is new (a repeated cookie is not
    /// answered again, so a server and a client can never ping-pong).
    pub(crate) fn incoming(
        &mut self,
        from: SocketAddrV4,
        datagram: &[u8],
    ) -> Option<Option<Vec<u8>>> {
        let cookie = parse_reply(datagram)?;
        self.received += 1;
        if self.cookies.len() >= MAX_REMEMBERED && !self.cookies.contains_key(&from) {
            self.cookies.clear();
        }
        let new = self.cookies.insert(from, cookie) != Some(cookie);
        let resend = if new {
            self.last_sent
                .get(&from)
                .map(|last| self.prefixed(from, last))
        } else {
            None
        };
        Some(resend)
    }

    fn prefixed(&self, to: SocketAddrV4, datagram: &[u8]) -> Vec<u8> {
        match self.cookies.get(&to) {
            Some(cookie) => {
                let mut out = Vec::with_capacity(PREFIX.len() + COOKIE_LEN + 1 + datagram.len());
                out.extend_from_slice(PREFIX);
                out.extend_from_slice(cookie);
                out.push(b' ');
                out.extend_from_slice(datagram);
                out
            }
            None => datagram.to_vec(),
        }
    }
}

/// The cookie of an `ERROR COOKIE <16 hex>` datagram.
fn parse_reply(datagram: &[u8]) -> Option<[u8; COOKIE_LEN]> {
    let hex = datagram.strip_prefix(REPLY)?;
    let cookie: [u8; COOKIE_LEN] = hex.try_into().ok()?;
    cookie.iter().all(u8::is_ascii_hexdigit).then_some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 1), port)
    }

    #[test]
    fn nothing_is_prefixed_until_a_server_gives_a_cookie() {
        let mut c = Cookies::default();
        assert_eq!(c.outgoing(addr(1), b"LOOKUP bob 7"), b"LOOKUP bob 7");
        assert_eq!(c.incoming(addr(1), b"OK 1 2"), None, "not a cookie reply");
        assert_eq!(
            c.incoming(addr(1), b"ERROR COOKIE 12345"),
            None,
            "too short"
        );
        assert_eq!(
            c.incoming(addr(1), b"ERROR COOKIE 0123456789abcdeg"),
            None,
            "not hex"
        );
        assert_eq!(c.received, 0);
    }

    #[test]
    fn a_cookie_resends_the_last_request_once_and_prefixes_what_follows() {
        let mut c = Cookies::default();
        c.outgoing(addr(1), b"LOOKUP bob 7");
        c.outgoing(addr(2), b"PING");
        let resend = c.incoming(addr(1), b"ERROR COOKIE 0123456789abcdef");
        assert_eq!(
            resend,
            Some(Some(b"COOKIE 0123456789abcdef LOOKUP bob 7".to_vec()))
        );
        // The same cookie again: taken, nothing resent (no ping-pong).
        assert_eq!(
            c.incoming(addr(1), b"ERROR COOKIE 0123456789abcdef"),
            Some(None)
        );
        assert_eq!(
            c.outgoing(addr(1), b"LOOKUP carol 8"),
            b"COOKIE 0123456789abcdef LOOKUP carol 8"
        );
        // Other destinations (peers, original servers) are untouched.
        assert_eq!(c.outgoing(addr(2), b"PING"), b"PING");
        // An expired cookie is replaced by the new one and the last request resent.
        assert_eq!(
            c.incoming(addr(1), b"ERROR COOKIE fedcba9876543210"),
            Some(Some(b"COOKIE fedcba9876543210 LOOKUP carol 8".to_vec()))
        );
        assert_eq!(c.received, 3);
    }

    #[test]
    fn what_it_remembers_is_bounded() {
        let mut c = Cookies::default();
        for port in 0..2_000 {
            c.outgoing(addr(port), b"x");
            let _ = c.incoming(addr(port), b"ERROR COOKIE 0123456789abcdef");
        }
        assert!(c.last_sent.len() <= MAX_REMEMBERED);
        assert!(c.cookies.len() <= MAX_REMEMBERED);
    }
}
