//! Address validation: the server is not a reflector.
//!
//! A UDP source address proves nothing: anyone can send a request "from" a victim. So
//! until a source has shown that it receives what is sent to it, the server sends it at
//! most **three times the bytes it received from it** (QUIC's anti-amplification rule,
//! RFC 9000 section 8): every datagram from `ip:port` earns `3 x len` bytes of credit,
//! every reply to an unvalidated `ip:port` spends its length. A reply that does not fit is replaced by the address
//! cookie (`ERROR COOKIE <16 hex>`) if that fits, else dropped. Loopback sources cannot be
//! spoofed from outside the host and count as validated.
//!
//! The cookie is stateless: the first 8 bytes of HMAC-SHA256 over (period, ip, port) under
//! a key drawn from OS randomness at start-up; a period is [`PERIOD`], and a cookie of the
//! current or the previous period is accepted (so the key effectively rotates). A source
//! proves its address by prefixing any request with `COOKIE <16 hex> `; the source is then
//! validated for one period: every reply goes, whatever its size.
//!
//! The client's side (see `flock-bin/README.md`, *Address cookies*): send
//! `COOKIE 0000000000000000 <request>` (a placeholder as long as a cookie, so that the
//! cookie reply is never larger than the request), or the plain request; on
//! `ERROR COOKIE <c>` resend the same request as `COOKIE <c> <request>` from the same
//! socket, and keep prefixing with `<c>` (or nothing: the source stays validated for a
//! period); a new `ERROR COOKIE` means the cookie expired: take the new one.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a cookie is current (it is accepted for up to twice as long).
pub(crate) const PERIOD: Duration = Duration::from_secs(60);

/// The prefix of a request that carries a cookie.
pub(crate) const PREFIX: &[u8] = b"COOKIE ";

/// Hex digits of a cookie.
const COOKIE_HEX: usize = 16;

/// Most bytes of credit a source may hold (three maximal datagrams).
const MAX_CREDIT: u64 = 3 * 65_536;

/// One source's credit.
#[derive(Debug, Clone, Copy)]
struct Credit {
    /// Bytes we may still send to its unvalidated addresses.
    bytes: u64,
    /// Last datagram from it.
    last: Duration,
}

/// What [`Gate::admit`] found in a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted<'a> {
    /// The request without its cookie prefix.
    pub(crate) request: &'a [u8],
    /// The source is validated (now, or earlier in this period).
    pub(crate) validated: bool,
}

/// Per-source credit and validation, bounded.
pub(crate) struct Gate {
    key: [u8; 32],
    /// Credit by source address.
    hosts: BTreeMap<SocketAddrV4, Credit>,
    /// Validated addresses, until when.
    validated: BTreeMap<SocketAddrV4, Duration>,
    max_sources: usize,
    /// Replies dropped or replaced by a cookie because the source was unvalidated.
    pub(crate) limited: u64,
    /// Cookies sent.
    pub(crate) cookies_sent: u64,
    /// Requests with a valid cookie.
    pub(crate) cookies_valid: u64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("hosts", &self.hosts.len())
            .field("limited", &self.limited)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate keyed with `key` (random per process), tracking at most `max_sources`.
    pub(crate) fn new(key: [u8; 32], max_sources: usize) -> Self {
        Self {
            key,
            hosts: BTreeMap::new(),
            validated: BTreeMap::new(),
            max_sources: max_sources.max(16),
            limited: 0,
            cookies_sent: 0,
            cookies_valid: 0,
        }
    }

