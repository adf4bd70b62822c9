//! ServerDb: every operation, migrations, batch atomicity, corrupt rows, and a model check.

use std::collections::BTreeMap;

use flock_chord::{StoreOp, Table};
use flock_proto::Record;
use flock_store::{Counts, ServerDb, StoreError};
use proptest::prelude::*;
use rusqlite::Connection;

fn rec(user: &str, last_octet: u8, version: u64) -> Record {
    Record {
        user: user.to_owned(),
        ip: [10, 0, 0, last_octet].into(),
        port: 5000 + u16::from(last_octet),
        version,
        pubkey_b64: format!("PK-{user}"),
        sig_b64: format!("SIG-{user}-{version}"),
    }
}

fn put(record: Record, table: Table) -> StoreOp {
    StoreOp::Put { record, table }
}

fn replica(owner: &str) -> Table {
    Table::Replica {
        owner: owner.to_owned(),
    }
}

#[test]
fn put_get_and_counts() {
    let mut db = ServerDb::open_in_memory().unwrap();
    assert_eq!(db.counts().unwrap(), Counts::default());
    assert_eq!(db.get("alice").unwrap(), None);

    db.apply(&[
        put(rec("alice", 1, 7), Table::Owned),
        put(rec("bob", 2, 8), replica("10.0.0.9:12345")),
    ])
    .unwrap();
    assert_eq!(
        db.get("alice").unwrap(),
        Some((rec("alice", 1, 7), Table::Owned))
    );
    assert_eq!(
        db.get("bob").unwrap(),
        Some((rec("bob", 2, 8), replica("10.0.0.9:12345")))
    );
    assert_eq!(
        db.counts().unwrap(),
        Counts {
            owned: 1,
            replicas: 1
        }
    );
    assert_eq!(db.replica_count("10.0.0.9:12345").unwrap(), 1);
    assert_eq!(db.replica_count("10.0.0.1:1").unwrap(), 0);
    assert!(db.integrity_check().unwrap());
    assert_eq!(db.schema_version().unwrap(), ServerDb::SCHEMA_VERSION);
}

#[test]
fn put_replaces_fields() {
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[put(rec("alice", 1, 7), Table::Owned)]).unwrap();
    db.apply(&[put(rec("alice", 2, 9), Table::Owned)]).unwrap();
    assert_eq!(
        db.get("alice").unwrap(),
        Some((rec("alice", 2, 9), Table::Owned))
    );
    assert_eq!(db.counts().unwrap().owned, 1);
}

#[test]
fn unsigned_and_extreme_records_round_trip() {
    let mut db = ServerDb::open_in_memory().unwrap();
    let unsigned = Record {
        user: "ünï_cödé".into(),
        ip: [0, 0, 0, 0].into(),
        port: 0,
        version: 0,
        pubkey_b64: String::new(),
        sig_b64: String::new(),
    };
    let max = Record {
        user: "max".into(),
        ip: [255, 255, 255, 255].into(),
        port: u16::MAX,
        version: i64::MAX as u64,
        ..rec("max", 1, 1)
    };
    db.apply(&[
        put(unsigned.clone(), Table::Owned),
        put(max.clone(), Table::Owned),
    ])
    .unwrap();
    assert_eq!(db.get("ünï_cödé").unwrap(), Some((unsigned, Table::Owned)));
    assert_eq!(db.get("max").unwrap(), Some((max, Table::Owned)));
}

#[test]
fn a_record_lives_in_one_table() {
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[put(rec("alice", 1, 1), replica("a:1"))])
        .unwrap();
    db.apply(&[put(rec("alice", 1, 2), Table::Owned)]).unwrap();
    assert_eq!(
        db.get("alice").unwrap(),
        Some((rec("alice", 1, 2), Table::Owned))
    );
    assert_eq!(
        db.counts().unwrap(),
        Counts {
            owned: 1,
            replicas: 0
        }
    );

    db.apply(&[put(rec("alice", 1, 3), replica("b:2"))])
        .unwrap();
    assert_eq!(
        db.get("alice").unwrap(),
        Some((rec("alice", 1, 3), replica("b:2")))
    );
    assert_eq!(
        db.counts().unwrap(),
        Counts {
            owned: 0,
            replicas: 1
        }
    );
    assert_eq!(db.load().unwrap().len(), 1);
}

