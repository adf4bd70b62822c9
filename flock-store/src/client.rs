//! The client database, `chats/<user>.db`: chat history, the sealed outbox, pinned
//! contact keys and duplicate suppression.
//!
//! Private at rest: message text, usernames and contact keys are stored sealed
//! (AES-256-GCM under a key derived from the user's password, see [`crate::atrest`]);
//! the columns SQL selects on (`peer`, `contacts.user`, `outbox.recipient`,
//! `seen_ids.sender`) hold keyed hashes of the names instead. The file is created `0600`.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::atrest::{DEFAULT_KDF, Field, KdfParams, RowCipher, SALT_LEN, random_fill};
use crate::error::{Result, StoreError, corrupt};
use crate::sql;
use crate::username::validate_username;

mod outbox;
mod rows;
mod schema;
#[allow(clippy::wildcard_imports)]
use rows::*;
use schema::{
    client_v1_original, client_v2_extended, client_v3_sealed, client_v4_authenticity,
    client_v5_parts, restrict_files, stored_kdf,
};

/// Default for [`ClientDb::with_seen_ids_per_sender`].
pub const DEFAULT_SEEN_IDS_PER_SENDER: u32 = 1024;

/// The local row id of a message in `messages` (not the protocol's `msg_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageRow(pub i64);

/// The row id of an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(pub i64);

/// Whether a message was received or sent by the local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from the peer.
    Incoming,
    /// Written by the local user.
    Outgoing,
}

/// Where a message stands; stored as [`MessageStatus::as_str`].
pub use flock_proto::client::{MessageStatus, Part};

/// One row of `messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Local row id (order of arrival in this database).
    pub id: MessageRow,
    /// Who wrote it.
    pub author: String,
    /// Who it was for.
    pub receiver: String,
    /// The plaintext (the local history is the one place plaintext is kept).
    pub text: String,
    /// When it was written or received, Unix milliseconds (the original's `date_time`).
    pub at_ms: i64,
    /// Local read flag; outgoing messages are stored as seen.
    pub seen: bool,
    /// The sender's per-message id, when the protocol carried one.
    pub msg_id: Option<u64>,
    /// Incoming or outgoing.
    pub direction: Direction,
    /// Delivery state.
    pub status: MessageStatus,
    /// Incoming: signed by the sender's pinned key. An unauthenticated message (the
    /// original's unsigned format, whose sender anyone could claim to be) stays marked
    /// so in the history for good. Outgoing messages are ours: always `true`.
    pub authenticated: bool,
}

impl Message {
    /// The other party of the conversation.
    pub fn peer(&self) -> &str {
        match self.direction {
            Direction::Incoming => &self.author,
            Direction::Outgoing => &self.receiver,
        }
    }
}

/// One line of the chats page: a conversation, its latest message and unread count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    /// The other party.
    pub peer: String,
    /// The most recent message in the conversation.
    pub last: Message,
    /// Incoming messages not yet marked seen.
    pub unread: u64,
}

/// A sealed message waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Outbox row id.
    pub id: OutboxId,
    /// Who it is for.
    pub recipient: String,
    /// The message's per-sender id (ours).
    pub msg_id: u64,
    /// The sealed payload, base64 (never plaintext).
    pub payload_b64: String,
    /// When it was queued, Unix milliseconds.
    pub created_at_ms: i64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, Unix milliseconds.
    pub next_attempt_at_ms: i64,
    /// The `messages` row whose status tracks this entry.
    pub message: MessageRow,
    /// For one part of a long text: which (the message's `msg_id` is [`Part::of`]).
    pub part: Option<Part>,
}

/// A pinned contact key, and a changed key awaiting the user's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The peer's username.
    pub user: String,
    /// The pinned public key (base64 of SPKI PEM, as on the wire).
    pub pubkey_b64: String,
    /// Its fingerprint, as computed by the caller.
    pub fingerprint: String,
    /// When it was pinned, Unix milliseconds.
    pub pinned_at_ms: i64,
    /// A different key seen for this user, not trusted until accepted.
    pub pending: Option<PendingKey>,
    /// They sign their messages (a signed message or acknowledgement verified with the
    /// pinned key): unsigned messages claiming to be from them are dropped.
    pub signs: bool,
    /// The local user compared safety numbers with them and marked them verified;
    /// cleared when their key changes.
    pub verified: bool,
}

