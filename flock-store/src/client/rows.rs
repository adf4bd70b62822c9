//! Row helpers of the client database: the column lists, sealing and opening columns,
//! and the statements several methods share.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Write transactions take the lock up front, so they never fail half-way on a
/// read-to-write lock upgrade.
pub(super) fn immediate(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

pub(super) const IN: &str = "in";
pub(super) const OUT: &str = "out";

pub(super) const MESSAGE_COLUMNS: &str =
    "id, author, receiver, text, date_time, seen, msg_id, direction, status, authenticated";
pub(super) const MESSAGE_COLUMN_COUNT: usize = 10;
/// The outbox with its message, whose sealed `receiver` names the recipient.
pub(super) const OUTBOX_JOIN: &str = "outbox o JOIN messages m ON m.id = o.message_id";
pub(super) const OUTBOX_COLUMNS: &str = "o.id, m.receiver, o.msg_id, o.payload_b64, o.created_at, \
     o.attempts, o.next_attempt_at, o.message_id, o.part_of, o.part_index, o.part_count, \
     o.ext_payload_b64";
pub(super) const CONTACT_COLUMNS: &str = "name, pubkey_b64, fingerprint, pinned_at, \
     pending_pubkey_b64, pending_fingerprint, pending_since, signs, verified";

/// A sealed column (a BLOB from [`RowCipher::seal`]), opened.
pub(super) fn sealed(
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
pub(super) fn opt_sealed(
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
pub(super) fn msg_id_to_sql(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

pub(super) fn msg_id_from_sql(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_message(
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
pub(super) fn outbox_insert(
    conn: &Connection,
    c: &RowCipher,
    message: MessageRow,
    recipient: &str,
    msg_id: u64,
    payload_b64: &str,
    part: Option<&Part>,
    now_ms: i64,
    next_attempt_at_ms: i64,
) -> Result<OutboxId> {
    conn.prepare_cached(
        "INSERT INTO outbox \
         (recipient, msg_id, payload_b64, created_at, attempts, next_attempt_at, message_id, \
          part_of, part_index, part_count, ext_payload_b64) \
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        c.blind(recipient),
        msg_id_to_sql(msg_id),
        payload_b64,
        now_ms,
        next_attempt_at_ms,
        message.0,
        part.map(|p| msg_id_to_sql(p.of)),
        part.map(|p| p.index),
        part.map(|p| p.count),
        part.map(|p| p.ext_payload_b64.as_str()),
    ])?;
    Ok(OutboxId(conn.last_insert_rowid()))
}

pub(super) fn set_pending(
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

pub(super) fn seen_insert(
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

pub(super) fn message_from_row(c: &RowCipher, row: &Row<'_>) -> Result<Message> {
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

pub(super) fn outbox_from_row(c: &RowCipher, row: &Row<'_>) -> Result<OutboxEntry> {
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
        part: part_from_row(row)?,
    })
}

/// Columns 8..=11 of [`OUTBOX_COLUMNS`]: the part an entry is, if it is one.
fn part_from_row(row: &Row<'_>) -> Result<Option<Part>> {
    const T: &str = "outbox";
    let of: Option<i64> = row.get(8)?;
    let Some(of) = of else {
        return Ok(None);
    };
    let index: i64 = row.get(9)?;
    let count: i64 = row.get(10)?;
    let ext_payload_b64 = sql::text(row, 11, T)?;
    let (Ok(index), Ok(count)) = (u32::try_from(index), u32::try_from(count)) else {
        return Err(corrupt(T, format!("part {index} of {count}")));
    };
    Ok(Some(Part {
        of: msg_id_from_sql(of),
        index,
        count,
        ext_payload_b64,
    }))
}

pub(super) fn contact_from_row(c: &RowCipher, row: &Row<'_>) -> Result<Contact> {
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
