//! ClientDb: messages, chats page, outbox, contacts, duplicate suppression, migrations.

use flock_store::{
    ClientDb, Direction, MessageRow, MessageStatus, OutboxId, Part, PinOutcome, StoreError,
    retry_delay_ms,
};
use rusqlite::Connection;

mod common;
use common::ORIGINAL_CLIENT_SCHEMA;

/// The user's password: unlocks the database's encryption key.
const PASSWORD: &str = "Correct-Horse-1";

fn db() -> ClientDb {
    ClientDb::open_in_memory("myself").expect("open in memory")
}

#[test]
fn incoming_and_outgoing_messages() {
    let mut db = db();
    let a = db
        .insert_incoming("alice", "hi", Some(7), 1_000, false)
        .unwrap();
    let b = db
        .insert_outgoing("alice", "hello", Some(1), MessageStatus::Sent, 2_000)
        .unwrap();
    assert!(a < b);

    let m = db.message(a).unwrap().unwrap();
    assert_eq!(
        (m.author.as_str(), m.receiver.as_str(), m.text.as_str()),
        ("alice", "myself", "hi")
    );
    assert_eq!((m.at_ms, m.seen, m.msg_id), (1_000, false, Some(7)));
    assert_eq!(
        (m.direction, m.status),
        (Direction::Incoming, MessageStatus::Received)
    );
    assert_eq!(m.peer(), "alice");

    let m = db.message(b).unwrap().unwrap();
    assert_eq!(
        (m.author.as_str(), m.receiver.as_str()),
        ("myself", "alice")
    );
    assert!(m.seen, "own messages are stored seen");
    assert_eq!(
        (m.direction, m.status),
        (Direction::Outgoing, MessageStatus::Sent)
    );
    assert_eq!(m.peer(), "alice");

    db.set_status(b, MessageStatus::Delivered).unwrap();
    assert_eq!(
        db.message(b).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    assert!(matches!(
        db.set_status(MessageRow(999), MessageStatus::Sent),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.message(MessageRow(999)).unwrap(), None);
}

#[test]
fn msg_ids_use_all_64_bits() {
    let mut db = db();
    let row = db
        .insert_incoming("alice", "x", Some(u64::MAX), 1, false)
        .unwrap();
    assert_eq!(db.message(row).unwrap().unwrap().msg_id, Some(u64::MAX));
    let (_, id) = db
        .queue_outgoing("alice", "y", 1 << 63, "PAYLOAD", 5)
        .unwrap();
    assert_eq!(db.outbox_get(id).unwrap().unwrap().msg_id, 1 << 63);
}

#[test]
fn history_is_chronological_and_bounded() {
    let mut db = db();
    for i in 0..10 {
        if i % 2 == 0 {
            db.insert_incoming("alice", &format!("a{i}"), None, i, false)
                .unwrap();
        } else {
            db.insert_outgoing("alice", &format!("a{i}"), None, MessageStatus::Sent, i)
                .unwrap();
        }
        db.insert_incoming("bob", &format!("b{i}"), None, i, false)
            .unwrap();
    }
    let h = db.history("alice", 4).unwrap();
    let texts: Vec<_> = h.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["a6", "a7", "a8", "a9"]);
    let older = db.history_before("alice", h[0].id, 3).unwrap();
    let texts: Vec<_> = older.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["a3", "a4", "a5"]);
    assert_eq!(db.history("alice", 100).unwrap().len(), 10);
    assert_eq!(db.history("alice", 0).unwrap().len(), 0);
    assert!(db.history("carol", 10).unwrap().is_empty());
}

#[test]
fn chats_page_and_unread_counts() {
    let mut db = db();
    db.insert_incoming("alice", "a1", None, 1, false).unwrap();
    db.insert_incoming("alice", "a2", None, 2, false).unwrap();
    db.insert_incoming("bob", "b1", None, 3, false).unwrap();
    db.insert_outgoing("carol", "c1", None, MessageStatus::Sent, 4)
        .unwrap();
    db.insert_outgoing("alice", "a3", None, MessageStatus::Sent, 5)
        .unwrap();

    let chats = db.chats(10).unwrap();
    let summary: Vec<_> = chats
        .iter()
        .map(|c| (c.peer.as_str(), c.last.text.as_str(), c.unread))
        .collect();
    assert_eq!(
        summary,
        [("alice", "a3", 2), ("carol", "c1", 0), ("bob", "b1", 1)]
    );
    assert_eq!(db.chats(1).unwrap().len(), 1);
    assert_eq!(db.unread_count("alice").unwrap(), 2);

    assert_eq!(db.mark_seen("alice").unwrap(), 2);
    assert_eq!(db.mark_seen("alice").unwrap(), 0);
    assert_eq!(db.unread_count("alice").unwrap(), 0);
    assert_eq!(db.unread_count("bob").unwrap(), 1);
    assert!(db.history("alice", 10).unwrap().iter().all(|m| m.seen));
}

