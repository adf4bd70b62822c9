//! One peer's handshake as explicit states: whose key we trust ([`PeerKey`]), which
//! dialect the peer speaks ([`Dialect`]) and the liveness probe in flight ([`Probe`]).
//!
//! Every transition is a method here, and the states and transitions are tabled in the
//! [client module documentation](super#each-peers-handshake); the machine calls the
//! methods and turns what they return into datagrams, storage effects and events. The
//! key type is a parameter so that the transitions are tested without RSA.

use std::net::SocketAddrV4;

use flock_crypto::PublicKey;

/// What the machine knows of one contact: the route to them (address and lookup) and
/// the handshake's three states.
#[derive(Debug, Default)]
pub(super) struct Peer {
    /// The address the ring gave for them.
    pub(super) addr: Option<SocketAddrV4>,
    /// The address needs a fresh `RESOLVE` before the next send.
    pub(super) stale: bool,
    /// A `RESOLVE` for them is queued or in flight (never two).
    pub(super) resolving: bool,
    /// Signed messages went out since the last lookup.
    pub(super) sent_since_resolve: bool,
    /// Whose key we trust, and our `PUBKEY_REQ`.
    pub(super) key: PeerKey<PublicKey>,
    /// The dialect they speak.
    pub(super) dialect: Dialect,
    /// The liveness probe in flight.
    pub(super) probe: Probe,
    /// A verified signed message or acknowledgement came from this user (stored, and
    /// restored after a restart): unsigned `MESSAGE`s claiming to be from them are
    /// refused.
    pub(super) signs: bool,
    /// The user verified the pinned key (safety numbers); cleared when a new key is
    /// accepted.
    pub(super) verified: bool,
    /// Their `HELLO` said `parts1`: they reassemble long texts. Known with their
    /// dialect, forgotten with it.
    pub(super) parts: bool,
    /// A `HELLO` (address, `ack1`?, `parts1`?) came from an address the ring has not
    /// confirmed yet; believed once a `RESOLVE` gives that address.
    pub(super) hello_claim: Option<(SocketAddrV4, bool, bool)>,
    /// Our last answer to their `HELLO` (address, Unix ms): at most one a second.
    pub(super) hello_replied: Option<(SocketAddrV4, u64)>,
}

/// A `PUBKEY_RES` is accepted this long after our `PUBKEY_REQ`.
pub(super) const PUBKEY_RES_WINDOW_MS: u64 = 10_000;

/// Our `PUBKEY_REQ` to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PubkeyReq {
    /// Where it went: only an answer from there counts.
    pub(super) to: SocketAddrV4,
    /// When (Unix ms).
    pub(super) at_ms: u64,
}

/// Whose key we trust for one peer, and our `PUBKEY_REQ` to them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum PeerKey<K> {
    /// No key known; nothing asked of the peer.
    #[default]
    Unknown,
    /// No key known; our `PUBKEY_REQ` is out.
    Requested {
        /// The request.
        req: PubkeyReq,
    },
    /// Trusted on first use (or accepted by the user).
    Pinned {
        /// The pinned key.
        key: K,
        /// Our `PUBKEY_REQ` this session, if any.
        req: Option<PubkeyReq>,
    },
    /// A different key was seen: sending is blocked and signed messages are refused until
    /// the user accepts or rejects it.
    Changed {
        /// The key still pinned.
        pinned: K,
        /// The key seen since.
        new: K,
        /// Our `PUBKEY_REQ` this session, if any.
        req: Option<PubkeyReq>,
    },
}

/// What [`PeerKey::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Learned {
    /// Nothing: the key is the pinned one or the one already pending.
    Same,
    /// First key: pinned.
    Pinned,
    /// Different from the pinned key: now pending.
    Changed,
}

impl<K: PartialEq> PeerKey<K> {
    /// The key we seal for and verify with.
    pub(super) fn pinned(&self) -> Option<&K> {
        match self {
            Self::Unknown | Self::Requested { .. } => None,
            Self::Pinned { key, .. } => Some(key),
            Self::Changed { pinned, .. } => Some(pinned),
        }
    }