/// A changed key seen for a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKey {
    /// The new public key.
    pub pubkey_b64: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// When it was first seen, Unix milliseconds.
    pub since_ms: i64,
}

/// What [`ClientDb::pin_contact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// First key for this user: pinned (trust on first use).
    Pinned,
    /// Same key as the pinned one.
    Unchanged,
    /// A different key: kept as pending, the pinned key stays in force.
    KeyChanged,
}

/// Delay before retry number `attempts + 1`: 1 s doubling per attempt, capped at 5 min.
///
/// A helper for callers computing `next_attempt_at_ms`; the database only stores it.
pub fn retry_delay_ms(attempts: u32) -> i64 {
    const BASE_MS: i64 = 1_000;
    const MAX_MS: i64 = 300_000;
    BASE_MS
        .checked_shl(attempts.min(16))
        .map_or(MAX_MS, |d| d.min(MAX_MS))
}

/// A client's database.
///
/// Writes that touch several rows (queueing, delivery, duplicate-checked receive) run in
/// one transaction each. Every query that can grow takes a `limit`.
///
/// ```
/// use flock_store::{ClientDb, MessageStatus, retry_delay_ms};
///
/// # fn main() -> Result<(), flock_store::StoreError> {
/// let mut db = ClientDb::open_in_memory("alice")?;
/// // Incoming, with duplicate suppression on the sender's message id.
/// assert!(db.insert_incoming_once("bob", "hi alice", 1, 1_000, true)?.is_some());
/// assert!(db.insert_incoming_once("bob", "hi alice", 1, 1_001, true)?.is_none());
///
/// // Outgoing while bob is offline: only the sealed payload is queued.
/// let (row, entry) = db.queue_outgoing("bob", "hello", 7, "c2VhbGVk", 2_000)?;
/// let due = db.outbox_due(2_000, 32)?;
/// assert_eq!(due[0].id, entry);
/// db.outbox_mark_attempt(entry, 2_000 + retry_delay_ms(0))?;
/// db.delivered("bob", 7)?; // bob acknowledged msg_id 7
/// assert_eq!(db.message(row)?.map(|m| m.status), Some(MessageStatus::Delivered));
///
/// let chats = db.chats(50)?;
/// assert_eq!((chats[0].peer.as_str(), chats[0].unread), ("bob", 1));
/// # Ok(())
/// # }
/// ```
pub struct ClientDb {
    conn: Connection,
    cipher: RowCipher,
    me: String,
    seen_ids_per_sender: u32,
}

/// Where the database's keys come from.
enum Unlock<'a> {
    /// Derived from the password and the salt stored in the file.
    Password(&'a str),
    /// Random (in memory: nothing is at rest).
    Random,
}

/// Mode of the database file (SQLite gives its `-wal` and `-shm` files the same).
const DB_MODE: u32 = 0o600;
/// What the `check` value in `meta` seals: opening it proves the password.
const CHECK_PLAINTEXT: &str = "flock client database";

impl ClientDb {
    /// The schema version this build writes; older files are migrated on open.
    pub const SCHEMA_VERSION: i64 = 5;

    /// Opens or creates `chats/<me>.db` at `path` for user `me`, unlocking it with
    /// `password` (the user's password: a new file takes a fresh salt), migrating it.
    ///
    /// The file and its `-wal`/`-shm` companions are made `0600`. A file from the
    /// original implementation is upgraded in place: its messages keep their ids, and
    /// its plaintext `pending_messages` become outgoing messages with status
    /// [`MessageStatus::Failed`] (shown to the user, who may resend) and the plaintext
    /// queue is dropped. Plaintext rows of an older file are sealed and the file is
    /// vacuumed, so no plaintext stays behind in free pages. Opening another user's file
    /// is refused, and a wrong password is [`StoreError::WrongPassword`].
    pub fn open(path: impl AsRef<Path>, me: &str, password: &str) -> Result<Self> {
        validate_username(me)?;
        let path = path.as_ref();
        restrict_files(path)?;
        Self::init(sql::open_file(path)?, me, Unlock::Password(password))
    }

    /// A private in-memory database for user `me` (sealed under a random key).
    pub fn open_in_memory(me: &str) -> Result<Self> {
        validate_username(me)?;
        Self::init(sql::open_memory()?, me, Unlock::Random)
    }