#[test]
fn delete_removes_from_either_table() {
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[
        put(rec("alice", 1, 1), Table::Owned),
        put(rec("bob", 2, 1), replica("a:1")),
    ])
    .unwrap();
    db.apply(&[
        StoreOp::Delete {
            user: "alice".into(),
        },
        StoreOp::Delete { user: "bob".into() },
        StoreOp::Delete {
            user: "nobody".into(),
        },
    ])
    .unwrap();
    assert_eq!(db.counts().unwrap(), Counts::default());
}

#[test]
fn drop_replicas_only_drops_that_owner() {
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[
        put(rec("alice", 1, 1), replica("a:1")),
        put(rec("bob", 2, 1), replica("a:1")),
        put(rec("carol", 3, 1), replica("b:2")),
        put(rec("dave", 4, 1), Table::Owned),
    ])
    .unwrap();
    db.apply(&[StoreOp::DropReplicas {
        owner: "a:1".into(),
    }])
    .unwrap();
    assert_eq!(db.get("alice").unwrap(), None);
    assert_eq!(db.get("bob").unwrap(), None);
    assert!(db.get("carol").unwrap().is_some());
    assert!(db.get("dave").unwrap().is_some());
    assert_eq!(db.replica_count("a:1").unwrap(), 0);
}

#[test]
fn empty_batch_is_a_no_op() {
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[]).unwrap();
    assert_eq!(db.counts().unwrap(), Counts::default());
}

#[test]
fn load_is_ordered_and_pages_through_large_tables() {
    let mut db = ServerDb::open_in_memory().unwrap();
    // More than one internal page (1024) per table, inserted out of order.
    let mut ops = Vec::new();
    for i in (0..2500u32).rev() {
        let table = if i % 2 == 0 {
            Table::Owned
        } else {
            replica(&format!("n{}:1", i % 3))
        };
        ops.push(put(rec(&format!("user{i:05}"), (i % 250) as u8, 1), table));
    }
    db.apply(&ops).unwrap();
    let loaded = db.load().unwrap();
    assert_eq!(loaded.len(), 2500);
    let owned: Vec<_> = loaded
        .iter()
        .take_while(|(_, t)| *t == Table::Owned)
        .collect();
    assert_eq!(owned.len(), 1250);
    let replicas = &loaded[1250..];
    assert!(
        replicas
            .iter()
            .all(|(_, t)| matches!(t, Table::Replica { .. }))
    );
    assert!(owned.windows(2).all(|w| w[0].0.user < w[1].0.user));
    assert!(replicas.windows(2).all(|w| w[0].0.user < w[1].0.user));
    // Deterministic: same answer twice, and every record matches `get`.
    assert_eq!(db.load().unwrap(), loaded);
    for (record, table) in &loaded {
        assert_eq!(
            db.get(&record.user).unwrap(),
            Some((record.clone(), table.clone()))
        );
    }
}

#[test]
fn failed_batch_leaves_nothing_of_it() {
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[put(rec("keep", 1, 1), Table::Owned)]).unwrap();

    let err = db
        .apply(&[
            put(rec("new1", 2, 1), Table::Owned),
            StoreOp::Delete {
                user: "keep".into(),
            },
            put(rec("new2", 3, 1), replica("a:1")),
            // Fails midway: versions above i64::MAX cannot be stored.
            put(rec("bad", 4, u64::MAX), Table::Owned),
            put(rec("new3", 5, 1), Table::Owned),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange(_)), "{err}");
    assert_eq!(
        db.get("keep").unwrap(),
        Some((rec("keep", 1, 1), Table::Owned))
    );
    for user in ["new1", "new2", "bad", "new3"] {
        assert_eq!(db.get(user).unwrap(), None, "{user}");
    }
    assert_eq!(
        db.counts().unwrap(),
        Counts {
            owned: 1,
            replicas: 0
        }
    );
    // The connection is still usable after the rollback.
    db.apply(&[put(rec("after", 6, 1), Table::Owned)]).unwrap();
    assert_eq!(db.counts().unwrap().owned, 2);
}