    /// A changed key waiting for the user.
    pub(super) fn pending(&self) -> Option<&K> {
        match self {
            Self::Changed { new, .. } => Some(new),
            _ => None,
        }
    }

    /// Our `PUBKEY_REQ` this session.
    fn req(&self) -> Option<PubkeyReq> {
        match self {
            Self::Unknown => None,
            Self::Requested { req } => Some(*req),
            Self::Pinned { req, .. } | Self::Changed { req, .. } => *req,
        }
    }

    /// Loads the database's pinned key (and a pending one); a request made this session
    /// stays noted.
    pub(super) fn restore(&mut self, key: K, pending: Option<K>) {
        let req = self.req();
        *self = match pending {
            Some(new) => Self::Changed {
                pinned: key,
                new,
                req,
            },
            None => Self::Pinned { key, req },
        };
    }

    /// A probe is about to start: `true` if a `PUBKEY_REQ` should go to `to` with it
    /// (once a session, whatever the key state).
    pub(super) fn probe_request(&mut self, to: SocketAddrV4, now_ms: u64) -> bool {
        if self.req().is_some() {
            return false;
        }
        let new = PubkeyReq { to, at_ms: now_ms };
        match self {
            Self::Unknown => *self = Self::Requested { req: new },
            Self::Requested { .. } => return false,
            Self::Pinned { req, .. } | Self::Changed { req, .. } => *req = Some(new),
        }
        true
    }

    /// Whether a `PUBKEY_RES` from `from` at `now_ms` answers our request.
    pub(super) fn solicited(&self, from: SocketAddrV4, now_ms: u64) -> bool {
        self.req()
            .is_some_and(|r| r.to == from && now_ms.saturating_sub(r.at_ms) <= PUBKEY_RES_WINDOW_MS)
    }

    /// Whether a solicited `PUBKEY_RES` naming `key` confirms the pinned key. A peer's
    /// own word never introduces or changes a key: `false` when nothing is pinned or the
    /// key differs (the machine then asks the ring).
    pub(super) fn confirms(&self, key: &K) -> bool {
        self.pinned() == Some(key)
    }

    /// A key for this peer from a lookup answered by the server the request went to
    /// (the only source of a first key or of a key change).
    pub(super) fn learn(&mut self, key: K) -> Learned {
        match std::mem::take(self) {
            Self::Unknown => {
                *self = Self::Pinned { key, req: None };
                Learned::Pinned
            }
            Self::Requested { req } => {
                *self = Self::Pinned {
                    key,
                    req: Some(req),
                };
                Learned::Pinned
            }
            Self::Pinned { key: pinned, req } if pinned == key => {
                *self = Self::Pinned { key: pinned, req };
                Learned::Same
            }
            Self::Pinned { key: pinned, req } => {
                *self = Self::Changed {
                    pinned,
                    new: key,
                    req,
                };
                Learned::Changed
            }
            Self::Changed { pinned, new, req } => {
                if pinned == key || new == key {
                    *self = Self::Changed { pinned, new, req };
                    return Learned::Same;
                }
                *self = Self::Changed {
                    pinned,
                    new: key,
                    req,
                };
                Learned::Changed
            }
        }
    }