    fn init(mut conn: Connection, me: &str, unlock: Unlock<'_>) -> Result<Self> {
        // Overwrite deleted content, so an old plaintext row does not linger in a page.
        conn.pragma_update(None, "secure_delete", true)?;
        let (kdf, salt) = match stored_kdf(&conn)? {
            Some(stored) => stored,
            None => {
                let mut salt = vec![0u8; SALT_LEN];
                random_fill(&mut salt)?;
                (DEFAULT_KDF, salt)
            }
        };
        let cipher = match unlock {
            Unlock::Password(password) => RowCipher::derive(password, &salt, kdf)?,
            Unlock::Random => RowCipher::random()?,
        };
        let sealed_rows = Cell::new(false);
        sql::migrate(
            &mut conn,
            &[
                &client_v1_original,
                &|tx| client_v2_extended(tx, me),
                &|tx| client_v3_sealed(tx, &cipher, kdf, &salt, &sealed_rows),
                &client_v4_authenticity,
                &client_v5_parts,
            ],
        )?;
        let check: Vec<u8> = conn
            .query_row("SELECT value FROM meta WHERE key = 'check'", [], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| corrupt("meta", "no password check value"))?;
        if !matches!(cipher.open("meta", Field::Check, &check), Ok(t) if t == CHECK_PLAINTEXT) {
            return Err(StoreError::WrongPassword);
        }
        if sealed_rows.get() {
            // The plaintext the migration replaced: out of free pages and the WAL.
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        }
        let owner: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'owner'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match owner {
            Some(found) if found != me => {
                return Err(StoreError::WrongOwner {
                    expected: me.to_owned(),
                    found,
                });
            }
            Some(_) => {}
            None => {
                conn.execute("INSERT INTO meta (key, value) VALUES ('owner', ?1)", [me])?;
            }
        }
        Ok(Self {
            conn,
            cipher,
            me: me.to_owned(),
            seen_ids_per_sender: DEFAULT_SEEN_IDS_PER_SENDER,
        })
    }

    /// Keeps at most `n` (at least 1) remembered message ids per sender for duplicate
    /// suppression; older ones are pruned on insert.
    pub fn with_seen_ids_per_sender(mut self, n: u32) -> Self {
        self.seen_ids_per_sender = n.max(1);
        self
    }

