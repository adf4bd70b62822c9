//! Delivering the outbox: when a peer is due, probing or sending, retries with backoff,
//! acknowledgements.

use std::borrow::Cow;
use std::collections::BTreeSet;

use flock_crypto::{CryptoRng, sign_b64, verify_b64};

use super::{Client, OutEntry, Request, of_user};
use crate::client::peer::Dialect;
use crate::client::types::{Action, ClientConfig, Status, StoreOp, Transmit};
use crate::client::{ack_signed_text, smessage_signed_text};
use crate::frame::Frame;
use crate::limits::ORIGINAL_CLIENT_MAX_DATAGRAM;

impl<R: CryptoRng> Client<R> {
    /// Whether `user`'s due messages must wait for something other than time.
    pub(super) fn blocked(&self, user: &str) -> bool {
        match self.peers.get(user) {
            None => !self.server_usable(),
            Some(p) => {
                p.key.pending().is_some()
                    || p.probe.active()
                    || p.resolving
                    || (p.addr.is_none() && !self.server_usable())
            }
        }
    }

    pub(super) fn entries_of<'a>(&'a self, user: &str) -> impl Iterator<Item = u64> + 'a {
        self.outbox.range(of_user(user)).map(|((_, id), _)| *id)
    }

    pub(super) fn due_entries<'a>(
        &'a self,
        user: &str,
        now_ms: u64,
    ) -> impl Iterator<Item = u64> + 'a {
        self.outbox
            .range(of_user(user))
            .filter(move |(_, e)| e.next_ms <= now_ms)
            .map(|((_, id), _)| *id)
    }

    pub(super) fn pump(&mut self, now_ms: u64) {
        self.pump_server(now_ms);
        self.pump_keepalive(now_ms);
        let due: BTreeSet<String> = self
            .outbox
            .iter()
            .filter(|(_, e)| e.next_ms <= now_ms)
            .map(|((u, _), _)| u.clone())
            .collect();
        for user in due {
            if self.blocked(&user) {
                continue;
            }
            let server_usable = self.server_usable();
            let peer = self.peers.entry(user.clone()).or_default();
            if peer.dialect == Dialect::Extension {
                // Sent without an acknowledgement since the last lookup: refresh it.
                let unanswered = peer.sent_since_resolve
                    && self
                        .outbox
                        .range(of_user(&user))
                        .any(|(_, e)| e.next_ms <= now_ms && e.attempts > 0);
                if unanswered {
                    peer.stale = true;
                }
            }
            if peer.addr.is_none() || (peer.stale && server_usable) {
                self.request_resolve(&user);
                continue;
            }
            match peer.dialect {
                Dialect::Extension => self.send_ext_due(now_ms, &user),
                Dialect::Unknown | Dialect::Original => self.start_probe(now_ms, &user),
            }
        }
        // Lookups queued by the loop above.
        self.pump_server(now_ms);
    }

    pub(super) fn pump_keepalive(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || !self.requests.is_empty() {
            return;
        }
        let due = self
            .server
            .as_ref()
            .is_some_and(|s| !s.lost && s.registered && s.next_keepalive_ms <= now_ms);
        if due {
            self.requests.push_back(Request::Check);
            self.pump_server(now_ms);
        }
    }

    /// The peer answered `PING` and is an original client: send what is due, once.
    pub(super) fn send_original_due(&mut self, now_ms: u64, user: &str) {
        let Some(addr) = self.peers.get(user).and_then(|p| p.addr) else {
            return;
        };
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            let Some(entry) = self.outbox.remove(&(user.to_owned(), id)) else {
                continue;
            };
            let datagram = Frame::Message {
                sender: Cow::Borrowed(&self.cfg.user),
                payload_b64: Cow::Borrowed(&entry.payload_b64),
            }
            .encode_to_vec();
            if datagram.len() > ORIGINAL_CLIENT_MAX_DATAGRAM {
                // Cannot happen for messages `send` accepted; never send a cut message.
                self.fail(user, id);
                continue;
            }
            self.actions
                .push_back(Action::Send(Transmit { to: addr, datagram }));
            self.store(StoreOp::SentFinal {
                to: user.to_owned(),
                msg_id: id,
            });
            self.status(user, id, Status::Sent);
        }
    }

    /// The peer speaks the extension: send what is due as signed messages.
    pub(super) fn send_ext_due(&mut self, now_ms: u64, user: &str) {
        let Some(peer) = self.peers.get_mut(user) else {
            return;
        };
        let Some(addr) = peer.addr else {
            return;
        };
        peer.sent_since_resolve = true;
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            let key = (user.to_owned(), id);
            let Some(entry) = self.outbox.get(&key) else {
                continue;
            };
            let sig_b64 = match &entry.sig_b64 {
                Some(s) => s.clone(),
                None => {
                    let text = smessage_signed_text(&self.cfg.user, user, id, &entry.payload_b64);
                    match sign_b64(&mut self.rng, &self.key, text.as_bytes()) {
                        Ok(s) => s,
                        Err(_) => continue,
                    }
                }
            };
            let datagram = Frame::SecureMessage {
                sender: Cow::Borrowed(&self.cfg.user),
                id,
                payload_b64: Cow::Borrowed(&entry.payload_b64),
                sig_b64: Cow::Borrowed(&sig_b64),
            }
            .encode_to_vec();
            self.actions
                .push_back(Action::Send(Transmit { to: addr, datagram }));
            let Some(entry) = self.outbox.get_mut(&key) else {
                continue;
            };
            entry.sig_b64 = Some(sig_b64);
            entry.attempts = entry.attempts.saturating_add(1);
            entry.next_ms = now_ms.saturating_add(backoff(&self.cfg, entry.attempts));
            let first = !entry.sent;
            entry.sent = true;
            let next = entry.next_ms;
            let attempts = entry.attempts;
            if self.cfg.max_attempts.is_some_and(|max| attempts > max) {
                self.outbox.remove(&key);
                self.fail(user, id);
                continue;
            }
            if !first {
                // The first send is recorded by `Sent`; a restart makes every entry due
                // at once anyway, so only retries need their count kept.
                self.store(StoreOp::Attempt {
                    to: user.to_owned(),
                    msg_id: id,
                    next_attempt_at_ms: next,
                });
            }
            if first {
                self.store(StoreOp::Sent {
                    to: user.to_owned(),
                    msg_id: id,
                });
                self.status(user, id, Status::Sent);
            }
        }
    }

    pub(super) fn attempt_failed(&mut self, now_ms: u64, user: &str, id: u64) {
        let key = (user.to_owned(), id);
        let Some(entry) = self.outbox.get_mut(&key) else {
            return;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        entry.next_ms = now_ms.saturating_add(backoff(&self.cfg, entry.attempts));
        let (attempts, next) = (entry.attempts, entry.next_ms);
        if self.cfg.max_attempts.is_some_and(|max| attempts >= max) {
            self.outbox.remove(&key);
            self.fail(user, id);
            return;
        }
        self.store(StoreOp::Attempt {
            to: user.to_owned(),
            msg_id: id,
            next_attempt_at_ms: next,
        });
    }

    pub(super) fn fail(&mut self, user: &str, id: u64) {
        self.store(StoreOp::Failed {
            to: user.to_owned(),
            msg_id: id,
        });
        self.status(user, id, Status::Failed);
    }

    pub(super) fn on_ack(&mut self, _now_ms: u64, user: &str, id: u64, sig_b64: &str) {
        let key = (user.to_owned(), id);
        if !self.outbox.contains_key(&key) {
            return;
        }
        let Some(pinned) = self.peers.get(user).and_then(|p| p.key.pinned()) else {
            return;
        };
        let text = ack_signed_text(user, &self.cfg.user, id);
        if verify_b64(pinned, text.as_bytes(), sig_b64).is_err() {
            return;
        }
        self.outbox.remove(&key);
        self.signer(user);
        if let Some(peer) = self.peers.get_mut(user) {
            peer.stale = false;
        }
        self.store(StoreOp::Delivered {
            to: user.to_owned(),
            msg_id: id,
        });
        self.status(user, id, Status::Delivered);
    }
}

pub(super) fn new_entry(payload_b64: String, now_ms: u64) -> OutEntry {
    OutEntry {
        payload_b64,
        attempts: 0,
        next_ms: now_ms,
        sent: false,
        sig_b64: None,
    }
}

/// Delay after attempt number `attempts` (1-based): base, doubling, capped.
pub(super) fn backoff(cfg: &ClientConfig, attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(30);
    cfg.retry_base_ms
        .saturating_mul(1u64 << shift)
        .min(cfg.retry_max_ms.max(cfg.retry_base_ms))
}