#[test]
fn outbox_lifecycle() {
    let mut db = db();
    let (row, id) = db
        .queue_outgoing("alice", "secret text", 42, "U0VBTEVE", 1_000)
        .unwrap();
    let m = db.message(row).unwrap().unwrap();
    assert_eq!(
        (m.status, m.msg_id, m.text.as_str()),
        (MessageStatus::Queued, Some(42), "secret text")
    );

    let entry = db.outbox_get(id).unwrap().unwrap();
    assert_eq!(entry.recipient, "alice");
    assert_eq!(entry.payload_b64, "U0VBTEVE");
    assert_eq!(
        (
            entry.created_at_ms,
            entry.attempts,
            entry.next_attempt_at_ms
        ),
        (1_000, 0, 1_000)
    );
    assert_eq!(entry.message, row);
    assert_eq!(db.outbox_len().unwrap(), 1);

    // Due now; after an attempt with backoff, not due until the new time.
    assert_eq!(db.outbox_due(1_000, 10).unwrap(), vec![entry.clone()]);
    assert!(db.outbox_due(999, 10).unwrap().is_empty());
    let next = 1_000 + retry_delay_ms(0);
    assert_eq!(db.outbox_mark_attempt(id, next).unwrap(), 1);
    assert!(db.outbox_due(next - 1, 10).unwrap().is_empty());
    let due = db.outbox_due(next, 10).unwrap();
    assert_eq!((due[0].attempts, due[0].next_attempt_at_ms), (1, next));
    assert_eq!(db.outbox_mark_attempt(id, next + 5).unwrap(), 2);

    db.outbox_delivered(id).unwrap();
    assert_eq!(db.outbox_len().unwrap(), 0);
    assert_eq!(
        db.message(row).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    assert!(matches!(
        db.outbox_delivered(id),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        db.outbox_mark_attempt(id, 1),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn outbox_due_order_and_limit() {
    let mut db = db();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, id) = db
            .queue_outgoing("alice", "t", i, &format!("P{i}"), 100 - i as i64)
            .unwrap();
        ids.push(id);
    }
    let due = db.outbox_due(1_000, 3).unwrap();
    let msg_ids: Vec<_> = due.iter().map(|e| e.msg_id).collect();
    assert_eq!(msg_ids, [4, 3, 2], "earliest due first, bounded by limit");
    assert_eq!(db.outbox_due(1_000, 100).unwrap().len(), 5);
}

#[test]
fn outbox_give_up_and_ack_by_msg_id() {
    let mut db = db();
    let (row1, id1) = db.queue_outgoing("alice", "one", 1, "P1", 0).unwrap();
    let (row2, _id2) = db.queue_outgoing("alice", "two", 2, "P2", 0).unwrap();

    db.outbox_give_up(id1).unwrap();
    assert_eq!(
        db.message(row1).unwrap().unwrap().status,
        MessageStatus::Failed
    );

    assert!(db.delivered("alice", 2).unwrap());
    assert_eq!(
        db.message(row2).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    assert_eq!(db.outbox_len().unwrap(), 0);
    // An ack for an unknown message, or for someone else's id, changes nothing.
    assert!(!db.delivered("alice", 99).unwrap());
    assert!(!db.delivered("bob", 2).unwrap());
    // Acks for messages sent directly (never queued) work too.
    let direct = db
        .insert_outgoing("bob", "d", Some(5), MessageStatus::Sent, 0)
        .unwrap();
    assert!(db.delivered("bob", 5).unwrap());
    assert_eq!(
        db.message(direct).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
}

#[test]
fn outbox_enqueue_for_existing_message() {
    let mut db = db();
    let row = db
        .insert_outgoing("alice", "later", Some(9), MessageStatus::Sent, 0)
        .unwrap();
    let id = db.outbox_enqueue(row, "alice", 9, "P", 10, 20).unwrap();
    assert_eq!(
        db.message(row).unwrap().unwrap().status,
        MessageStatus::Queued
    );
    assert!(db.outbox_due(19, 10).unwrap().is_empty());
    assert_eq!(db.outbox_due(20, 10).unwrap()[0].id, id);
    // Same (recipient, msg_id) twice is refused; a missing message is NotFound.
    assert!(db.outbox_enqueue(row, "alice", 9, "P", 10, 20).is_err());
    assert!(matches!(
        db.outbox_enqueue(MessageRow(12345), "alice", 10, "P", 0, 0),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.outbox_len().unwrap(), 1);
    assert_eq!(db.outbox_get(OutboxId(777)).unwrap(), None);
}

#[test]
fn retry_delay_doubles_and_caps() {
    assert_eq!(retry_delay_ms(0), 1_000);
    assert_eq!(retry_delay_ms(1), 2_000);
    assert_eq!(retry_delay_ms(5), 32_000);
    assert_eq!(retry_delay_ms(9), 300_000);
    assert_eq!(retry_delay_ms(u32::MAX), 300_000);
}

#[test]
fn contacts_pin_change_accept_reject() {
    let mut db = db();
    assert_eq!(db.contact("alice").unwrap(), None);
    assert_eq!(
        db.pin_contact("alice", "K1", "FP1", 10).unwrap(),
        PinOutcome::Pinned
    );
    assert_eq!(
        db.pin_contact("alice", "K1", "FP1", 20).unwrap(),
        PinOutcome::Unchanged
    );
    let c = db.contact("alice").unwrap().unwrap();
    assert_eq!(
        (
            c.pubkey_b64.as_str(),
            c.fingerprint.as_str(),
            c.pinned_at_ms
        ),
        ("K1", "FP1", 10)
    );
    assert_eq!(c.pending, None);

    // A different key does not replace the pinned one.
    assert_eq!(
        db.pin_contact("alice", "K2", "FP2", 30).unwrap(),
        PinOutcome::KeyChanged
    );
    assert_eq!(
        db.pin_contact("alice", "K2", "FP2", 40).unwrap(),
        PinOutcome::KeyChanged
    );
    let c = db.contact("alice").unwrap().unwrap();
    assert_eq!(c.pubkey_b64, "K1");
    let pending = c.pending.unwrap();
    assert_eq!(
        (pending.pubkey_b64.as_str(), pending.fingerprint.as_str()),
        ("K2", "FP2")
    );
    assert_eq!(pending.since_ms, 30, "first-seen time is kept");

    assert!(db.reject_pending_key("alice").unwrap());
    assert!(!db.reject_pending_key("alice").unwrap());
    assert_eq!(db.contact("alice").unwrap().unwrap().pending, None);

    db.set_pending_key("alice", "K3", "FP3", 50).unwrap();
    assert!(db.accept_pending_key("alice", 60).unwrap());
    assert!(!db.accept_pending_key("alice", 70).unwrap());
    let c = db.contact("alice").unwrap().unwrap();
    assert_eq!(
        (
            c.pubkey_b64.as_str(),
            c.fingerprint.as_str(),
            c.pinned_at_ms
        ),
        ("K3", "FP3", 60)
    );
    assert_eq!(c.pending, None);

    assert!(matches!(
        db.set_pending_key("nobody", "K", "F", 0),
        Err(StoreError::NotFound(_))
    ));
    db.pin_contact("bob", "KB", "FB", 0).unwrap();
    let all: Vec<_> = db
        .contacts(10)
        .unwrap()
        .into_iter()
        .map(|c| c.user)
        .collect();
    assert_eq!(all, ["alice", "bob"]);
    assert_eq!(db.contacts(1).unwrap().len(), 1);
}

#[test]
fn duplicate_suppression_is_bounded_per_sender() {
    let mut db = ClientDb::open_in_memory("myself")
        .unwrap()
        .with_seen_ids_per_sender(3);
    assert!(db.check_and_insert_seen("alice", 1, 0).unwrap());
    assert!(!db.check_and_insert_seen("alice", 1, 0).unwrap());
    assert!(db.check_and_insert_seen("bob", 1, 0).unwrap(), "per sender");
    for id in 2..=5 {
        assert!(db.check_and_insert_seen("alice", id, 0).unwrap());
    }
    assert_eq!(db.seen_ids_count("alice").unwrap(), 3);
    assert_eq!(db.seen_ids_count("bob").unwrap(), 1);
    // The newest three (3, 4, 5) are remembered; 1 and 2 were pruned.
    for id in 3..=5 {
        assert!(!db.check_and_insert_seen("alice", id, 0).unwrap());
    }
    assert!(db.check_and_insert_seen("alice", 1, 0).unwrap());
}

#[test]
fn insert_incoming_once_drops_duplicates() {
    let mut db = db();
    let first = db.insert_incoming_once("alice", "hi", 7, 1, true).unwrap();
    assert!(first.is_some());
    assert_eq!(
        db.insert_incoming_once("alice", "hi", 7, 2, true).unwrap(),
        None
    );
    assert!(
        db.insert_incoming_once("bob", "hi", 7, 3, true)
            .unwrap()
            .is_some()
    );
    assert_eq!(db.history("alice", 10).unwrap().len(), 1);
    assert_eq!(db.unread_count("alice").unwrap(), 1);
}

#[test]
fn usernames_are_validated() {
    for bad in [
        "",
        "ab",
        "../etc",
        "a/b/c",
        "with space",
        "dash-name",
        "x".repeat(21).as_str(),
    ] {
        assert!(
            matches!(
                ClientDb::open_in_memory(bad),
                Err(StoreError::InvalidUsername(_))
            ),
            "{bad:?}"
        );
    }
    assert!(ClientDb::open_in_memory("ünï_cödé").is_ok());
}

#[test]
fn file_reopen_and_owner_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.insert_incoming("alice", "hi", None, 1, false).unwrap();
        db.queue_outgoing("alice", "yo", 1, "P", 2).unwrap();
        db.pin_contact("alice", "K", "F", 3).unwrap();
    }
    {
        let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        assert_eq!(db.schema_version().unwrap(), ClientDb::SCHEMA_VERSION);
        assert!(db.integrity_check().unwrap());
        assert_eq!(db.history("alice", 10).unwrap().len(), 2);
        assert_eq!(db.outbox_len().unwrap(), 1);
        assert!(db.contact("alice").unwrap().is_some());
        let mode: String = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    match ClientDb::open(&path, "other", PASSWORD) {
        Err(StoreError::WrongOwner { expected, found }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("other", "myself"));
        }
        other => panic!("expected WrongOwner, got {other:?}"),
    }
}

#[test]
fn migrates_an_original_client_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "{ORIGINAL_CLIENT_SCHEMA}
             INSERT INTO messages (author, receiver, text, date_time, seen)
                 VALUES ('alice', 'myself', 'hello', '2024-01-02 03:04:05', 1);
             INSERT INTO messages (author, receiver, text, date_time, seen)
                 VALUES ('myself', 'alice', 'hi back', '2024-01-02 03:04:06.500', 0);
             INSERT INTO messages (author, receiver, text, date_time, seen)
                 VALUES ('bob', 'myself', 'unread', '2024-01-02 03:05:00', 0);
             INSERT INTO pending_messages (recipient, payload, created_at)
                 VALUES ('carol', 'plaintext in the queue', 1704164700);"
        ))
        .unwrap();
    }
    let base_ms = 1_704_164_645_000; // 2024-01-02T03:04:05Z
    {
        let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        assert_eq!(db.schema_version().unwrap(), ClientDb::SCHEMA_VERSION);
        let alice = db.history("alice", 10).unwrap();
        assert_eq!(alice.len(), 2);
        assert_eq!(
            (alice[0].text.as_str(), alice[0].at_ms, alice[0].direction),
            ("hello", base_ms, Direction::Incoming)
        );
        assert_eq!(alice[0].status, MessageStatus::Received);
        assert_eq!(
            (alice[1].at_ms, alice[1].direction, alice[1].status),
            (base_ms + 1_500, Direction::Outgoing, MessageStatus::Sent)
        );
        assert_eq!(alice[0].id, MessageRow(1), "ids are kept");
        // The original never checked who sent what: its incoming messages stay marked.
        assert!(!alice[0].authenticated && alice[1].authenticated);
        assert_eq!(db.unread_count("bob").unwrap(), 1);
        assert_eq!(db.unread_count("alice").unwrap(), 0);
        // The plaintext queue became a visible failed message; nothing plaintext is queued.
        let carol = db.history("carol", 10).unwrap();
        assert_eq!(carol.len(), 1);
        assert_eq!(
            (carol[0].status, carol[0].text.as_str(), carol[0].at_ms),
            (
                MessageStatus::Failed,
                "plaintext in the queue",
                1_704_164_700_000
            )
        );
        assert_eq!(db.outbox_len().unwrap(), 0);
        assert!(db.integrity_check().unwrap());
    }
    let conn = Connection::open(&path).unwrap();
    let pending_tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'pending_messages'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending_tables, 0);
    drop(conn);
    // Idempotent reopen; new rows get fresh ids after the migrated ones.
    let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    let row = db.insert_incoming("alice", "new", None, 0, false).unwrap();
    assert_eq!(row, MessageRow(5));
    assert_eq!(db.history("alice", 10).unwrap().len(), 3);
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", ClientDb::SCHEMA_VERSION + 1)
        .unwrap();
    assert!(matches!(
        ClientDb::open(&path, "myself", PASSWORD),
        Err(StoreError::SchemaTooNew { found, .. }) if found == ClientDb::SCHEMA_VERSION + 1
    ));
}