    /// The local user.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<i64> {
        sql::schema_version(&self.conn)
    }

    /// `PRAGMA integrity_check`: `true` when SQLite reports `ok`.
    pub fn integrity_check(&self) -> Result<bool> {
        sql::integrity_check(&self.conn)
    }

    // ---- messages -------------------------------------------------------------------

    /// Stores a message received from `from`, unread; `authenticated`: signed by their
    /// pinned key (see [`Message::authenticated`]).
    pub fn insert_incoming(
        &mut self,
        from: &str,
        text: &str,
        msg_id: Option<u64>,
        at_ms: i64,
        authenticated: bool,
    ) -> Result<MessageRow> {
        insert_message(
            &self.conn,
            &self.cipher,
            from,
            &self.me,
            text,
            at_ms,
            msg_id,
            IN,
            MessageStatus::Received,
            authenticated,
        )
    }

    /// Stores a received message unless `(from, msg_id)` was seen before, in one
    /// transaction with the duplicate check: `None` for a duplicate.
    pub fn insert_incoming_once(
        &mut self,
        from: &str,
        text: &str,
        msg_id: u64,
        at_ms: i64,
        authenticated: bool,
    ) -> Result<Option<MessageRow>> {
        let keep = self.seen_ids_per_sender;
        let tx = immediate(&mut self.conn)?;
        if !seen_insert(&tx, &self.cipher, from, msg_id, at_ms, keep)? {
            return Ok(None);
        }
        let row = insert_message(
            &tx,
            &self.cipher,
            from,
            &self.me,
            text,
            at_ms,
            Some(msg_id),
            IN,
            MessageStatus::Received,
            authenticated,
        )?;
        tx.commit()?;
        Ok(Some(row))
    }

    /// Stores a message the local user wrote to `to` (stored as seen).
    pub fn insert_outgoing(
        &mut self,
        to: &str,
        text: &str,
        msg_id: Option<u64>,
        status: MessageStatus,
        at_ms: i64,
    ) -> Result<MessageRow> {
        insert_message(
            &self.conn,
            &self.cipher,
            &self.me,
            to,
            text,
            at_ms,
            msg_id,
            OUT,
            status,
            true,
        )
    }

    /// One message by local row id.
    pub fn message(&self, id: MessageRow) -> Result<Option<Message>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"
        ))?;
        let mut rows = stmt.query([id.0])?;
        rows.next()?
            .map(|r| message_from_row(&self.cipher, r))
            .transpose()
    }

    /// Sets a message's delivery status.
    pub fn set_status(&mut self, id: MessageRow, status: MessageStatus) -> Result<()> {
        let n = self
            .conn
            .prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
            .execute(params![id.0, status.as_str()])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("message {}", id.0)));
        }
        Ok(())
    }

    /// The last `limit` messages with `peer`, oldest first.
    pub fn history(&self, peer: &str, limit: u32) -> Result<Vec<Message>> {
        self.history_before(peer, MessageRow(i64::MAX), limit)
    }

    /// The last `limit` messages with `peer` older than `before`, oldest first (paging
    /// back through a long conversation).
    pub fn history_before(
        &self,
        peer: &str,
        before: MessageRow,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE peer = ?1 AND id < ?2 \
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let mut rows = stmt.query(params![self.cipher.blind(peer), before.0, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(message_from_row(&self.cipher, row)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Marks every incoming message from `peer` as seen; returns how many changed.
    pub fn mark_seen(&mut self, peer: &str) -> Result<u64> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE messages SET seen = 1 WHERE peer = ?1 AND direction = 'in' AND seen = 0",
            )?
            .execute([self.cipher.blind(peer)])?;
        Ok(n as u64)
    }

    /// Unread incoming messages from `peer`.
    pub fn unread_count(&self, peer: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE peer = ?1 AND direction = 'in' AND seen = 0",
            )?
            .query_row([self.cipher.blind(peer)], |r| r.get(0))?;
        u64::try_from(n).map_err(|_| corrupt("messages", format!("negative count {n}")))
    }

    /// The chats page: up to `limit` conversations, most recent first, each with its
    /// last message and unread count.
    pub fn chats(&self, limit: u32) -> Result<Vec<ChatSummary>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, \
               (SELECT COUNT(*) FROM messages u \
                 WHERE u.peer = m.peer AND u.direction = 'in' AND u.seen = 0) \
             FROM messages m \
             WHERE m.id IN (SELECT MAX(id) FROM messages GROUP BY peer) \
             ORDER BY m.id DESC LIMIT ?1"
        ))?;
        let mut rows = stmt.query([limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let last = message_from_row(&self.cipher, row)?;
            let unread = sql::uint(row, MESSAGE_COLUMN_COUNT, "messages")?;
            out.push(ChatSummary {
                peer: last.peer().to_owned(),
                last,
                unread,
            });
        }
        Ok(out)
    }

    // ---- contacts -------------------------------------------------------------------

    /// Trust on first use: pins `pubkey_b64` for `user` if no key is pinned; a different
    /// key is stored as pending (the pinned key stays in force until
    /// [`Self::accept_pending_key`]).
    pub fn pin_contact(
        &mut self,
        user: &str,
        pubkey_b64: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<PinOutcome> {
        let c = &self.cipher;
        let tx = immediate(&mut self.conn)?;
        let pinned: Option<Vec<u8>> = tx
            .prepare_cached("SELECT pubkey_b64 FROM contacts WHERE user = ?1")?
            .query_row([c.blind(user)], |r| r.get(0))
            .optional()?;
        let pinned = pinned
            .map(|k| c.open("contacts", Field::Key, &k))
            .transpose()?;
        let outcome = match pinned {
            None => {
                tx.prepare_cached(
                    "INSERT INTO contacts (user, name, pubkey_b64, fingerprint, pinned_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    c.blind(user),
                    c.seal(Field::Name, user)?,
                    c.seal(Field::Key, pubkey_b64)?,
                    c.seal(Field::Fingerprint, fingerprint)?,
                    now_ms
                ])?;
                PinOutcome::Pinned
            }
            Some(key) if key == pubkey_b64 => PinOutcome::Unchanged,
            Some(_) => {
                set_pending(&tx, c, user, pubkey_b64, fingerprint, now_ms)?;
                PinOutcome::KeyChanged
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// A contact and its pinned (and pending) key.
    pub fn contact(&self, user: &str) -> Result<Option<Contact>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE user = ?1"
        ))?;
        let mut rows = stmt.query([self.cipher.blind(user)])?;
        rows.next()?
            .map(|r| contact_from_row(&self.cipher, r))
            .transpose()
    }

    /// Up to `limit` contacts, ordered by username (the names are sealed: which
    /// `limit` contacts of a longer list is unspecified).
    pub fn contacts(&self, limit: u32) -> Result<Vec<Contact>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY user LIMIT ?1"
        ))?;
        let mut rows = stmt.query([limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(contact_from_row(&self.cipher, row)?);
        }
        out.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(out)
    }

    /// Records a changed key for an existing contact, awaiting acceptance.
    pub fn set_pending_key(
        &mut self,
        user: &str,
        pubkey_b64: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<()> {
        let tx = immediate(&mut self.conn)?;
        set_pending(&tx, &self.cipher, user, pubkey_b64, fingerprint, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// The user accepted the pending key: it becomes the pinned key. `false` if there
    /// was no pending key.
    pub fn accept_pending_key(&mut self, user: &str, now_ms: i64) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE contacts SET pubkey_b64 = pending_pubkey_b64, \
                 fingerprint = pending_fingerprint, pinned_at = ?2, signs = 0, verified = 0, \
                 pending_pubkey_b64 = NULL, pending_fingerprint = NULL, pending_since = NULL \
                 WHERE user = ?1 AND pending_pubkey_b64 IS NOT NULL",
            )?
            .execute(params![self.cipher.blind(user), now_ms])?;
        Ok(n > 0)
    }

    /// The user rejected the pending key: forget it. `false` if there was none.
    pub fn reject_pending_key(&mut self, user: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE contacts SET pending_pubkey_b64 = NULL, pending_fingerprint = NULL, \
                 pending_since = NULL WHERE user = ?1 AND pending_pubkey_b64 IS NOT NULL",
            )?
            .execute([self.cipher.blind(user)])?;
        Ok(n > 0)
    }

    /// `user` signs their messages (a verified signed message or acknowledgement):
    /// from now on, across restarts, unsigned messages claiming to be from them are
    /// dropped. Until their key is accepted as changed. `false` if `user` is no contact.
    pub fn set_signs(&mut self, user: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE contacts SET signs = 1 WHERE user = ?1")?
            .execute([self.cipher.blind(user)])?;
        Ok(n > 0)
    }

    /// Marks `user` verified (the local user compared safety numbers) or not. Accepting
    /// a changed key clears it. `false` if `user` is no contact.
    pub fn set_verified(&mut self, user: &str, verified: bool) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE contacts SET verified = ?2 WHERE user = ?1")?
            .execute(params![self.cipher.blind(user), verified])?;
        Ok(n > 0)
    }

    // ---- duplicate suppression ------------------------------------------------------

    /// Remembers `(sender, msg_id)`; `true` the first time, `false` for a duplicate.
    /// Keeps the newest [`Self::with_seen_ids_per_sender`] ids per sender.
    pub fn check_and_insert_seen(
        &mut self,
        sender: &str,
        msg_id: u64,
        now_ms: i64,
    ) -> Result<bool> {
        let keep = self.seen_ids_per_sender;
        let tx = immediate(&mut self.conn)?;
        let fresh = seen_insert(&tx, &self.cipher, sender, msg_id, now_ms, keep)?;
        tx.commit()?;
        Ok(fresh)
    }

    /// How many ids are remembered for `sender`.
    pub fn seen_ids_count(&self, sender: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM seen_ids WHERE sender = ?1")?
            .query_row([self.cipher.blind(sender)], |r| r.get(0))?;
        u64::try_from(n).map_err(|_| corrupt("seen_ids", format!("negative count {n}")))
    }
}

impl std::fmt::Debug for ClientDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDb")
            .field("me", &self.me)
            .field("path", &self.conn.path())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column keeps the names of `MessageStatus::as_str`, which the schema's
    /// `CHECK` accepts, and reads each back as the same status.
    #[test]
    fn every_status_is_stored_by_its_name() {
        let mut db = ClientDb::open_in_memory("alice").unwrap();
        let row = db
            .insert_outgoing("bob", "hi", Some(1), MessageStatus::Queued, 1_000)
            .unwrap();
        for status in MessageStatus::ALL {
            db.set_status(row, status).unwrap();
            let stored: String = db
                .conn
                .query_row("SELECT status FROM messages WHERE id = ?1", [row.0], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(stored, status.as_str());
            assert_eq!(db.message(row).unwrap().map(|m| m.status), Some(status));
        }
    }
}
