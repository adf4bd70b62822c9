//! Each peer's handshake: keys (pinning, `PUBKEY_REQ`/`PUBKEY_RES`, key change), the
//! `PING` probe and `HELLO`. The states and their transitions live in
//! [`crate::client::peer`]; this is where their effects are carried out.

use std::borrow::Cow;
use std::net::SocketAddrV4;

use flock_crypto::{CryptoRng, PublicKey};

use super::{Client, of_user};
use crate::client::peer::{AfterPong, Dialect, Learned};
use crate::client::types::{
    Action, Event, FEATURE_ACK1, FEATURE_PARTS1, KeySource, StoreOp, Transmit, Warning,
};
use crate::frame::Frame;
use crate::validate::validate_username;

/// Answer `HELLO`s from one address at most this often.
const HELLO_REPLY_INTERVAL_MS: u64 = 1_000;

impl<R: CryptoRng> Client<R> {
    /// A key for `user` from a lookup the server we asked answered: the only way a
    /// first key is pinned or a key change is noticed.
    pub(super) fn learn_key(&mut self, now_ms: u64, user: &str, pubkey_b64: &str) {
        let source = KeySource::Resolve;
        let Ok(key) = PublicKey::from_b64(pubkey_b64) else {
            self.warn(Warning::BadKey {
                user: user.to_owned(),
            });
            return;
        };
        let peer = self.peers.entry(user.to_owned()).or_default();
        let fingerprint = key.fingerprint().to_string();
        match peer.key.learn(key) {
            Learned::Same => {}
            Learned::Pinned => {
                self.store(StoreOp::PinKey {
                    user: user.to_owned(),
                    pubkey_b64: pubkey_b64.to_owned(),
                    fingerprint: fingerprint.clone(),
                    at_ms: now_ms,
                });
                self.event(Event::KeyPinned {
                    user: user.to_owned(),
                    fingerprint,
                    source,
                });
            }
            Learned::Changed => {
                let verified = peer.verified;
                let pinned = peer
                    .key
                    .pinned()
                    .map(|k| k.fingerprint().to_string())
                    .unwrap_or_default();
                self.store(StoreOp::PendingKey {
                    user: user.to_owned(),
                    pubkey_b64: pubkey_b64.to_owned(),
                    fingerprint: fingerprint.clone(),
                    at_ms: now_ms,
                });
                self.event(Event::KeyChanged {
                    user: user.to_owned(),
                    pinned,
                    new: fingerprint,
                    source,
                    verified,
                });
            }
        }
    }

    /// Messages written before `user`'s key was known: seal them now, into the outbox.
    pub(super) fn seal_awaiting(&mut self, now_ms: u64, user: &str) {
        let Some(peer) = self.peers.get(user) else {
            return;
        };
        if peer.key.pending().is_some() {
            return;
        }
        let Some(key) = peer.key.pinned().cloned() else {
            return;
        };
        for id in self.awaiting_ids(user) {
            let Some(waiting) = self.awaiting_key.get(&(user.to_owned(), id)) else {
                continue;
            };
            let (text, mark) = (waiting.text.clone(), waiting.part);
            match self.seal_part(&key, &text, mark) {
                Ok((payload_b64, part)) => {
                    self.awaiting_key.remove(&(user.to_owned(), id));
                    self.enqueue(now_ms, user, id, payload_b64, part);
                }
                Err(_) => self.give_up_awaiting(user, id),
            }
        }
    }

    /// Answers a `PUBKEY_REQ` with our key. Asking for the requester's key back (as
    /// the original does) would be pointless: a peer's `PUBKEY_RES` never introduces a
    /// key, and remembering the requester would let anyone grow the peer table.
    pub(super) fn on_pubkey_req(&mut self, now_ms: u64, from: SocketAddrV4, requester: &str) {
        if validate_username(requester).is_err() || requester == self.cfg.user {
            return;
        }
        // The answer is ~30 times the request: bound what a spoofed source can reflect.
        if !self.reply_limiter.allow(*from.ip(), now_ms) {
            return;
        }
        let reply = Frame::PubkeyRes {
            user: Cow::Borrowed(&self.cfg.user),
            pubkey_b64: Cow::Borrowed(&self.pubkey_b64),
        }
        .encode_to_vec();
        self.actions.push_back(Action::Send(Transmit {
            to: from,
            datagram: reply,
        }));
    }

    pub(super) fn on_pubkey_res(
        &mut self,
        now_ms: u64,
        from: SocketAddrV4,
        user: &str,
        pubkey_b64: &str,
    ) {
        let solicited = self
            .peers
            .get(user)
            .is_some_and(|p| p.key.solicited(from, now_ms));
        if !solicited {
            self.counters.unconfirmed_keys = self.counters.unconfirmed_keys.saturating_add(1);
            return;
        }
        // The peer's word confirms the pinned key or nothing: a different key (or a key
        // for someone we have none for) is checked with the ring, never believed.
        let confirmed = PublicKey::from_b64(pubkey_b64)
            .is_ok_and(|key| self.peers.get(user).is_some_and(|p| p.key.confirms(&key)));
        if confirmed {
            return;
        }
        self.counters.unconfirmed_keys = self.counters.unconfirmed_keys.saturating_add(1);
        if self
            .peers
            .get(user)
            .is_some_and(|p| p.key.pinned().is_some())
        {
            self.warn(Warning::KeyNotConfirmed {
                user: user.to_owned(),
            });
            self.request_resolve(user);
        }
    }

