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
pub use flock_proto::client::MessageStatus;

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
    pub const SCHEMA_VERSION: i64 = 4;

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

    // ---- outbox ---------------------------------------------------------------------

    /// Stores an outgoing message as [`MessageStatus::Queued`] and its sealed payload in
    /// the outbox, due at once, in one transaction.
    pub fn queue_outgoing(
        &mut self,
        to: &str,
        text: &str,
        msg_id: u64,
        payload_b64: &str,
        now_ms: i64,
    ) -> Result<(MessageRow, OutboxId)> {
        let tx = immediate(&mut self.conn)?;
        let row = insert_message(
            &tx,
            &self.cipher,
            &self.me,
            to,
            text,
            now_ms,
            Some(msg_id),
            OUT,
            MessageStatus::Queued,
            true,
        )?;
        let id = outbox_insert(
            &tx,
            &self.cipher,
            row,
            to,
            msg_id,
            payload_b64,
            now_ms,
            now_ms,
        )?;
        tx.commit()?;
        Ok((row, id))
    }

    /// Adds a sealed payload for an existing `messages` row to the outbox and marks the
    /// message [`MessageStatus::Queued`].
    pub fn outbox_enqueue(
        &mut self,
        message: MessageRow,
        recipient: &str,
        msg_id: u64,
        payload_b64: &str,
        now_ms: i64,
        next_attempt_at_ms: i64,
    ) -> Result<OutboxId> {
        let tx = immediate(&mut self.conn)?;
        let n = tx
            .prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
            .execute(params![message.0, MessageStatus::Queued.as_str()])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("message {}", message.0)));
        }
        let id = outbox_insert(
            &tx,
            &self.cipher,
            message,
            recipient,
            msg_id,
            payload_b64,
            now_ms,
            next_attempt_at_ms,
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Up to `limit` entries due at `now_ms`, earliest due first.
    pub fn outbox_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM {OUTBOX_JOIN} WHERE o.next_attempt_at <= ?1 \
             ORDER BY o.next_attempt_at, o.id LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![now_ms, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(outbox_from_row(&self.cipher, row)?);
        }
        Ok(out)
    }

    /// One outbox entry.
    pub fn outbox_get(&self, id: OutboxId) -> Result<Option<OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM {OUTBOX_JOIN} WHERE o.id = ?1"
        ))?;
        let mut rows = stmt.query([id.0])?;
        rows.next()?
            .map(|r| outbox_from_row(&self.cipher, r))
            .transpose()
    }

    /// Entries in the outbox.
    pub fn outbox_len(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM outbox")?
            .query_row([], |r| r.get(0))?;
        u64::try_from(n).map_err(|_| corrupt("outbox", format!("negative count {n}")))
    }

    /// Records a delivery attempt: `attempts += 1` and the next attempt's time (see
    /// [`retry_delay_ms`]). Returns the new attempt count.
    pub fn outbox_mark_attempt(&mut self, id: OutboxId, next_attempt_at_ms: i64) -> Result<u32> {
        let attempts: Option<i64> = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2 \
                 WHERE id = ?1 RETURNING attempts",
            )?
            .query_row(params![id.0, next_attempt_at_ms], |r| r.get(0))
            .optional()?;
        let attempts = attempts.ok_or_else(|| StoreError::NotFound(format!("outbox {}", id.0)))?;
        u32::try_from(attempts).map_err(|_| corrupt("outbox", format!("attempts {attempts}")))
    }

    /// The peer acknowledged the entry: remove it and mark its message delivered.
    pub fn outbox_delivered(&mut self, id: OutboxId) -> Result<()> {
        self.outbox_finish(id, MessageStatus::Delivered)
    }

    /// Give up on the entry: remove it and mark its message failed (the user sees it).
    pub fn outbox_give_up(&mut self, id: OutboxId) -> Result<()> {
        self.outbox_finish(id, MessageStatus::Failed)
    }

    /// A delivery acknowledgement for our message `msg_id` to `recipient`: marks the
    /// message delivered and removes any outbox entry for it. `false` when no such
    /// outgoing message exists (an unknown or repeated acknowledgement changes nothing
    /// beyond the first).
    pub fn delivered(&mut self, recipient: &str, msg_id: u64) -> Result<bool> {
        let recipient = self.cipher.blind(recipient);
        let tx = immediate(&mut self.conn)?;
        tx.prepare_cached("DELETE FROM outbox WHERE recipient = ?1 AND msg_id = ?2")?
            .execute(params![recipient, msg_id_to_sql(msg_id)])?;
        let n = tx
            .prepare_cached(
                "UPDATE messages SET status = ?3 \
                 WHERE peer = ?1 AND msg_id = ?2 AND direction = 'out'",
            )?
            .execute(params![
                recipient,
                msg_id_to_sql(msg_id),
                MessageStatus::Delivered.as_str()
            ])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn outbox_finish(&mut self, id: OutboxId, status: MessageStatus) -> Result<()> {
        let tx = immediate(&mut self.conn)?;
        let message: Option<i64> = tx
            .prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING message_id")?
            .query_row([id.0], |r| r.get(0))
            .optional()?;
        let message = message.ok_or_else(|| StoreError::NotFound(format!("outbox {}", id.0)))?;
        tx.prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
            .execute(params![message, status.as_str()])?;
        tx.commit()?;
        Ok(())
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

// ---- helpers ------------------------------------------------------------------------

/// Write transactions take the lock up front, so they never fail half-way on a
/// read-to-write lock upgrade.
fn immediate(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

const IN: &str = "in";
const OUT: &str = "out";

const MESSAGE_COLUMNS: &str =
    "id, author, receiver, text, date_time, seen, msg_id, direction, status, authenticated";
const MESSAGE_COLUMN_COUNT: usize = 10;
/// The outbox with its message, whose sealed `receiver` names the recipient.
const OUTBOX_JOIN: &str = "outbox o JOIN messages m ON m.id = o.message_id";
const OUTBOX_COLUMNS: &str = "o.id, m.receiver, o.msg_id, o.payload_b64, o.created_at, \
     o.attempts, o.next_attempt_at, o.message_id";
const CONTACT_COLUMNS: &str = "name, pubkey_b64, fingerprint, pinned_at, \
     pending_pubkey_b64, pending_fingerprint, pending_since, signs, verified";

/// A sealed column (a BLOB from [`RowCipher::seal`]), opened.
fn sealed(
    c: &RowCipher,
    row: &Row<'_>,
    idx: usize,
    table: &'static str,
    field: Field,
) -> Result<String> {
    match row.get_ref(idx)? {
        ValueRef::Blob(bytes) => c.open(table, field, bytes),
        other => Err(corrupt(
            table,
            format!(
                "column {idx}: expected a sealed value, found {:?}",
                other.data_type()
            ),
        )),
    }
}

/// A nullable sealed column.
fn opt_sealed(
    c: &RowCipher,
    row: &Row<'_>,
    idx: usize,
    table: &'static str,
    field: Field,
) -> Result<Option<String>> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        _ => sealed(c, row, idx, table, field).map(Some),
    }
}

/// Message ids are any `u64`; SQLite integers are `i64`: store the same 64 bits.
fn msg_id_to_sql(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

fn msg_id_from_sql(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

#[allow(clippy::too_many_arguments)]
fn insert_message(
    conn: &Connection,
    c: &RowCipher,
    author: &str,
    receiver: &str,
    text: &str,
    at_ms: i64,
    msg_id: Option<u64>,
    direction: &str,
    status: MessageStatus,
    authenticated: bool,
) -> Result<MessageRow> {
    let (peer, seen) = if direction == IN {
        (author, false)
    } else {
        (receiver, true)
    };
    conn.prepare_cached(
        "INSERT INTO messages \
         (author, receiver, text, date_time, seen, msg_id, direction, status, peer, \
          authenticated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        c.seal(Field::Name, author)?,
        c.seal(Field::Name, receiver)?,
        c.seal(Field::Text, text)?,
        at_ms,
        seen,
        msg_id.map(msg_id_to_sql),
        direction,
        status.as_str(),
        c.blind(peer),
        authenticated
    ])?;
    Ok(MessageRow(conn.last_insert_rowid()))
}

#[allow(clippy::too_many_arguments)]
fn outbox_insert(
    conn: &Connection,
    c: &RowCipher,
    message: MessageRow,
    recipient: &str,
    msg_id: u64,
    payload_b64: &str,
    now_ms: i64,
    next_attempt_at_ms: i64,
) -> Result<OutboxId> {
    conn.prepare_cached(
        "INSERT INTO outbox \
         (recipient, msg_id, payload_b64, created_at, attempts, next_attempt_at, message_id) \
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
    )?
    .execute(params![
        c.blind(recipient),
        msg_id_to_sql(msg_id),
        payload_b64,
        now_ms,
        next_attempt_at_ms,
        message.0
    ])?;
    Ok(OutboxId(conn.last_insert_rowid()))
}

fn set_pending(
    conn: &Connection,
    c: &RowCipher,
    user: &str,
    pubkey_b64: &str,
    fingerprint: &str,
    now_ms: i64,
) -> Result<()> {
    let blind = c.blind(user);
    let current: Option<(Option<Vec<u8>>, Option<i64>)> = conn
        .prepare_cached("SELECT pending_pubkey_b64, pending_since FROM contacts WHERE user = ?1")?
        .query_row([&blind], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((pending, since)) = current else {
        return Err(StoreError::NotFound(format!("contact {user:?}")));
    };
    // Keep the first-seen time when the same changed key is reported again.
    let same = match pending {
        Some(k) => c.open("contacts", Field::Key, &k)? == pubkey_b64,
        None => false,
    };
    let since = match since {
        Some(t) if same => t,
        _ => now_ms,
    };
    conn.prepare_cached(
        "UPDATE contacts SET pending_since = ?4, pending_pubkey_b64 = ?2, \
         pending_fingerprint = ?3 WHERE user = ?1",
    )?
    .execute(params![
        blind,
        c.seal(Field::Key, pubkey_b64)?,
        c.seal(Field::Fingerprint, fingerprint)?,
        since
    ])?;
    Ok(())
}

fn seen_insert(
    conn: &Connection,
    c: &RowCipher,
    sender: &str,
    msg_id: u64,
    now_ms: i64,
    keep: u32,
) -> Result<bool> {
    let sender = c.blind(sender);
    let n = conn
        .prepare_cached(
            "INSERT INTO seen_ids (sender, msg_id, seen_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (sender, msg_id) DO NOTHING",
        )?
        .execute(params![sender, msg_id_to_sql(msg_id), now_ms])?;
    if n == 0 {
        return Ok(false);
    }
    // Keep the newest `keep`: delete the (keep+1)-th newest and everything older.
    conn.prepare_cached(
        "DELETE FROM seen_ids WHERE sender = ?1 AND seq <= \
         (SELECT seq FROM seen_ids WHERE sender = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![sender, keep])?;
    Ok(true)
}

fn message_from_row(c: &RowCipher, row: &Row<'_>) -> Result<Message> {
    const T: &str = "messages";
    let direction = match sql::text(row, 7, T)?.as_str() {
        IN => Direction::Incoming,
        OUT => Direction::Outgoing,
        other => return Err(corrupt(T, format!("direction {other:?}"))),
    };
    let status = sql::text(row, 8, T)?
        .parse::<MessageStatus>()
        .map_err(|e| corrupt(T, e.to_string()))?;
    Ok(Message {
        id: MessageRow(sql::int(row, 0, T)?),
        author: sealed(c, row, 1, T, Field::Name)?,
        receiver: sealed(c, row, 2, T, Field::Name)?,
        text: sealed(c, row, 3, T, Field::Text)?,
        at_ms: sql::int(row, 4, T)?,
        seen: sql::int(row, 5, T)? != 0,
        msg_id: sql::opt_int(row, 6, T)?.map(msg_id_from_sql),
        direction,
        status,
        authenticated: sql::int(row, 9, T)? != 0,
    })
}

fn outbox_from_row(c: &RowCipher, row: &Row<'_>) -> Result<OutboxEntry> {
    const T: &str = "outbox";
    let attempts = sql::int(row, 5, T)?;
    Ok(OutboxEntry {
        id: OutboxId(sql::int(row, 0, T)?),
        recipient: sealed(c, row, 1, T, Field::Name)?,
        msg_id: msg_id_from_sql(sql::int(row, 2, T)?),
        payload_b64: sql::text(row, 3, T)?,
        created_at_ms: sql::int(row, 4, T)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(T, format!("attempts {attempts}")))?,
        next_attempt_at_ms: sql::int(row, 6, T)?,
        message: MessageRow(sql::int(row, 7, T)?),
    })
}

fn contact_from_row(c: &RowCipher, row: &Row<'_>) -> Result<Contact> {
    const T: &str = "contacts";
    let pending = match (
        opt_sealed(c, row, 4, T, Field::Key)?,
        opt_sealed(c, row, 5, T, Field::Fingerprint)?,
        sql::opt_int(row, 6, T)?,
    ) {
        (None, None, None) => None,
        (Some(pubkey_b64), Some(fingerprint), Some(since_ms)) => Some(PendingKey {
            pubkey_b64,
            fingerprint,
            since_ms,
        }),
        _ => return Err(corrupt(T, "partial pending key")),
    };
    Ok(Contact {
        user: sealed(c, row, 0, T, Field::Name)?,
        pubkey_b64: sealed(c, row, 1, T, Field::Key)?,
        fingerprint: sealed(c, row, 2, T, Field::Fingerprint)?,
        pinned_at_ms: sql::int(row, 3, T)?,
        pending,
        signs: sql::int(row, 7, T)? != 0,
        verified: sql::int(row, 8, T)? != 0,
    })
}

// ---- schema -------------------------------------------------------------------------

/// Schema 1: the original client's tables (`IF NOT EXISTS` adopts an original file).
fn client_v1_original(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS messages (
             id        INTEGER PRIMARY KEY AUTOINCREMENT,
             author    TEXT NOT NULL,
             receiver  TEXT NOT NULL,
             text      TEXT NOT NULL,
             date_time DATETIME DEFAULT CURRENT_TIMESTAMP,
             seen      BOOLEAN DEFAULT 0
         );
         CREATE TABLE IF NOT EXISTS pending_messages (
             id         INTEGER PRIMARY KEY AUTOINCREMENT,
             recipient  TEXT NOT NULL,
             payload    TEXT NOT NULL,
             created_at DATETIME DEFAULT CURRENT_TIMESTAMP
         );",
    )?;
    Ok(())
}

/// SQL turning an original timestamp column (text `YYYY-MM-DD HH:MM:SS[.fff]`, or Unix
/// seconds as a number) into Unix milliseconds; 0 when unreadable.
fn legacy_ms(column: &str) -> String {
    format!(
        "CASE typeof({column}) \
           WHEN 'text' THEN COALESCE(CAST(ROUND((julianday({column}) - 2440587.5) * 86400000) \
                                     AS INTEGER), 0) \
           WHEN 'integer' THEN {column} * 1000 \
           WHEN 'real' THEN CAST(ROUND({column} * 1000) AS INTEGER) \
           ELSE 0 END"
    )
}

/// Schema 2: the extended messages table (ids, direction, status, peer, times in ms),
/// the sealed outbox, pinned contacts, seen ids, and the owner record.
fn client_v2_extended(tx: &Transaction<'_>, me: &str) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE messages_v2 (
             id        INTEGER PRIMARY KEY AUTOINCREMENT,
             author    TEXT NOT NULL,
             receiver  TEXT NOT NULL,
             text      TEXT NOT NULL,
             date_time INTEGER NOT NULL,
             seen      INTEGER NOT NULL DEFAULT 0,
             msg_id    INTEGER,
             direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
             status    TEXT NOT NULL
                       CHECK (status IN ('received', 'queued', 'sent', 'delivered', 'failed')),
             peer      TEXT NOT NULL
         );",
    )?;
    tx.execute(
        &format!(
            "INSERT INTO messages_v2
                 (id, author, receiver, text, date_time, seen, msg_id, direction, status, peer)
             SELECT id, author, receiver, text, {}, COALESCE(seen, 0) <> 0, NULL,
                    CASE WHEN author = ?1 THEN 'out' ELSE 'in' END,
                    CASE WHEN author = ?1 THEN 'sent' ELSE 'received' END,
                    CASE WHEN author = ?1 THEN receiver ELSE author END
             FROM messages ORDER BY id",
            legacy_ms("date_time")
        ),
        [me],
    )?;
    // The original queued plaintext; we queue only sealed payloads. Its queued messages
    // become visible failed messages (the user can resend), and the plaintext queue goes.
    tx.execute(
        &format!(
            "INSERT INTO messages_v2
                 (author, receiver, text, date_time, seen, msg_id, direction, status, peer)
             SELECT ?1, recipient, payload, {}, 1, NULL, 'out', 'failed', recipient
             FROM pending_messages ORDER BY id",
            legacy_ms("created_at")
        ),
        [me],
    )?;
    tx.execute_batch(
        "DROP TABLE messages;
         DROP TABLE pending_messages;
         ALTER TABLE messages_v2 RENAME TO messages;
         CREATE INDEX messages_peer ON messages (peer, id);
         CREATE INDEX messages_unread ON messages (peer) WHERE direction = 'in' AND seen = 0;
         CREATE INDEX messages_msg_id ON messages (peer, msg_id) WHERE msg_id IS NOT NULL;

         CREATE TABLE outbox (
             id              INTEGER PRIMARY KEY AUTOINCREMENT,
             recipient       TEXT NOT NULL,
             msg_id          INTEGER NOT NULL,
             payload_b64     TEXT NOT NULL,
             created_at      INTEGER NOT NULL,
             attempts        INTEGER NOT NULL DEFAULT 0,
             next_attempt_at INTEGER NOT NULL,
             message_id      INTEGER NOT NULL UNIQUE
                             REFERENCES messages (id) ON DELETE CASCADE,
             UNIQUE (recipient, msg_id)
         );
         CREATE INDEX outbox_due ON outbox (next_attempt_at, id);

         CREATE TABLE contacts (
             user                TEXT PRIMARY KEY,
             pubkey_b64          TEXT NOT NULL,
             fingerprint         TEXT NOT NULL,
             pinned_at           INTEGER NOT NULL,
             pending_pubkey_b64  TEXT,
             pending_fingerprint TEXT,
             pending_since       INTEGER
         );

         CREATE TABLE seen_ids (
             seq     INTEGER PRIMARY KEY AUTOINCREMENT,
             sender  TEXT NOT NULL,
             msg_id  INTEGER NOT NULL,
             seen_at INTEGER NOT NULL,
             UNIQUE (sender, msg_id)
         );
         CREATE INDEX seen_ids_sender ON seen_ids (sender, seq);

         CREATE TABLE meta (
             key   TEXT PRIMARY KEY,
             value TEXT NOT NULL
         );",
    )?;
    tx.execute("INSERT INTO meta (key, value) VALUES ('owner', ?1)", [me])?;
    Ok(())
}