    fn mac(&self, period: u64, addr: SocketAddrV4) -> [u8; 8] {
        // A 32-byte key is a valid HMAC key: `new_from_slice` cannot fail.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(&period.to_be_bytes());
        m.update(&addr.ip().octets());
        m.update(&addr.port().to_be_bytes());
        let tag = m.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag[..8]);
        out
    }

    fn period(now: Duration) -> u64 {
        now.as_secs() / PERIOD.as_secs()
    }

    /// The cookie of `addr` now, as 16 hex digits.
    pub(crate) fn cookie(&self, now: Duration, addr: SocketAddrV4) -> String {
        self.mac(Self::period(now), addr)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The reply that hands `addr` its cookie.
    pub(crate) fn cookie_reply(&self, now: Duration, addr: SocketAddrV4) -> Vec<u8> {
        format!("ERROR COOKIE {}", self.cookie(now, addr)).into_bytes()
    }

    fn cookie_ok(&self, now: Duration, addr: SocketAddrV4, hex: &[u8]) -> bool {
        let p = Self::period(now);
        [p, p.saturating_sub(1)].iter().any(|&p| {
            let want = self.mac(p, addr);
            hex.len() == COOKIE_HEX
                && want.iter().enumerate().all(|(i, b)| {
                    std::str::from_utf8(&hex[2 * i..2 * i + 2])
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                        == Some(*b)
                })
        })
    }

    /// Accounts a datagram of `data` from `from`: earns credit, strips and checks a
    /// cookie prefix.
    pub(crate) fn admit<'a>(
        &mut self,
        now: Duration,
        from: SocketAddrV4,
        data: &'a [u8],
    ) -> Admitted<'a> {
        let (request, valid_cookie) = match data.strip_prefix(PREFIX) {
            Some(rest) if rest.len() > COOKIE_HEX && rest[COOKIE_HEX] == b' ' => (
                &rest[COOKIE_HEX + 1..],
                self.cookie_ok(now, from, &rest[..COOKIE_HEX]),
            ),
            _ => (data, false),
        };
        if valid_cookie {
            self.cookies_valid += 1;
        }
        make_room(&mut self.hosts, self.max_sources, from, |c| {
            now.saturating_sub(c.last) < PERIOD
        });
        let c = self.hosts.entry(from).or_insert(Credit {
            bytes: 0,
            last: now,
        });
        c.last = now;
        c.bytes = (c.bytes + 3 * data.len() as u64).min(MAX_CREDIT);
        if valid_cookie {
            make_room(&mut self.validated, self.max_sources, from, |until| {
                *until > now
            });
            self.validated.insert(from, now + PERIOD);
        }
        Admitted {
            request,
            validated: self.is_validated(now, from),
        }
    }

    fn is_validated(&self, now: Duration, addr: SocketAddrV4) -> bool {
        addr.ip().is_loopback() || self.validated.get(&addr).is_some_and(|u| *u > now)
    }

    /// What to send to `to` instead of `len` bytes: `Pass` (send it), `Cookie` (send
    /// [`Gate::cookie_reply`] instead), or `Drop`. Spends the credit.
    pub(crate) fn outgoing(&mut self, now: Duration, to: SocketAddrV4, len: usize) -> Verdict {
        let cookie_len = (b"ERROR COOKIE ".len() + COOKIE_HEX) as u64;
        if self.is_validated(now, to) {
            return Verdict::Pass;
        }
        let Some(c) = self.hosts.get_mut(&to) else {
            self.limited += 1;
            return Verdict::Drop;
        };
        if c.bytes >= len as u64 {
            c.bytes -= len as u64;
            return Verdict::Pass;
        }
        self.limited += 1;
        if c.bytes >= cookie_len {
            c.bytes -= cookie_len;
            self.cookies_sent += 1;
            Verdict::Cookie
        } else {
            Verdict::Drop
        }
    }

    /// Number of tracked hosts and validated addresses.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.hosts.len() + self.validated.len()
    }
}

/// Keeps `map` below `max` entries before `key` is inserted: forgets the entries that are
/// not `live` first, then half of them (under a flood of sources: they lose credit or
/// validation, never gain it).
fn make_room<K: Ord + Copy, V>(
    map: &mut BTreeMap<K, V>,
    max: usize,
    key: K,
    live: impl Fn(&V) -> bool,
) {
    if map.len() < max || map.contains_key(&key) {
        return;
    }
    map.retain(|_, v| live(v));
    if map.len() >= max {
        let cut = map.keys().nth(max / 2).copied();
        if let Some(cut) = cut {
            let _ = map.split_off(&cut);
        }
    }
}