#[test]
fn file_db_is_wal_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    {
        let mut db = ServerDb::open(&path).unwrap();
        assert_eq!(db.journal_mode().unwrap(), "wal");
        assert!(db.synchronous_full().unwrap());
        db.apply(&[
            put(rec("alice", 1, 1), Table::Owned),
            put(rec("bob", 2, 1), replica("a:1")),
        ])
        .unwrap();
    }
    let db = ServerDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), ServerDb::SCHEMA_VERSION);
    assert_eq!(
        db.load().unwrap(),
        vec![
            (rec("alice", 1, 1), Table::Owned),
            (rec("bob", 2, 1), replica("a:1"))
        ]
    );
    let mode: String = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "WAL mode persists in the file");
}

/// The design document's schema, as the original implementation left it.
const ORIGINAL_SCHEMA: &str = "
    CREATE TABLE users (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        ip       TEXT NOT NULL,
        port     INTEGER NOT NULL
    );
    CREATE TABLE replic_users (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        ip       TEXT NOT NULL,
        port     INTEGER NOT NULL,
        owner    TEXT NOT NULL
    );";

#[test]
fn migrates_an_original_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(ORIGINAL_SCHEMA).unwrap();
        conn.execute_batch(
            "INSERT INTO users (username, ip, port) VALUES ('alice', '192.168.1.5', 6000);
             INSERT INTO replic_users (username, ip, port, owner)
                 VALUES ('bob', '192.168.1.6', 6001, '192.168.1.2');
             -- the original could hold a name in both tables; the owned row wins
             INSERT INTO replic_users (username, ip, port, owner)
                 VALUES ('alice', '192.168.1.99', 1, '192.168.1.3');",
        )
        .unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 0);
    }
    let unsigned = |user: &str, ip: [u8; 4], port| Record {
        user: user.into(),
        ip: ip.into(),
        port,
        version: 0,
        pubkey_b64: String::new(),
        sig_b64: String::new(),
    };
    let expected = vec![
        (unsigned("alice", [192, 168, 1, 5], 6000), Table::Owned),
        (
            unsigned("bob", [192, 168, 1, 6], 6001),
            replica("192.168.1.2"),
        ),
    ];
    {
        let mut db = ServerDb::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), ServerDb::SCHEMA_VERSION);
        assert_eq!(db.load().unwrap(), expected);
        // The migrated tables take signed records.
        db.apply(&[put(rec("carol", 3, 5), Table::Owned)]).unwrap();
        assert!(db.integrity_check().unwrap());
    }
    // Idempotent: opening again changes nothing.
    let db = ServerDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), ServerDb::SCHEMA_VERSION);
    assert_eq!(db.load().unwrap().len(), 3);
    assert_eq!(
        db.get("carol").unwrap(),
        Some((rec("carol", 3, 5), Table::Owned))
    );
}

#[test]
fn migrates_a_database_that_already_has_some_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(ORIGINAL_SCHEMA).unwrap();
        conn.execute_batch(
            "ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE users ADD COLUMN pubkey_b64 TEXT NOT NULL DEFAULT '';
             INSERT INTO users (username, ip, port, version, pubkey_b64)
                 VALUES ('alice', '10.0.0.1', 5001, 42, 'PK');",
        )
        .unwrap();
    }
    let db = ServerDb::open(&path).unwrap();
    let (record, table) = db.get("alice").unwrap().unwrap();
    assert_eq!(table, Table::Owned);
    assert_eq!((record.version, record.pubkey_b64.as_str()), (42, "PK"));
    assert_eq!(record.sig_b64, "");
}