    pub(super) fn set_dialect(&mut self, user: &str, dialect: Dialect) {
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        if peer.dialect == dialect {
            return;
        }
        peer.dialect = dialect;
        if dialect != Dialect::Extension {
            peer.parts = false;
        }
        self.event(Event::PeerFeatures {
            user: user.to_owned(),
            extension: dialect == Dialect::Extension,
        });
    }

    pub(super) fn on_pong(&mut self, now_ms: u64, from: SocketAddrV4) {
        if self.server.as_ref().is_some_and(|s| s.addr == from) {
            self.server_alive(now_ms);
            return;
        }
        let grace = self.cfg.hello_grace_ms;
        let extension = self.cfg.extension;
        let users: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr == Some(from) && p.probe.awaits_pong())
            .map(|(u, _)| u.clone())
            .collect();
        for user in users {
            let Some(peer) = self.peers.get_mut(&user) else {
                continue;
            };
            let dialect = peer.dialect;
            match peer.probe.pong(now_ms, dialect, extension, grace) {
                None | Some(AfterPong::Grace) => {}
                Some(AfterPong::Original) => {
                    self.set_dialect(&user, Dialect::Original);
                    self.send_original_due(now_ms, &user);
                }
                Some(AfterPong::Extension) => self.send_ext_due(now_ms, &user),
            }
        }
    }

    pub(super) fn on_hello(&mut self, now_ms: u64, from: SocketAddrV4, user: &str, features: &str) {
        if !self.cfg.extension || validate_username(user).is_err() || user == self.cfg.user {
            return;
        }
        if !self.reply_limiter.allow(*from.ip(), now_ms) {
            return;
        }
        let ext = features.split(',').any(|f| f == FEATURE_ACK1);
        let parts = features.split(',').any(|f| f == FEATURE_PARTS1);
        let Some(peer) = self.peers.get_mut(user) else {
            // Someone we have no business with yet: greet back, remember nothing, look
            // nothing up (a name in an unsolicited datagram never starts a lookup).
            self.send_hello(from);
            return;
        };
        // Answer a HELLO unless it answers our own probe; at most once a second per
        // address, so two clients can never greet each other in a loop.
        let reply = !peer.probe.active()
            && peer.hello_replied.is_none_or(|(to, at)| {
                to != from || now_ms.saturating_sub(at) >= HELLO_REPLY_INTERVAL_MS
            });
        if reply {
            peer.hello_replied = Some((from, now_ms));
        }
        let known_here = peer.addr == Some(from);
        if !known_here {
            // Unauthenticated: believe it once the ring says the user is at `from`. The
            // lookup happens when something is due for them (never just because of it).
            peer.hello_claim = Some((from, ext, parts));
            peer.stale = true;
        }
        if reply {
            self.send_hello(from);
        }
        if known_here {
            self.hello_dialect(user, ext, parts);
            if ext {
                if let Some(peer) = self.peers.get_mut(user) {
                    if peer.probe.finish() {
                        self.send_ext_due(now_ms, user);
                    }
                }
            }
        }
        // The peer is online: what waits for it is due now.
        for ((_, _), e) in self.outbox.range_mut(of_user(user)) {
            e.next_ms = e.next_ms.min(now_ms);
        }
    }

    /// What a `HELLO` the ring vouches for says: the dialect, and whether they
    /// reassemble long texts.
    pub(super) fn hello_dialect(&mut self, user: &str, ext: bool, parts: bool) {
        self.set_dialect(user, Dialect::from_hello(ext));
        if let Some(peer) = self.peers.get_mut(user) {
            peer.parts = ext && parts;
        }
    }

    pub(super) fn send_hello(&mut self, to: SocketAddrV4) {
        let me = self.cfg.user.clone();
        let features = if self.cfg.parts {
            Cow::Owned(format!("{FEATURE_ACK1},{FEATURE_PARTS1}"))
        } else {
            Cow::Borrowed(FEATURE_ACK1)
        };
        self.send_frame(
            to,
            &Frame::Hello {
                user: Cow::Owned(me),
                features,
            },
        );
    }

    pub(super) fn start_probe(&mut self, now_ms: u64, user: &str) {
        let me = self.cfg.user.clone();
        let extension = self.cfg.extension;
        let timeout = self.cfg.ping_timeout_ms;
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        let Some(addr) = peer.addr else {
            return;
        };
        peer.probe.start(now_ms, timeout);
        let hello = extension && peer.dialect == Dialect::Unknown;
        let pubkey_req = peer.key.probe_request(addr, now_ms);
        if hello {
            self.send_hello(addr);
        }
        if pubkey_req {
            self.send_frame(
                addr,
                &Frame::PubkeyReq {
                    requester: Cow::Owned(me),
                },
            );
        }
        self.send_frame(addr, &Frame::Ping);
    }
}