#[test]
fn corrupt_rows_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.insert_incoming("alice", "fine", None, 0, false).unwrap();
        db.pin_contact("bob", "K", "F", 0).unwrap();
    }
    // The names are sealed: damage the rows already there.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "UPDATE messages SET text = x'ff';
         UPDATE contacts SET pinned_at = 'not a time';",
    )
    .unwrap();
    drop(conn);
    let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    assert!(matches!(
        db.history("alice", 10),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(db.chats(10), Err(StoreError::Corrupt { .. })));
    assert!(matches!(db.contact("bob"), Err(StoreError::Corrupt { .. })));
}

#[test]
fn failed_queue_leaves_no_message_behind() {
    let mut db = db();
    db.queue_outgoing("alice", "first", 1, "P1", 0).unwrap();
    // Same (recipient, msg_id): the outbox insert fails after the message insert.
    assert!(db.queue_outgoing("alice", "second", 1, "P2", 0).is_err());
    let texts: Vec<_> = db
        .history("alice", 10)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["first"]);
    assert_eq!(db.outbox_len().unwrap(), 1);
}

#[test]
fn a_failed_migration_step_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.db");
    {
        // An original-looking file whose queue lacks the `payload` column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, author TEXT NOT NULL,
                 receiver TEXT NOT NULL, text TEXT NOT NULL,
                 date_time DATETIME DEFAULT CURRENT_TIMESTAMP, seen BOOLEAN DEFAULT 0);
             CREATE TABLE pending_messages (id INTEGER PRIMARY KEY, recipient TEXT, body TEXT);
             INSERT INTO messages (author, receiver, text) VALUES ('alice', 'myself', 'kept');",
        )
        .unwrap();
    }
    assert!(matches!(
        ClientDb::open(&path, "myself", PASSWORD),
        Err(StoreError::Sqlite(_))
    ));
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert!(version <= 1, "step 2 was not recorded");
    let (text, tables): (String, i64) = conn
        .query_row(
            "SELECT (SELECT text FROM messages), (SELECT COUNT(*) FROM sqlite_master
                 WHERE name IN ('outbox', 'messages_v2', 'contacts'))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((text.as_str(), tables), ("kept", 0));
}

