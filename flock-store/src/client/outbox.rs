//! The outbox of the client database: sealed payloads waiting for an acknowledgement,
//! one entry per part of a long text, and the status of their message.

use super::*;

impl ClientDb {
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
            None,
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
        self.outbox_enqueue_part(
            message,
            recipient,
            msg_id,
            payload_b64,
            None,
            now_ms,
            next_attempt_at_ms,
        )
    }

    /// [`Self::outbox_enqueue`] for one part of a long text (`part`; `None`: a whole
    /// message): each part has an outbox entry of its own under its own `msg_id`, all
    /// tracked by the one `messages` row.
    #[allow(clippy::too_many_arguments)]
    pub fn outbox_enqueue_part(
        &mut self,
        message: MessageRow,
        recipient: &str,
        msg_id: u64,
        payload_b64: &str,
        part: Option<&Part>,
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
            part,
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

    /// Give up on the entry: remove it (and the other parts of its text) and mark its
    /// message failed (the user sees it).
    pub fn outbox_give_up(&mut self, id: OutboxId) -> Result<()> {
        self.outbox_finish(id, MessageStatus::Failed)
    }

    /// One part of a long text needs no more sending: remove its entry only (the
    /// message's status is set when the last part is done). `false`: no such entry.
    pub fn outbox_remove(&mut self, id: OutboxId) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([id.0])?;
        Ok(n > 0)
    }

    /// Give up on an outgoing message: every outbox entry of it goes (all parts of a long
    /// text), status failed.
    pub fn message_failed(&mut self, message: MessageRow) -> Result<()> {
        let tx = immediate(&mut self.conn)?;
        tx.prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?
            .execute([message.0])?;
        let n = tx
            .prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
            .execute(params![message.0, MessageStatus::Failed.as_str()])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("message {}", message.0)));
        }
        tx.commit()?;
        Ok(())
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
            .prepare_cached("SELECT message_id FROM outbox WHERE id = ?1")?
            .query_row([id.0], |r| r.get(0))
            .optional()?;
        let message = message.ok_or_else(|| StoreError::NotFound(format!("outbox {}", id.0)))?;
        // Its text's other parts, if it is a part, go with it.
        tx.prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?
            .execute([message])?;
        tx.prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
            .execute(params![message, status.as_str()])?;
        tx.commit()?;
        Ok(())
    }
}
