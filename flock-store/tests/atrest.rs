//! Private at rest: a stolen `chats/` directory reveals no message text and no contact
//! names; the files are `0600`; a wrong password does not open the database; an older
//! plaintext file is sealed on open.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flock_store::{ClientDb, StoreError};
use rusqlite::Connection;

mod common;
use common::{ORIGINAL_CLIENT_SCHEMA, mode};

const PASSWORD: &str = "Correct-Horse-1";

/// Every byte of every file in `dir` (the database, its WAL and shared memory).
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        out.extend(std::fs::read(entry.expect("entry").path()).expect("read file"));
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_stolen_chats_directory_reveals_no_text_and_no_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("myself.db");
    let secrets = ["the-launch-code-is-0000", "meet me under the old bridge"];
    {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.insert_incoming_once("alicewonder", secrets[0], 1, 1_000, true)
            .unwrap();
        db.queue_outgoing("bobthebuilder", secrets[1], 7, "c2VhbGVk", 2_000)
            .unwrap();
        db.pin_contact("alicewonder", "QUxJQ0VLRVk=", "fp-alice-123456", 3_000)
            .unwrap();
        db.pin_contact("bobthebuilder", "Qk9CS0VZ", "fp-bob-654321", 3_000)
            .unwrap();
        // Read while the WAL still holds the writes: the thief may copy it too.
        let bytes = all_bytes(dir.path());
        for needle in secrets.iter().chain(&[
            "alicewonder",
            "bobthebuilder",
            "QUxJQ0VLRVk=",
            "fp-alice-123456",
        ]) {
            assert!(!contains(&bytes, needle), "{needle:?} is readable on disk");
        }
        assert!(
            contains(&bytes, "myself"),
            "sanity: the search sees the plaintext owner"
        );
    }
    let bytes = all_bytes(dir.path());
    for needle in secrets.iter().chain(&["alicewonder", "bobthebuilder"]) {
        assert!(!contains(&bytes, needle), "{needle:?} is readable on disk");
    }
    // The owner still reads everything back.
    let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    let alice = db.history("alicewonder", 10).unwrap();
    assert_eq!(alice[0].text, secrets[0]);
    assert_eq!(alice[0].author, "alicewonder");
    let bob = db.history("bobthebuilder", 10).unwrap();
    assert_eq!(
        (bob[0].text.as_str(), bob[0].receiver.as_str()),
        (secrets[1], "bobthebuilder")
    );
    let names: Vec<_> = db
        .contacts(10)
        .unwrap()
        .into_iter()
        .map(|c| c.user)
        .collect();
    assert_eq!(names, ["alicewonder", "bobthebuilder"]);
    assert_eq!(
        db.outbox_due(i64::MAX, 10).unwrap()[0].recipient,
        "bobthebuilder"
    );
    let chats = db.chats(10).unwrap();
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0].peer, "bobthebuilder");
}

#[test]
fn database_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("myself.db");
    let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    db.insert_incoming("alice", "hi", None, 0, false).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(db);
    // A file an older build left world-readable is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(ClientDb::open(&path, "myself", PASSWORD).unwrap());
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_wrong_password_does_not_open_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("myself.db");
    {
        let mut db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        db.insert_incoming("alice", "hi", None, 0, false).unwrap();
    }
    assert!(matches!(
        ClientDb::open(&path, "myself", "Correct-Horse-2"),
        Err(StoreError::WrongPassword)
    ));
    let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    assert_eq!(db.history("alice", 10).unwrap()[0].text, "hi");
}

#[test]
fn plaintext_rows_of_an_older_file_are_sealed_and_vacuumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("myself.db");
    {
        // The original implementation's file: plaintext everything.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "{ORIGINAL_CLIENT_SCHEMA}
             INSERT INTO messages (author, receiver, text, date_time, seen)
                 VALUES ('alicewonder', 'myself', 'an-old-secret-text', '2024-01-02 03:04:05', 1);
             INSERT INTO pending_messages (recipient, payload, created_at)
                 VALUES ('carolsinger', 'a-queued-old-secret', 1704164700);"
        ))
        .unwrap();
    }
    assert!(contains(&all_bytes(dir.path()), "an-old-secret-text"));
    {
        let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
        assert_eq!(db.schema_version().unwrap(), ClientDb::SCHEMA_VERSION);
        assert_eq!(
            db.history("alicewonder", 10).unwrap()[0].text,
            "an-old-secret-text"
        );
        assert_eq!(
            db.history("carolsinger", 10).unwrap()[0].text,
            "a-queued-old-secret"
        );
    }
    let bytes = all_bytes(dir.path());
    for needle in [
        "an-old-secret-text",
        "a-queued-old-secret",
        "alicewonder",
        "carolsinger",
    ] {
        assert!(
            !contains(&bytes, needle),
            "{needle:?} survived the migration"
        );
    }
}

#[test]
fn a_schema_2_file_with_contacts_is_sealed() {
    // Pinned contacts, the outbox and seen ids of a file written before encryption.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("myself.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(ORIGINAL_CLIENT_SCHEMA).unwrap();
    }
    // Let the current build create schemas 2 to 4, then put plaintext back as an older
    // build would have written it: a schema-2 file with rows.
    drop(ClientDb::open(&path, "myself", PASSWORD).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM meta WHERE key IN ('kdf', 'salt', 'check');
         ALTER TABLE messages DROP COLUMN authenticated;
         CREATE TABLE contacts_v2 (user TEXT PRIMARY KEY, pubkey_b64 TEXT NOT NULL,
             fingerprint TEXT NOT NULL, pinned_at INTEGER NOT NULL, pending_pubkey_b64 TEXT,
             pending_fingerprint TEXT, pending_since INTEGER);
         DROP TABLE contacts;
         ALTER TABLE contacts_v2 RENAME TO contacts;
         INSERT INTO contacts VALUES ('davidkeys', 'REFWSURLRVk=', 'fp-david', 5, 'TkVXS0VZ',
             'fp-new', 6);
         INSERT INTO messages (author, receiver, text, date_time, seen, msg_id, direction,
             status, peer) VALUES ('myself', 'davidkeys', 'queued-secret', 7, 1, 9, 'out',
             'queued', 'davidkeys');
         INSERT INTO outbox (recipient, msg_id, payload_b64, created_at, attempts,
             next_attempt_at, message_id) VALUES ('davidkeys', 9, 'UA==', 7, 0, 7, 1);
         INSERT INTO seen_ids (sender, msg_id, seen_at) VALUES ('davidkeys', 3, 8);
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let db = ClientDb::open(&path, "myself", PASSWORD).unwrap();
    let david = db.contact("davidkeys").unwrap().unwrap();
    assert_eq!(
        (david.pubkey_b64.as_str(), david.fingerprint.as_str()),
        ("REFWSURLRVk=", "fp-david")
    );
    assert_eq!(david.pending.unwrap().pubkey_b64, "TkVXS0VZ");
    assert_eq!(db.outbox_due(100, 10).unwrap()[0].recipient, "davidkeys");
    assert_eq!(db.seen_ids_count("davidkeys").unwrap(), 1);
    assert_eq!(
        db.history("davidkeys", 10).unwrap()[0].text,
        "queued-secret"
    );
    drop(db);
    let bytes = all_bytes(dir.path());
    for needle in ["davidkeys", "queued-secret", "REFWSURLRVk=", "fp-david"] {
        assert!(
            !contains(&bytes, needle),
            "{needle:?} survived the migration"
        );
    }
}
