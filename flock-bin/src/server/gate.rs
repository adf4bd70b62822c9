//! Address validation: the server is not a reflector.
//!
//! A UDP source address proves nothing: anyone can send a request "from" a victim. So
//! until a source has shown that it receives what is sent to it, the server sends it at
//! most **three times the bytes it received from it** (QUIC's anti-amplification rule,
//! RFC 9000 section 8): every datagram from `ip:port` earns `3 x len` bytes of credit,
//! every reply to an unvalidated `ip:port` spends its length. A reply that does not fit
//! is replaced by the address cookie (`ERROR COOKIE <16 hex>`) if that fits, else dropped.
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

/// One source's state.
#[derive(Debug, Clone, Copy)]
struct Source {
    /// Bytes we may still send to it while it is unvalidated.
    credit: u64,
    /// Validated until then (driver time).
    validated_until: Duration,
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
    sources: BTreeMap<SocketAddrV4, Source>,
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
            .field("sources", &self.sources.len())
            .field("limited", &self.limited)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate keyed with `key` (random per process), tracking at most `max_sources`.
    pub(crate) fn new(key: [u8; 32], max_sources: usize) -> Self {
        Self {
            key,
            sources: BTreeMap::new(),
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
        self.make_room(now, from);
        let s = self.sources.entry(from).or_insert(Source {
            credit: 0,
            validated_until: Duration::ZERO,
            last: now,
        });
        s.last = now;
        s.credit = (s.credit + 3 * data.len() as u64).min(MAX_CREDIT);
        if valid_cookie {
            s.validated_until = now + PERIOD;
        }
        Admitted {
            request,
            validated: s.validated_until > now,
        }
    }

    /// What to send to `to` instead of `len` bytes: `Pass` (send it), `Cookie` (send
    /// [`Gate::cookie_reply`] instead), or `Drop`. Spends the credit.
    pub(crate) fn outgoing(&mut self, now: Duration, to: SocketAddrV4, len: usize) -> Verdict {
        let cookie_len = (b"ERROR COOKIE ".len() + COOKIE_HEX) as u64;
        let Some(s) = self.sources.get_mut(&to) else {
            self.limited += 1;
            return Verdict::Drop;
        };
        if s.validated_until > now {
            return Verdict::Pass;
        }
        if s.credit >= len as u64 {
            s.credit -= len as u64;
            return Verdict::Pass;
        }
        self.limited += 1;
        if s.credit >= cookie_len {
            s.credit -= cookie_len;
            self.cookies_sent += 1;
            Verdict::Cookie
        } else {
            Verdict::Drop
        }
    }

    /// Keeps the table bounded: forgets idle sources first, then any.
    fn make_room(&mut self, now: Duration, from: SocketAddrV4) {
        if self.sources.len() < self.max_sources || self.sources.contains_key(&from) {
            return;
        }
        self.sources
            .retain(|_, s| s.validated_until > now || now.saturating_sub(s.last) < PERIOD);
        if self.sources.len() >= self.max_sources {
            // Under a flood of sources: forget half (they lose credit, never gain it).
            let keep = self.max_sources / 2;
            let cut = self.sources.keys().nth(keep).copied();
            if let Some(cut) = cut {
                let _ = self.sources.split_off(&cut);
            }
        }
    }

    /// Number of tracked sources.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.sources.len()
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
            g.admit(t, addr(9, i), b"PING");
            assert!(g.tracked() <= 32);
        }
    }
}