/// Schema 3: private at rest. Seals every stored message text and username and every
/// contact key (a `name` column holds the contact's sealed username), replaces the
/// names SQL selects on by blind indexes, and records the key derivation (`kdf`,
/// `salt`) and a password check value in `meta`. Sets `sealed_rows` when it converted
/// existing rows (the caller then vacuums the old plaintext away).
fn client_v3_sealed(
    tx: &Transaction<'_>,
    c: &RowCipher,
    kdf: KdfParams,
    salt: &[u8],
    sealed_rows: &Cell<bool>,
) -> Result<()> {
    let mut converted = 0usize;
    {
        let mut read = tx.prepare("SELECT id, author, receiver, text, peer FROM messages")?;
        let mut write = tx.prepare(
            "UPDATE messages SET author = ?2, receiver = ?3, text = ?4, peer = ?5 WHERE id = ?1",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            const T: &str = "messages";
            write.execute(params![
                sql::int(row, 0, T)?,
                c.seal(Field::Name, &sql::text(row, 1, T)?)?,
                c.seal(Field::Name, &sql::text(row, 2, T)?)?,
                c.seal(Field::Text, &sql::text(row, 3, T)?)?,
                c.blind(&sql::text(row, 4, T)?),
            ])?;
            converted += 1;
        }
    }
    tx.execute_batch("ALTER TABLE contacts ADD COLUMN name BLOB;")?;
    {
        let mut read = tx.prepare(
            "SELECT user, pubkey_b64, fingerprint, pending_pubkey_b64, pending_fingerprint \
             FROM contacts",
        )?;
        let mut write = tx.prepare(
            "UPDATE contacts SET user = ?2, name = ?3, pubkey_b64 = ?4, fingerprint = ?5, \
             pending_pubkey_b64 = ?6, pending_fingerprint = ?7 WHERE user = ?1",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            const T: &str = "contacts";
            let user = sql::text(row, 0, T)?;
            let pending_key = sql::opt_text(row, 3, T)?;
            let pending_fp = sql::opt_text(row, 4, T)?;
            write.execute(params![
                user,
                c.blind(&user),
                c.seal(Field::Name, &user)?,
                c.seal(Field::Key, &sql::text(row, 1, T)?)?,
                c.seal(Field::Fingerprint, &sql::text(row, 2, T)?)?,
                pending_key.map(|k| c.seal(Field::Key, &k)).transpose()?,
                pending_fp
                    .map(|f| c.seal(Field::Fingerprint, &f))
                    .transpose()?,
            ])?;
            converted += 1;
        }
    }
    for (table, column) in [("outbox", "recipient"), ("seen_ids", "sender")] {
        let names: Vec<String> = {
            let mut read = tx.prepare(&format!("SELECT DISTINCT {column} FROM {table}"))?;
            let mut rows = read.query([])?;
            let mut names = Vec::new();
            while let Some(row) = rows.next()? {
                names.push(sql::text(row, 0, table)?);
            }
            names
        };
        let mut write = tx.prepare(&format!(
            "UPDATE {table} SET {column} = ?2 WHERE {column} = ?1"
        ))?;
        for name in &names {
            write.execute(params![name, c.blind(name)])?;
        }
        converted += names.len();
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('kdf', ?1), ('salt', ?2), ('check', ?3)",
        params![kdf.to_meta(), salt, c.seal(Field::Check, CHECK_PLAINTEXT)?],
    )?;
    sealed_rows.set(converted > 0);
    Ok(())
}

