//! Delivering the outbox: when a peer is due, probing or sending, retries with backoff,
//! acknowledgements.

use std::borrow::Cow;
use std::collections::BTreeSet;

use flock_crypto::{CryptoRng, sign_b64, verify_b64};

use super::{Client, OutEntry, Request, of_user, of_user_ids};
use crate::client::peer::Dialect;
use crate::client::types::{Action, ClientConfig, Part, Status, StoreOp, Transmit};
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
                self.outbox.insert((user.to_owned(), id), entry);
                self.give_up(user, id);
                continue;
            }
            self.actions
                .push_back(Action::Send(Transmit { to: addr, datagram }));
            match entry.part {
                None => self.store(StoreOp::SentFinal {
                    to: user.to_owned(),
                    msg_id: id,
                }),
                Some(part) => {
                    // Each part is a message of its own to an original client; the
                    // sender's one message is sent once every part is.
                    if !self.part_done(user, id, &part) {
                        continue;
                    }
                    self.store(StoreOp::SentFinal {
                        to: user.to_owned(),
                        msg_id: part.of,
                    });
                    self.status(user, part.of, Status::Sent);
                    continue;
                }
            }
            self.status(user, id, Status::Sent);
        }
    }

    /// Part `id` (out of the outbox already) needs no more sending: stored as done.
    /// Whether it was its text's last part.
    fn part_done(&mut self, user: &str, id: u64, part: &Part) -> bool {
        self.store(StoreOp::PartDone {
            to: user.to_owned(),
            msg_id: id,
            of: part.of,
        });
        self.text_entries(user, part).next().is_none()
    }

    /// The ids of the parts of `part`'s text still in `user`'s outbox.
    pub(super) fn text_entries<'a>(
        &'a self,
        user: &str,
        part: &Part,
    ) -> impl Iterator<Item = u64> + 'a {
        let last = part
            .of
            .saturating_add(u64::from(part.count.saturating_sub(1)));
        self.outbox
            .range(of_user_ids(user, part.of, last))
            .map(|((_, id), _)| *id)
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
        let reassembles = peer.parts && self.cfg.parts;
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            let key = (user.to_owned(), id);
            let Some(entry) = self.outbox.get(&key) else {
                continue;
            };
            // A peer that reassembles gets a part with its marker inside.
            let marked = reassembles && entry.part.is_some();
            let payload_b64 = match (&entry.part, marked) {
                (Some(part), true) => &part.ext_payload_b64,
                _ => &entry.payload_b64,
            };
            let sig_b64 = match &entry.sig_b64 {
                Some((was_marked, s)) if *was_marked == marked => s.clone(),
                _ => {
                    let text = smessage_signed_text(&self.cfg.user, user, id, payload_b64);
                    match sign_b64(&mut self.rng, &self.key, text.as_bytes()) {
                        Ok(s) => s,
                        Err(_) => continue,
                    }
                }
            };
            let datagram = Frame::SecureMessage {
                sender: Cow::Borrowed(&self.cfg.user),
                id,
                payload_b64: Cow::Borrowed(payload_b64),
                sig_b64: Cow::Borrowed(&sig_b64),
            }
            .encode_to_vec();
            // The message is sent with its first part: was any part of its text sent?
            let text_sent = entry.part.as_ref().is_some_and(|p| {
                self.text_entries(user, p).any(|i| {
                    self.outbox
                        .get(&(user.to_owned(), i))
                        .is_some_and(|e| e.sent)
                })
            });
            self.actions
                .push_back(Action::Send(Transmit { to: addr, datagram }));
            let Some(entry) = self.outbox.get_mut(&key) else {
                continue;
            };
            entry.sig_b64 = Some((marked, sig_b64));
            entry.attempts = entry.attempts.saturating_add(1);
            entry.next_ms = now_ms.saturating_add(backoff(&self.cfg, entry.attempts));
            let first = !entry.sent;
            entry.sent = true;
            let next = entry.next_ms;
            let attempts = entry.attempts;
            let of = entry.part.as_ref().map(|p| p.of);
            if self.cfg.max_attempts.is_some_and(|max| attempts > max) {
                self.give_up(user, id);
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
            if first && !text_sent {
                let msg_id = of.unwrap_or(id);
                self.store(StoreOp::Sent {
                    to: user.to_owned(),
                    msg_id,
                });
                self.status(user, msg_id, Status::Sent);
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
            self.give_up(user, id);
            return;
        }
        self.store(StoreOp::Attempt {
            to: user.to_owned(),
            msg_id: id,
            next_attempt_at_ms: next,
        });
    }

    /// Gives up on outbox entry `id`, and for a part on its whole text: out of the
    /// outbox, status failed (the message's).
    pub(super) fn give_up(&mut self, user: &str, id: u64) {
        let Some(entry) = self.outbox.remove(&(user.to_owned(), id)) else {
            return;
        };
        match entry.part {
            None => self.fail(user, id),
            Some(part) => self.fail_text(user, part.of, part.count),
        }
    }

    /// Gives up on a message waiting for its recipient's key, and for a part on its
    /// whole text.
    pub(super) fn give_up_awaiting(&mut self, user: &str, id: u64) {
        let Some(waiting) = self.awaiting_key.remove(&(user.to_owned(), id)) else {
            return;
        };
        match waiting.part {
            None => self.fail(user, id),
            Some(mark) => self.fail_text(user, mark.of, mark.count),
        }
    }

    /// The parts `of..of + count` of one text go, wherever they wait; the text failed.
    fn fail_text(&mut self, user: &str, of: u64, count: u32) {
        let last = of.saturating_add(u64::from(count.saturating_sub(1)));
        let queued: Vec<u64> = self
            .outbox
            .range(of_user_ids(user, of, last))
            .map(|((_, id), _)| *id)
            .collect();
        for id in queued {
            self.outbox.remove(&(user.to_owned(), id));
        }
        let waiting: Vec<u64> = self
            .awaiting_key
            .range(of_user_ids(user, of, last))
            .map(|((_, id), _)| *id)
            .collect();
        for id in waiting {
            self.awaiting_key.remove(&(user.to_owned(), id));
        }
        self.fail(user, of);
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
        let part = self.outbox.remove(&key).and_then(|e| e.part);
        self.signer(user);
        if let Some(peer) = self.peers.get_mut(user) {
            peer.stale = false;
        }
        let msg_id = match part {
            None => id,
            Some(part) => {
                if !self.part_done(user, id, &part) {
                    // The message is delivered once every part is.
                    return;
                }
                part.of
            }
        };
        self.store(StoreOp::Delivered {
            to: user.to_owned(),
            msg_id,
        });
        self.status(user, msg_id, Status::Delivered);
    }
}

pub(super) fn new_entry(payload_b64: String, now_ms: u64, part: Option<Part>) -> OutEntry {
    OutEntry {
        payload_b64,
        attempts: 0,
        next_ms: now_ms,
        sent: false,
        sig_b64: None,
        part,
    }
}

/// Delay after attempt number `attempts` (1-based): base, doubling, capped.
pub(super) fn backoff(cfg: &ClientConfig, attempts: u32) -> u64 {
    let shift = attempts.saturating_sub(1).min(30);
    cfg.retry_base_ms
        .saturating_mul(1u64 << shift)
        .min(cfg.retry_max_ms.max(cfg.retry_base_ms))
}