#[test]
fn authenticity_and_signers_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.insert_incoming_once("dave", "signed", 1, 10, true)
            .unwrap();
        db.insert_incoming("dave", "unsigned", None, 20, false)
            .unwrap();
        db.insert_outgoing("dave", "mine", Some(2), MessageStatus::Queued, 30)
            .unwrap();
        assert!(!db.set_signs("dave").unwrap(), "no contact yet");
        db.pin_contact("dave", "K1", "FP1", 5).unwrap();
        assert!(db.set_signs("dave").unwrap());
        assert!(db.set_verified("dave", true).unwrap());
    }
    let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    let marks: Vec<(String, bool)> = db
        .history("dave", 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.text, m.authenticated))
        .collect();
    assert_eq!(
        marks,
        [
            ("signed".to_owned(), true),
            ("unsigned".to_owned(), false),
            ("mine".to_owned(), true)
        ]
    );
    let c = db.contact("dave").unwrap().unwrap();
    assert!(c.signs && c.verified);
    // A changed key, once accepted, is neither known to sign nor verified.
    db.pin_contact("dave", "K2", "FP2", 40).unwrap();
    assert!(db.accept_pending_key("dave", 50).unwrap());
    let c = db.contact("dave").unwrap().unwrap();
    assert!(!c.signs && !c.verified);
}