/// What [`Gate::outgoing`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send the reply.
    Pass,
    /// Send the cookie instead.
    Cookie,
    /// Send nothing.
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    #[test]
    fn unvalidated_sources_get_at_most_three_times_what_they_sent() {
        let mut g = Gate::new([7; 32], 64);
        let t = Duration::from_secs(5);
        let a = addr(1, 4000);
        let adm = g.admit(t, a, b"RESOLVE alice");
        assert_eq!(adm.request, b"RESOLVE alice");
        assert!(!adm.validated);
        // 13 bytes in: 39 bytes out at most; a 600-byte answer becomes the cookie.
        assert_eq!(g.outgoing(t, a, 600), Verdict::Cookie);
        // The cookie (29 bytes) spent the credit: nothing more.
        assert_eq!(g.outgoing(t, a, 20), Verdict::Drop);
        // Never heard from: nothing.
        assert_eq!(g.outgoing(t, addr(2, 1), 1), Verdict::Drop);
        // Credit is by address: a 700-byte request from one port pays a 600-byte answer
        // to that port, not to another port of that host.
        g.admit(t, addr(5, 1000), &[b'x'; 700]);
        g.admit(t, addr(5, 1001), b"RESOLVE bob");
        assert_eq!(g.outgoing(t, addr(5, 1001), 600), Verdict::Cookie);
        assert_eq!(g.outgoing(t, addr(5, 1000), 600), Verdict::Pass);
        // Loopback cannot be spoofed from outside: always validated.
        let lo = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        assert!(g.admit(t, lo, b"STATUS").validated);
        assert_eq!(g.outgoing(t, lo, 60_000), Verdict::Pass);
    }

    #[test]
    fn a_cookie_validates_its_own_address_only_and_expires() {
        let mut g = Gate::new([7; 32], 64);
        let t = Duration::from_secs(61);
        let a = addr(1, 4000);
        let c = g.cookie(t, a);
        let req = format!("COOKIE {c} STATUS");
        let adm = g.admit(t, a, req.as_bytes());
        assert_eq!(adm.request, b"STATUS");
        assert!(adm.validated);
        assert_eq!(g.outgoing(t, a, 60_000), Verdict::Pass);
        // Another port of the same host, or another host: not validated.
        let b = addr(1, 4001);
        assert!(!g.admit(t, b, req.as_bytes()).validated);
        assert_eq!(g.outgoing(t, b, 60_000), Verdict::Cookie);
        assert!(!g.admit(t, addr(3, 4000), req.as_bytes()).validated);
        // The placeholder is not a cookie.
        assert!(!g.admit(t, b, b"COOKIE 0000000000000000 STATUS").validated);
        // Accepted in the next period, not after.
        let t2 = t + PERIOD;
        assert!(g.admit(t2, a, req.as_bytes()).validated);
        let t3 = t + 2 * PERIOD + Duration::from_secs(1);
        assert!(!g.admit(t3, a, req.as_bytes()).validated);
        let mut fresh = Gate::new([7; 32], 64);
        assert!(!fresh.admit(t3, a, req.as_bytes()).validated);
        // Malformed prefixes are requests like any other.
        assert_eq!(fresh.admit(t, a, b"COOKIE x").request, b"COOKIE x");
        assert_eq!(
            fresh.admit(t, a, b"COOKIE \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff STATUS").request,
            b"STATUS"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut g = Gate::new([1; 32], 32);
        let t = Duration::from_secs(1);
        for i in 0..1000u16 {
            let a = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + u32::from(i)), i);
            let c = g.cookie(t, a);
            g.admit(t, a, format!("COOKIE {c} PING").as_bytes());
            assert!(g.tracked() <= 64);
        }
    }
}
