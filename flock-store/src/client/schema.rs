//! The client database's schema: the original client's tables, our migrations (one
//! function per schema version), the stored key derivation and the file permissions.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Schema 1: the original client's tables (`IF NOT EXISTS` adopts an original file).
pub(super) fn client_v1_original(tx: &Transaction<'_>) -> Result<()> {
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
pub(super) fn client_v2_extended(tx: &Transaction<'_>, me: &str) -> Result<()> {
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
pub(super) fn client_v3_sealed(
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
pub(super) fn client_v4_authenticity(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE messages ADD COLUMN authenticated INTEGER NOT NULL DEFAULT 0;
         UPDATE messages SET authenticated = 1 WHERE direction = 'out';
         ALTER TABLE contacts ADD COLUMN signs INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE contacts ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;",
    )?;
    Ok(())
}

/// Schema 5: long texts in parts. One message may have several outbox entries, one per
/// part, each under its own id: `message_id` is no longer unique, and a part records
/// its text's id (`part_of`, the message's `msg_id`), its place (`part_index` of
/// `part_count`) and its payload sealed with the part marker inside
/// (`ext_payload_b64`, for peers that reassemble). Existing entries are single messages
/// (the part columns `NULL`).
pub(super) fn client_v5_parts(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE outbox_v5 (
             id              INTEGER PRIMARY KEY AUTOINCREMENT,
             recipient       TEXT NOT NULL,
             msg_id          INTEGER NOT NULL,
             payload_b64     TEXT NOT NULL,
             created_at      INTEGER NOT NULL,
             attempts        INTEGER NOT NULL DEFAULT 0,
             next_attempt_at INTEGER NOT NULL,
             message_id      INTEGER NOT NULL
                             REFERENCES messages (id) ON DELETE CASCADE,
             part_of         INTEGER,
             part_index      INTEGER,
             part_count      INTEGER,
             ext_payload_b64 TEXT,
             UNIQUE (recipient, msg_id),
             CHECK ((part_of IS NULL) = (part_count IS NULL)
                    AND (part_of IS NULL) = (part_index IS NULL)
                    AND (part_of IS NULL) = (ext_payload_b64 IS NULL))
         );
         INSERT INTO outbox_v5
             (id, recipient, msg_id, payload_b64, created_at, attempts, next_attempt_at,
              message_id)
         SELECT id, recipient, msg_id, payload_b64, created_at, attempts, next_attempt_at,
                message_id
         FROM outbox ORDER BY id;
         DROP TABLE outbox;
         ALTER TABLE outbox_v5 RENAME TO outbox;
         CREATE INDEX outbox_due ON outbox (next_attempt_at, id);
         CREATE INDEX outbox_message ON outbox (message_id);",
    )?;
    Ok(())
}

/// The key derivation recorded in a schema-3 file: `None` for a new or older file.
pub(super) fn stored_kdf(conn: &Connection) -> Result<Option<(KdfParams, Vec<u8>)>> {
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
pub(super) fn restrict_files(path: &Path) -> Result<()> {
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