    /// The user accepted the pending key: it is pinned. `None` if nothing was pending.
    pub(super) fn accept(&mut self) -> Option<&K> {
        match std::mem::take(self) {
            Self::Changed { new, req, .. } => {
                *self = Self::Pinned { key: new, req };
                self.pinned()
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// The user rejected the pending key: the pinned key stays. `false` if nothing was
    /// pending.
    pub(super) fn reject(&mut self) -> bool {
        match std::mem::take(self) {
            Self::Changed { pinned, req, .. } => {
                *self = Self::Pinned { key: pinned, req };
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }
}

/// The protocol dialect of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Dialect {
    /// Not known yet.
    #[default]
    Unknown,
    /// Speaks the `ack1` extension: signed messages, acknowledgements.
    Extension,
    /// An original client: `MESSAGE` once after each `PONG`.
    Original,
}

impl Dialect {
    /// What a `HELLO` says: `ack1` among its features or not.
    pub(super) fn from_hello(ack1: bool) -> Self {
        if ack1 {
            Self::Extension
        } else {
            Self::Original
        }
    }
}

/// The liveness probe of a peer whose dialect is unknown or original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Probe {
    /// No probe.
    #[default]
    Idle,
    /// `PING` sent; waiting for `PONG` until `deadline_ms`.
    Ping {
        /// Unix ms.
        deadline_ms: u64,
    },
    /// `PONG` came while the dialect was unknown; waiting for `HELLO` until
    /// `deadline_ms`.
    Grace {
        /// Unix ms.
        deadline_ms: u64,
    },
}

/// What a `PONG` means for the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterPong {
    /// Wait a little for `HELLO`.
    Grace,
    /// An original client: send what is due, once.
    Original,
    /// An extension peer: send what is due, signed.
    Extension,
}

/// What an expired probe means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// No `PONG`: the peer is not reachable at the cached address.
    Unreachable,
    /// `PONG` but no `HELLO`: an original client.
    Original,
}

impl Probe {
    /// A probe starts at `now_ms`, waiting `timeout_ms` for `PONG`.
    pub(super) fn start(&mut self, now_ms: u64, timeout_ms: u64) {
        *self = Self::Ping {
            deadline_ms: now_ms.saturating_add(timeout_ms),
        };
    }

    /// Whether a probe is in flight.
    pub(super) fn active(self) -> bool {
        self != Self::Idle
    }

    /// Whether the probe waits for `PONG`.
    pub(super) fn awaits_pong(self) -> bool {
        matches!(self, Self::Ping { .. })
    }

    /// When [`Probe::expire`] is due.
    pub(super) fn deadline(self) -> Option<u64> {
        match self {
            Self::Idle => None,
            Self::Ping { deadline_ms } | Self::Grace { deadline_ms } => Some(deadline_ms),
        }
    }

    /// `PONG` from the peer's address. `None`: not waiting for one.
    pub(super) fn pong(
        &mut self,
        now_ms: u64,
        dialect: Dialect,
        extension: bool,
        grace_ms: u64,
    ) -> Option<AfterPong> {
        if !self.awaits_pong() {
            return None;
        }
        Some(match dialect {
            Dialect::Unknown if extension => {
                *self = Self::Grace {
                    deadline_ms: now_ms.saturating_add(grace_ms),
                };
                AfterPong::Grace
            }
            Dialect::Unknown | Dialect::Original => {
                *self = Self::Idle;
                AfterPong::Original
            }
            Dialect::Extension => {
                *self = Self::Idle;
                AfterPong::Extension
            }
        })
    }

    /// The probe's deadline passed by `now_ms`. `None`: not yet, or no probe.
    pub(super) fn expire(&mut self, now_ms: u64) -> Option<Expired> {
        let expired = match *self {
            Self::Ping { deadline_ms } if deadline_ms <= now_ms => Expired::Unreachable,
            Self::Grace { deadline_ms } if deadline_ms <= now_ms => Expired::Original,
            _ => return None,
        };
        *self = Self::Idle;
        Some(expired)
    }

    /// The peer proved it speaks the extension: `true` if a probe was in flight (what
    /// waited for it is due now).
    pub(super) fn finish(&mut self) -> bool {
        std::mem::take(self).active()
    }

    /// Forget the probe (the peer moved).
    pub(super) fn reset(&mut self) {
        *self = Self::Idle;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 4000);
    const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 4000);
    const REQ: PubkeyReq = PubkeyReq { to: A, at_ms: 100 };

    fn pinned(key: u32) -> PeerKey<u32> {
        PeerKey::Pinned { key, req: None }
    }

    fn changed(pinned: u32, new: u32) -> PeerKey<u32> {
        PeerKey::Changed {
            pinned,
            new,
            req: None,
        }
    }

    // ---- PeerKey ----------------------------------------------------------------------

    #[test]
    fn unknown_probe_request_asks() {
        let mut k = PeerKey::<u32>::Unknown;
        assert!(k.probe_request(A, 100));
        assert_eq!(k, PeerKey::Requested { req: REQ });
    }

