//! Incoming messages: original `MESSAGE`s, signed `SMESSAGE`s (held until the sender's
//! key is known), duplicate suppression and acknowledgements.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use flock_crypto::{CryptoRng, open_b64, sign_b64, verify_b64};

use super::{Client, Held};
use crate::client::parts::{self, Added, Limits, Mark};
use crate::client::peer::Dialect;
use crate::client::peer::Peer;
use crate::client::types::{Action, StoreOp, Transmit, Warning};
use crate::client::{ack_signed_text, smessage_signed_text};
use crate::frame::Frame;
use crate::validate::validate_username;

/// Signed messages from not-yet-known senders held while their key is resolved.
const MAX_HELD_PER_SENDER: usize = 16;
const MAX_HELD: usize = 256;
/// Ids of opened extension messages remembered in memory (the database remembers more).
const RECENT_IDS: usize = 4_096;

/// An `SMESSAGE` as it came in, from `from`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Signed<'a> {
    pub(super) from: SocketAddrV4,
    pub(super) sender: &'a str,
    pub(super) id: u64,
    pub(super) payload_b64: &'a str,
    pub(super) sig_b64: &'a str,
}

impl<R: CryptoRng> Client<R> {
    pub(super) fn on_message(
        &mut self,
        now_ms: u64,
        from: SocketAddrV4,
        sender: &str,
        payload_b64: &str,
    ) {
        if validate_username(sender).is_err() {
            return;
        }
        if self.peers.get(sender).is_some_and(|p| p.signs) {
            self.warn(Warning::Unauthenticated {
                claimed: sender.to_owned(),
                from,
            });
            return;
        }
        // RSA decryption of bytes anyone can send (RUSTSEC-2023-0071): bounded per source
        // and for all sources together.
        if !self.open_limiter.allow(*from.ip(), now_ms) {
            self.counters.decrypt_limited_source =
                self.counters.decrypt_limited_source.saturating_add(1);
            self.warn(Warning::RateLimited { from });
            return;
        }
        if !self.open_global.allow(Ipv4Addr::UNSPECIFIED, now_ms) {
            self.counters.decrypt_limited_global =
                self.counters.decrypt_limited_global.saturating_add(1);
            self.warn(Warning::RateLimited { from });
            return;
        }
        self.counters.decryptions = self.counters.decryptions.saturating_add(1);
        match open_b64(&mut self.rng, &self.key, payload_b64) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => self.store(StoreOp::Incoming {
                    from: sender.to_owned(),
                    text,
                    msg_id: None,
                    at_ms: now_ms,
                    authenticated: false,
                    acks: Vec::new(),
                }),
                Err(_) => self.warn(Warning::NotText {
                    from: sender.to_owned(),
                }),
            },
            Err(_) => self.warn(Warning::Undecryptable {
                claimed: sender.to_owned(),
                from,
            }),
        }
    }

    pub(super) fn on_smessage(&mut self, now_ms: u64, message: Signed<'_>) {
        let (from, sender) = (message.from, message.sender);
        if !self.cfg.extension || validate_username(sender).is_err() {
            return;
        }
        if !self.signed_limiter.allow(*from.ip(), now_ms) {
            self.warn(Warning::RateLimited { from });
            return;
        }
        if sender == self.cfg.user {
            self.on_self_notice(from, message.id, message.payload_b64, message.sig_b64);
            return;
        }
        let pinned = self
            .peers
            .get(sender)
            .is_some_and(|p| p.key.pinned().is_some());
        if !pinned {
            // Verify with the key the ring has for the sender, once we have it: the one
            // lookup an incoming datagram may start, limited for all sources together.
            if self.held_count >= MAX_HELD {
                return;
            }
            let resolving = self.peers.get(sender).is_some_and(|p| p.resolving);
            if !resolving && !self.lookup_limiter.allow(Ipv4Addr::UNSPECIFIED, now_ms) {
                self.counters.lookups_limited = self.counters.lookups_limited.saturating_add(1);
                self.warn(Warning::RateLimited { from });
                return;
            }
            if !self.admit_peer(sender) {
                return;
            }
            let held = self.held.entry(sender.to_owned()).or_default();
            if held.len() >= MAX_HELD_PER_SENDER {
                return;
            }
            held.push(Held {
                from,
                id: message.id,
                payload_b64: message.payload_b64.to_owned(),
                sig_b64: message.sig_b64.to_owned(),
                at_ms: now_ms,
            });
            self.held_count += 1;
            self.request_resolve(sender);
            return;
        }
        self.verified_smessage(now_ms, message);
    }

    pub(super) fn release_held(&mut self, now_ms: u64, user: &str) {
        if self
            .peers
            .get(user)
            .is_none_or(|p| p.key.pinned().is_none())
        {
            return;
        }
        let Some(held) = self.held.remove(user) else {
            return;
        };
        self.held_count = self.held_count.saturating_sub(held.len());
        for h in held {
            let message = Signed {
                from: h.from,
                sender: user,
                id: h.id,
                payload_b64: &h.payload_b64,
                sig_b64: &h.sig_b64,
            };
            self.verified_smessage(now_ms, message);
        }
    }

    /// Checks the signature against the sender's pinned key, then opens, stores and
    /// acknowledges.
    pub(super) fn verified_smessage(&mut self, now_ms: u64, message: Signed<'_>) {
        let Signed {
            from,
            sender,
            id,
            payload_b64,
            sig_b64,
        } = message;
        let Some(peer) = self.peers.get(sender) else {
            return;
        };
        let Some(pinned) = peer.key.pinned() else {
            return;
        };
        let text = smessage_signed_text(sender, &self.cfg.user, id, payload_b64);
        if verify_b64(pinned, text.as_bytes(), sig_b64).is_err() {
            let pending_key = peer
                .key
                .pending()
                .is_some_and(|k| verify_b64(k, text.as_bytes(), sig_b64).is_ok());
            self.warn(Warning::ForgedSender {
                claimed: sender.to_owned(),
                from,
                pending_key,
            });
            return;
        }
        self.signer(sender);
        if peer_dialect(&self.peers, sender) != Dialect::Extension {
            self.set_dialect(sender, Dialect::Extension);
            if let Some(peer) = self.peers.get_mut(sender) {
                if peer.addr == Some(from) && peer.probe.finish() {
                    self.send_ext_due(now_ms, sender);
                }
            }
        }
        let ack = match self.ack_datagram(sender, id) {
            Some(datagram) => Transmit { to: from, datagram },
            None => return,
        };
        let seen = (sender.to_owned(), id);
        if self.recent.contains(&seen) {
            // Stored already (the store effect went out before this): acknowledge again.
            self.actions.push_back(Action::Send(ack));
            return;
        }
        match open_b64(&mut self.rng, &self.key, payload_b64) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    if self.cfg.parts {
                        if let Some(part) = parts::unmark(&text) {
                            self.on_part(now_ms, from, sender, id, part, ack);
                            return;
                        }
                    }
                    self.remember(seen);
                    self.store(StoreOp::Incoming {
                        from: sender.to_owned(),
                        text,
                        msg_id: Some(id),
                        at_ms: now_ms,
                        authenticated: true,
                        acks: vec![ack],
                    });
                }
                Err(_) => self.warn(Warning::NotText {
                    from: sender.to_owned(),
                }),
            },
            Err(_) => self.warn(Warning::Undecryptable {
                claimed: sender.to_owned(),
                from,
            }),
        }
    }

    /// One verified part of a long text (`ack` acknowledges it): kept until the text is
    /// whole, then stored as one message and every part acknowledged. A part of a text
    /// stored already is acknowledged again; nothing else is acknowledged.
    fn on_part(
        &mut self,
        now_ms: u64,
        from: SocketAddrV4,
        sender: &str,
        id: u64,
        part: Result<(Mark, &str), ()>,
        ack: Transmit,
    ) {
        let Some((mark, text)) = part.ok().filter(|(mark, _)| mark.id() == Some(id)) else {
            self.counters.parts_refused = self.counters.parts_refused.saturating_add(1);
            return;
        };
        if self.recent.contains(&(sender.to_owned(), mark.of)) {
            self.actions.push_back(Action::Send(ack));
            return;
        }
        let limits = Limits {
            per_peer: self.cfg.reassembly_per_peer.max(1),
            bytes: self.cfg.reassembly_bytes,
        };
        match self.reassembly.add(now_ms, sender, mark, text, limits) {
            Added::Pending | Added::Duplicate => {}
            Added::Refused => {
                self.counters.parts_refused = self.counters.parts_refused.saturating_add(1);
            }
            Added::Complete { text, ids } => {
                let acks = ids
                    .into_iter()
                    .filter_map(|part_id| self.ack_datagram(sender, part_id))
                    .map(|datagram| Transmit { to: from, datagram })
                    .collect();
                self.remember((sender.to_owned(), mark.of));
                self.store(StoreOp::Incoming {
                    from: sender.to_owned(),
                    text,
                    msg_id: Some(mark.of),
                    at_ms: now_ms,
                    authenticated: true,
                    acks,
                });
            }
        }
    }

    /// Texts whose parts did not all come in time: dropped and reported.
    pub(super) fn expire_parts(&mut self, now_ms: u64) {
        for (from, msg_id, received, parts) in self
            .reassembly
            .expire(now_ms, self.cfg.reassembly_timeout_ms)
        {
            self.warn(Warning::Incomplete {
                from,
                msg_id,
                received,
                parts,
            });
        }
    }

    pub(super) fn ack_datagram(&mut self, sender: &str, id: u64) -> Option<Vec<u8>> {
        let text = ack_signed_text(&self.cfg.user, sender, id);
        let sig = sign_b64(&mut self.rng, &self.key, text.as_bytes()).ok()?;
        Some(
            Frame::Ack {
                from: Cow::Borrowed(&self.cfg.user),
                id,
                sig_b64: Cow::Owned(sig),
            }
            .encode_to_vec(),
        )
    }

    pub(super) fn remember(&mut self, seen: (String, u64)) {
        if self.recent.insert(seen.clone()) {
            self.recent_order.push_back(seen);
        }
        while self.recent_order.len() > RECENT_IDS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }
}

pub(super) fn peer_dialect(peers: &BTreeMap<String, Peer>, user: &str) -> Dialect {
    peers.get(user).map_or(Dialect::Unknown, |p| p.dialect)
}