/// Schema 4: authenticity that survives restarts. Per message whether it was
/// authenticated (older incoming rows were never checked for it: unauthenticated; our
/// own outgoing rows: authenticated), per contact whether they sign and whether the
/// user verified them.
fn client_v4_authenticity(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE messages ADD COLUMN authenticated INTEGER NOT NULL DEFAULT 0;
         UPDATE messages SET authenticated = 1 WHERE direction = 'out';
         ALTER TABLE contacts ADD COLUMN signs INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE contacts ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;",
    )?;
    Ok(())
}

/// The key derivation recorded in a schema-3 file: `None` for a new or older file.
fn stored_kdf(conn: &Connection) -> Result<Option<(KdfParams, Vec<u8>)>> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let get = |key: &str| -> Result<Option<ValueRefOwned>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                Ok(match r.get_ref(0)? {
                    ValueRef::Text(t) => ValueRefOwned::Text(String::from_utf8_lossy(t).into()),
                    ValueRef::Blob(b) => ValueRefOwned::Blob(b.to_vec()),
                    _ => ValueRefOwned::Other,
                })
            })
            .optional()?)
    };
    match (get("kdf")?, get("salt")?) {
        (None, None) => Ok(None),
        (Some(ValueRefOwned::Text(kdf)), Some(ValueRefOwned::Blob(salt))) if !salt.is_empty() => {
            Ok(Some((KdfParams::from_meta(&kdf)?, salt)))
        }
        _ => Err(corrupt("meta", "unreadable kdf or salt")),
    }
}

/// A `meta` value read back.
enum ValueRefOwned {
    Text(String),
    Blob(Vec<u8>),
    Other,
}

/// Creates the database file `0600` if missing, and takes group and other access away
/// from it and from its `-wal`, `-shm` and `-journal` files if they exist.
fn restrict_files(path: &Path) -> Result<()> {
    let io = |p: &Path, source| StoreError::Io {
        path: p.to_owned(),
        source,
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(DB_MODE)
        .open(path)
        .map_err(|e| io(path, e))?;
    let name = path.as_os_str().to_owned();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = name.clone();
        file.push(suffix);
        let file = Path::new(&file);
        match std::fs::metadata(file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(DB_MODE))
                    .map_err(|e| io(file, e))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(file, e)),
        }
    }
    Ok(())
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
