//! Restoring a client's state from its database before the first input: pinned
//! contacts, signers, verified contacts, the outbox and queued parts of long texts.

use flock_crypto::{CryptoRng, PublicKey};

use super::{AwaitingKey, Client, OutEntry, part_ids};
use crate::client::parts::Mark;
use crate::client::peer::Peer;
use crate::client::types::Part;

impl<R: CryptoRng> Client<R> {
    /// Loads a pinned contact (and a pending changed key) from the database. Call before
    /// the first input.
    ///
    /// # Errors
    /// A key that does not parse.
    pub fn restore_contact(
        &mut self,
        user: &str,
        pubkey_b64: &str,
        pending_b64: Option<&str>,
    ) -> Result<(), flock_crypto::Error> {
        let key = PublicKey::from_b64(pubkey_b64)?;
        let pending = pending_b64.map(PublicKey::from_b64).transpose()?;
        let peer = self.peers.entry(user.to_owned()).or_default();
        peer.key.restore(key, pending);
        Ok(())
    }

    /// Loads a contact known to sign its messages ([`StoreOp::Signs`](crate::client::StoreOp::Signs)): unsigned
    /// messages claiming to be from them are dropped. Call after
    /// [`Client::restore_contact`] for the same user; `false` if they are not a contact.
    pub fn restore_signer(&mut self, user: &str) -> bool {
        self.contact_mut(user).map(|p| p.signs = true).is_some()
    }

    /// Loads a contact the user verified ([`StoreOp::Verified`](crate::client::StoreOp::Verified)). Call after
    /// [`Client::restore_contact`]; `false` if they are not a contact.
    pub fn restore_verified(&mut self, user: &str) -> bool {
        self.contact_mut(user).map(|p| p.verified = true).is_some()
    }

    /// A peer with a pinned key.
    pub(super) fn contact_mut(&mut self, user: &str) -> Option<&mut Peer> {
        self.peers
            .get_mut(user)
            .filter(|p| p.key.pinned().is_some())
    }

    /// Loads an outbox entry (a sealed message not yet delivered) from the database.
    pub fn restore_outbox(
        &mut self,
        to: &str,
        msg_id: u64,
        payload_b64: &str,
        attempts: u32,
        next_attempt_at_ms: u64,
    ) {
        self.outbox.insert(
            (to.to_owned(), msg_id),
            OutEntry {
                payload_b64: payload_b64.to_owned(),
                attempts,
                next_ms: next_attempt_at_ms,
                sent: attempts > 0,
                sig_b64: None,
                part: None,
            },
        );
    }

    /// Marks a restored outbox entry ([`Client::restore_outbox`]) as one part of a long
    /// text (`ClientDb`'s outbox entry's part). `false` if there is no such entry or the
    /// part does not name it.
    pub fn restore_part(&mut self, to: &str, msg_id: u64, part: Part) -> bool {
        let mark = Mark {
            of: part.of,
            index: part.index,
            count: part.count,
        };
        if mark.id() != Some(msg_id) || part.count < 2 || part.index >= part.count {
            return false;
        }
        match self.outbox.get_mut(&(to.to_owned(), msg_id)) {
            Some(entry) => {
                entry.part = Some(part);
                true
            }
            None => false,
        }
    }

    /// Loads a message that was written before its recipient's key was known (a
    /// `queued` history row with no outbox entry): it is sealed and queued once the
    /// lookup answers.
    /// A text longer than one datagram is split into its parts again, with the ids
    /// `msg_id`, `msg_id + 1`, ... it was given when written.
    pub fn restore_unsealed(&mut self, to: &str, msg_id: u64, text: &str) {
        let parts = self.split_for(to, text);
        for (id, part, mark) in part_ids(msg_id, &parts) {
            self.awaiting_key.insert(
                (to.to_owned(), id),
                AwaitingKey {
                    text: part.to_owned(),
                    part: mark,
                },
            );
        }
        self.request_resolve(to);
    }
}