    #[test]
    fn requested_asks_once() {
        let mut k = PeerKey::<u32>::Requested { req: REQ };
        assert!(!k.probe_request(B, 200));
        assert_eq!(k, PeerKey::Requested { req: REQ });
    }

    #[test]
    fn unknown_learn_pins() {
        let mut k = PeerKey::Unknown;
        assert_eq!(k.learn(1), Learned::Pinned);
        assert_eq!(k, pinned(1));
        assert_eq!((k.pinned(), k.pending()), (Some(&1), None));
    }

    #[test]
    fn requested_learn_pins_and_keeps_the_request() {
        let mut k = PeerKey::Requested { req: REQ };
        assert_eq!(k.learn(1), Learned::Pinned);
        assert_eq!(
            k,
            PeerKey::Pinned {
                key: 1,
                req: Some(REQ)
            }
        );
    }

    #[test]
    fn pinned_probe_request_asks_once() {
        let mut k = pinned(1);
        assert!(k.probe_request(A, 100));
        assert_eq!(
            k,
            PeerKey::Pinned {
                key: 1,
                req: Some(REQ)
            }
        );
        assert!(!k.probe_request(A, 200));
    }

    #[test]
    fn changed_probe_request_asks_once() {
        let mut k = changed(1, 2);
        assert!(k.probe_request(A, 100));
        assert_eq!(
            k,
            PeerKey::Changed {
                pinned: 1,
                new: 2,
                req: Some(REQ)
            }
        );
        assert!(!k.probe_request(A, 200));
    }

    #[test]
    fn only_the_pinned_key_is_confirmed() {
        assert!(!PeerKey::<u32>::Unknown.confirms(&1));
        assert!(!PeerKey::<u32>::Requested { req: REQ }.confirms(&1));
        assert!(pinned(1).confirms(&1));
        assert!(!pinned(1).confirms(&2));
        assert!(changed(1, 2).confirms(&1));
        assert!(
            !changed(1, 2).confirms(&2),
            "a pending key is not confirmed"
        );
    }

    #[test]
    fn pinned_learn_same_key_changes_nothing() {
        let mut k = pinned(1);
        assert_eq!(k.learn(1), Learned::Same);
        assert_eq!(k, pinned(1));
    }

    #[test]
    fn pinned_learn_other_key_changes() {
        let mut k = pinned(1);
        assert_eq!(k.learn(2), Learned::Changed);
        assert_eq!(k, changed(1, 2));
        assert_eq!((k.pinned(), k.pending()), (Some(&1), Some(&2)));
    }

    #[test]
    fn changed_learn_known_keys_changes_nothing() {
        let mut k = changed(1, 2);
        assert_eq!(k.learn(1), Learned::Same);
        assert_eq!(k.learn(2), Learned::Same);
        assert_eq!(k, changed(1, 2));
    }

    #[test]
    fn changed_learn_third_key_replaces_the_pending_one() {
        let mut k = changed(1, 2);
        assert_eq!(k.learn(3), Learned::Changed);
        assert_eq!(k, changed(1, 3));
    }

    #[test]
    fn changed_accept_pins_the_new_key() {
        let mut k = PeerKey::Changed {
            pinned: 1,
            new: 2,
            req: Some(REQ),
        };
        assert_eq!(k.accept(), Some(&2));
        assert_eq!(
            k,
            PeerKey::Pinned {
                key: 2,
                req: Some(REQ)
            }
        );
    }

    #[test]
    fn changed_reject_keeps_the_old_key() {
        let mut k = changed(1, 2);
        assert!(k.reject());
        assert_eq!(k, pinned(1));
    }

    #[test]
    fn nothing_pending_accept_and_reject_change_nothing() {
        for start in [PeerKey::Unknown, PeerKey::Requested { req: REQ }, pinned(1)] {
            let mut k = start.clone();
            assert_eq!(k.accept(), None);
            assert_eq!(k, start);
            assert!(!k.reject());
            assert_eq!(k, start);
        }
    }