#[test]
fn migrates_a_schema_3_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.insert_incoming("alice", "before", None, 1, true)
            .unwrap();
        db.pin_contact("alice", "K1", "FP1", 5).unwrap();
    }
    // Back to schema 3 (sealed, no authenticity marks) as an older build left it.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE messages DROP COLUMN authenticated;
             ALTER TABLE contacts DROP COLUMN signs;
             ALTER TABLE contacts DROP COLUMN verified;
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    assert!(db.schema_version().unwrap() >= 4);
    assert_eq!(db.schema_version().unwrap(), ClientDb::SCHEMA_VERSION);
    let m = &db.history("alice", 10).unwrap()[0];
    assert!(!m.authenticated, "never checked: marked");
    let c = db.contact("alice").unwrap().unwrap();
    assert!(!c.signs && !c.verified);
}

#[test]
fn migrates_a_schema_4_outbox_and_keeps_parts_of_a_long_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.db");
    let single = {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.queue_outgoing("bob", "short", 7, "SEALED", 10)
            .unwrap()
            .1
    };
    // Back to schema 4's outbox (one entry per message, no part columns).
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE outbox_v4 (
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
             INSERT INTO outbox_v4 SELECT id, recipient, msg_id, payload_b64, created_at,
                 attempts, next_attempt_at, message_id FROM outbox;
             DROP TABLE outbox;
             ALTER TABLE outbox_v4 RENAME TO outbox;
             CREATE INDEX outbox_due ON outbox (next_attempt_at, id);
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    assert_eq!(db.schema_version().unwrap(), ClientDb::SCHEMA_VERSION);
    let old = db.outbox_get(single).unwrap().expect("kept");
    assert_eq!(
        (old.msg_id, old.payload_b64.as_str(), old.part),
        (7, "SEALED", None)
    );
    // A long text: one history row, an outbox entry per part.
    let row = db
        .insert_outgoing("bob", "one long text", Some(100), MessageStatus::Queued, 20)
        .unwrap();
    let part = |index| Part {
        of: 100,
        index,
        count: 3,
        ext_payload_b64: format!("MARKED{index}"),
    };
    let ids: Vec<OutboxId> = (0..3u32)
        .map(|i| {
            let p = part(i);
            db.outbox_enqueue_part(row, "bob", 100 + u64::from(i), "PLAIN", Some(&p), 20, 20)
                .unwrap()
        })
        .collect();
    let due = db.outbox_due(i64::MAX, 10).unwrap();
    let parts: Vec<(u64, Option<Part>)> = due
        .iter()
        .filter(|e| e.message == row)
        .map(|e| (e.msg_id, e.part.clone()))
        .collect();
    assert_eq!(
        parts,
        [
            (100, Some(part(0))),
            (101, Some(part(1))),
            (102, Some(part(2)))
        ]
    );
    // The first part acknowledged: its entry goes, the message is not delivered yet.
    assert!(db.outbox_remove(ids[0]).unwrap());
    assert!(!db.outbox_remove(ids[0]).unwrap());
    assert_eq!(
        db.message(row).unwrap().unwrap().status,
        MessageStatus::Queued
    );
    // Giving up on a part gives up on the text: every entry of it goes.
    db.outbox_give_up(ids[1]).unwrap();
    assert!(db.outbox_get(ids[2]).unwrap().is_none());
    assert_eq!(
        db.message(row).unwrap().unwrap().status,
        MessageStatus::Failed
    );
    assert_eq!(db.outbox_len().unwrap(), 1, "the single message stays");
    // message_failed: the same from the message's side.
    let row2 = db
        .insert_outgoing("bob", "another", Some(200), MessageStatus::Queued, 30)
        .unwrap();
    let p = Part {
        of: 200,
        index: 1,
        count: 2,
        ext_payload_b64: "M".into(),
    };
    db.outbox_enqueue_part(row2, "bob", 201, "PLAIN", Some(&p), 30, 30)
        .unwrap();
    db.message_failed(row2).unwrap();
    assert_eq!(db.outbox_len().unwrap(), 1);
    assert_eq!(
        db.message(row2).unwrap().unwrap().status,
        MessageStatus::Failed
    );
}