#[test]
fn migration_from_version_one() {
    // A file stamped with schema 1 (the design document's tables) migrates to 2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(ORIGINAL_SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let mut db = ServerDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), 2);
    db.apply(&[put(rec("alice", 1, 1), replica("x:1"))])
        .unwrap();
    assert_eq!(db.replica_count("x:1").unwrap(), 1);
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    match ServerDb::open(&path) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (99, ServerDb::SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    drop(ServerDb::open(&path).unwrap());
    let bad_rows = [
        (
            "ip",
            "INSERT INTO users (username, ip, port) VALUES ('ip', 'not-an-ip', 1)",
        ),
        (
            "port",
            "INSERT INTO users (username, ip, port) VALUES ('port', '1.2.3.4', 70000)",
        ),
        (
            "negport",
            "INSERT INTO users (username, ip, port) VALUES ('negport', '1.2.3.4', -1)",
        ),
        (
            "iptype",
            "INSERT INTO users (username, ip, port) VALUES ('iptype', 16909060, 1)",
        ),
        (
            "porttype",
            "INSERT INTO users (username, ip, port) VALUES ('porttype', '1.2.3.4', 'x')",
        ),
        (
            "version",
            "INSERT INTO users (username, ip, port, version) VALUES ('version', '1.2.3.4', 1, -5)",
        ),
        (
            "owner",
            "INSERT INTO replic_users (username, ip, port, owner) VALUES ('owner', '1.2.3.4', 1, x'07')",
        ),
        (
            "blob",
            "INSERT INTO users (username, ip, port, pubkey_b64) VALUES ('blob', '1.2.3.4', 1, x'ff00')",
        ),
    ];
    for (user, insert) in bad_rows {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("DELETE FROM users; DELETE FROM replic_users;")
            .unwrap();
        conn.execute_batch(insert).unwrap();
        drop(conn);
        let db = ServerDb::open(&path).unwrap();
        let err = db.get(user).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{user}: {err}");
        let err = db.load().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{user}: {err}");
    }
}

#[test]
fn garbage_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    assert!(ServerDb::open(&path).is_err());
}

#[derive(Debug, Clone)]
enum ModelOp {
    PutOwned(u8, u8),
    PutReplica(u8, u8, u8),
    Delete(u8),
    Drop(u8),
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        (0..8u8, any::<u8>()).prop_map(|(u, v)| ModelOp::PutOwned(u, v)),
        (0..8u8, any::<u8>(), 0..3u8).prop_map(|(u, v, o)| ModelOp::PutReplica(u, v, o)),
        (0..8u8).prop_map(ModelOp::Delete),
        (0..3u8).prop_map(ModelOp::Drop),
    ]
}

fn to_store_op(op: &ModelOp) -> StoreOp {
    match *op {
        ModelOp::PutOwned(u, v) => put(rec(&format!("u{u}"), v, u64::from(v)), Table::Owned),
        ModelOp::PutReplica(u, v, o) => put(
            rec(&format!("u{u}"), v, u64::from(v)),
            replica(&format!("o{o}:1")),
        ),
        ModelOp::Delete(u) => StoreOp::Delete {
            user: format!("u{u}"),
        },
        ModelOp::Drop(o) => StoreOp::DropReplicas {
            owner: format!("o{o}:1"),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of batches leaves the same state as a map `user -> (record, table)`.
    #[test]
    fn matches_a_map_model(batches in prop::collection::vec(prop::collection::vec(model_op(), 0..6), 0..12)) {
        let mut db = ServerDb::open_in_memory().unwrap();
        let mut model: BTreeMap<String, (Record, Table)> = BTreeMap::new();
        for batch in &batches {
            let ops: Vec<StoreOp> = batch.iter().map(to_store_op).collect();
            db.apply(&ops).unwrap();
            for op in ops {
                match op {
                    StoreOp::Put { record, table } => {
                        model.insert(record.user.clone(), (record, table));
                    }
                    StoreOp::Delete { user } => {
                        model.remove(&user);
                    }
                    StoreOp::DropReplicas { owner } => {
                        model.retain(|_, (_, t)| *t != Table::Replica { owner: owner.clone() });
                    }
                }
            }
        }
        let mut expected: Vec<(Record, Table)> = model.values().cloned().collect();
        expected.sort_by(|a, b| {
            (a.1 != Table::Owned, &a.0.user).cmp(&(b.1 != Table::Owned, &b.0.user))
        });
        prop_assert_eq!(db.load().unwrap(), expected);
        for (user, entry) in &model {
            prop_assert_eq!(db.get(user).unwrap(), Some(entry.clone()));
        }
    }
}

#[test]
fn load_does_not_skip_an_empty_username() {
    // The ring never stores one, but the store must not lose rows whatever they hold.
    let mut db = ServerDb::open_in_memory().unwrap();
    db.apply(&[
        put(rec("", 1, 1), Table::Owned),
        put(rec("a", 2, 1), Table::Owned),
    ])
    .unwrap();
    let users: Vec<_> = db
        .load()
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.user)
        .collect();
    assert_eq!(users, ["", "a"]);
}