    #[test]
    fn restore_pins_or_changes_and_keeps_the_request() {
        let mut k = PeerKey::Requested { req: REQ };
        k.restore(1, None);
        assert_eq!(
            k,
            PeerKey::Pinned {
                key: 1,
                req: Some(REQ)
            }
        );
        let mut k = PeerKey::Unknown;
        k.restore(1, Some(2));
        assert_eq!(k, changed(1, 2));
    }

    #[test]
    fn solicited_only_from_the_address_asked_within_the_window() {
        let mut k = PeerKey::<u32>::Unknown;
        assert!(!k.solicited(A, 100));
        k.probe_request(A, 100);
        assert!(k.solicited(A, 100 + PUBKEY_RES_WINDOW_MS));
        assert!(!k.solicited(A, 101 + PUBKEY_RES_WINDOW_MS));
        assert!(!k.solicited(B, 100));
        k.learn(1);
        assert!(k.solicited(A, 200), "the request outlives the pinning");
    }

    // ---- Dialect ----------------------------------------------------------------------

    #[test]
    fn hello_tells_the_dialect() {
        assert_eq!(Dialect::default(), Dialect::Unknown);
        assert_eq!(Dialect::from_hello(true), Dialect::Extension);
        assert_eq!(Dialect::from_hello(false), Dialect::Original);
    }

    // ---- Probe ------------------------------------------------------------------------

    #[test]
    fn start_pings() {
        let mut p = Probe::Grace { deadline_ms: 5 };
        p.start(100, 500);
        assert_eq!(p, Probe::Ping { deadline_ms: 600 });
        assert_eq!(p.deadline(), Some(600));
    }

    #[test]
    fn ping_pong_unknown_dialect_waits_for_hello() {
        let mut p = Probe::Ping { deadline_ms: 600 };
        assert_eq!(
            p.pong(200, Dialect::Unknown, true, 100),
            Some(AfterPong::Grace)
        );
        assert_eq!(p, Probe::Grace { deadline_ms: 300 });
    }

    #[test]
    fn ping_pong_original_or_extension_off_sends_original() {
        for (dialect, extension) in [
            (Dialect::Unknown, false),
            (Dialect::Original, true),
            (Dialect::Original, false),
        ] {
            let mut p = Probe::Ping { deadline_ms: 600 };
            assert_eq!(
                p.pong(200, dialect, extension, 100),
                Some(AfterPong::Original)
            );
            assert_eq!(p, Probe::Idle);
        }
    }

    #[test]
    fn ping_pong_extension_sends_signed() {
        let mut p = Probe::Ping { deadline_ms: 600 };
        assert_eq!(
            p.pong(200, Dialect::Extension, true, 100),
            Some(AfterPong::Extension)
        );
        assert_eq!(p, Probe::Idle);
    }

    #[test]
    fn pong_without_ping_is_ignored() {
        for start in [Probe::Idle, Probe::Grace { deadline_ms: 300 }] {
            let mut p = start;
            assert_eq!(p.pong(200, Dialect::Unknown, true, 100), None);
            assert_eq!(p, start);
        }
    }

    #[test]
    fn ping_expires_unreachable() {
        let mut p = Probe::Ping { deadline_ms: 600 };
        assert_eq!(p.expire(599), None);
        assert_eq!(p.expire(600), Some(Expired::Unreachable));
        assert_eq!(p, Probe::Idle);
    }

    #[test]
    fn grace_expires_original() {
        let mut p = Probe::Grace { deadline_ms: 300 };
        assert_eq!(p.expire(299), None);
        assert_eq!(p.expire(300), Some(Expired::Original));
        assert_eq!(p, Probe::Idle);
        assert_eq!(p.expire(10_000), None, "idle never expires");
    }

    #[test]
    fn finish_ends_a_probe() {
        for start in [
            Probe::Ping { deadline_ms: 600 },
            Probe::Grace { deadline_ms: 300 },
        ] {
            let mut p = start;
            assert!(p.finish());
            assert_eq!(p, Probe::Idle);
        }
        let mut p = Probe::Idle;
        assert!(!p.finish());
    }

    #[test]
    fn reset_forgets_the_probe() {
        let mut p = Probe::Ping { deadline_ms: 600 };
        p.reset();
        assert_eq!(p, Probe::Idle);
        assert!(!p.active());
    }
}
