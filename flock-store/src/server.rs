//! The server database: one SQLite file per ring node holding the records it owns
//! (`users`) and the replicas it keeps for other nodes (`replic_users`).

use std::net::Ipv4Addr;
use std::path::Path;

use flock_chord::{StoreOp, Table};
use flock_proto::Record;
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};

use crate::error::{Result, StoreError, corrupt};
use crate::sql;

/// Records read per query while restoring a node; keeps every query bounded.
const LOAD_PAGE: i64 = 1024;

/// A node's record store.
///
/// Every [`ServerDb::apply`] is one SQLite transaction in WAL mode with
/// `synchronous=FULL`: when it returns `Ok`, the whole batch is on disk and survives a
/// crash or power loss; when it returns an error, none of the batch is applied.
pub struct ServerDb {
    conn: Connection,
}

/// How many records a node holds, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Rows in `users` (records this node owns).
    pub owned: u64,
    /// Rows in `replic_users` (replicas held for other nodes).
    pub replicas: u64,
}

impl ServerDb {
    /// The schema version this build writes; older files are migrated on open.
    pub const SCHEMA_VERSION: i64 = 2;

    /// Opens or creates the database file at `path` and migrates it to
    /// [`Self::SCHEMA_VERSION`]. A file from the original implementation (the design
    /// document's schema, `user_version` 0) is upgraded in place; its rows load as
    /// unsigned records.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::init(sql::open_file(path.as_ref())?)
    }

    /// A private in-memory database (for tests and simulations).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(sql::open_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        sql::migrate(&mut conn, &[&v1_original, &v2_signed_records])?;
        Ok(Self { conn })
    }

    /// Applies a batch of storage effects in one transaction, in order.
    ///
    /// A record lives in at most one table: a `Put` into [`Table::Owned`] removes the
    /// user's replica row and vice versa. When this returns `Ok` the batch is durable;
    /// on error nothing of it is applied. An empty batch does nothing.
    pub fn apply(&mut self, ops: &[StoreOp]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for op in ops {
            apply_one(&tx, op)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every stored record with its table, owned records first, each group ordered by
    /// username: what a restarting node hands back to the ring machine.
    pub fn load(&self) -> Result<Vec<(Record, Table)>> {
        let mut out = Vec::new();
        self.load_table(false, &mut out)?;
        self.load_table(true, &mut out)?;
        Ok(out)
    }

    /// The user's record and the table holding it, if any.
    pub fn get(&self, user: &str) -> Result<Option<(Record, Table)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT username, ip, port, version, pubkey_b64, sig_b64 FROM users \
             WHERE username = ?1",
        )?;
        let mut rows = stmt.query([user])?;
        if let Some(row) = rows.next()? {
            return Ok(Some((record_from_row(row, "users")?, Table::Owned)));
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT username, ip, port, version, pubkey_b64, sig_b64, owner FROM replic_users \
             WHERE username = ?1",
        )?;
        let mut rows = stmt.query([user])?;
        match rows.next()? {
            Some(row) => {
                let record = record_from_row(row, "replic_users")?;
                let owner = sql::text(row, 6, "replic_users")?;
                Ok(Some((record, Table::Replica { owner })))
            }
            None => Ok(None),
        }
    }

    /// Number of owned and replica records.
    pub fn counts(&self) -> Result<Counts> {
        let count = |sql: &str| -> Result<u64> {
            let n: i64 = self.conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
            u64::try_from(n).map_err(|_| corrupt("(count)", format!("negative count {n}")))
        };
        Ok(Counts {
            owned: count("SELECT COUNT(*) FROM users")?,
            replicas: count("SELECT COUNT(*) FROM replic_users")?,
        })
    }

    /// Number of replicas held for `owner` (`ip:port`).
    pub fn replica_count(&self, owner: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM replic_users WHERE owner = ?1")?
            .query_row([owner], |r| r.get(0))?;
        u64::try_from(n).map_err(|_| corrupt("replic_users", format!("negative count {n}")))
    }

    /// `PRAGMA integrity_check`: `true` when SQLite reports `ok`.
    pub fn integrity_check(&self) -> Result<bool> {
        sql::integrity_check(&self.conn)
    }

    /// The schema version stored in the file (after `open`, [`Self::SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<i64> {
        sql::schema_version(&self.conn)
    }

    /// The journal mode in force: `"wal"` for files, `"memory"` in memory.
    pub fn journal_mode(&self) -> Result<String> {
        sql::journal_mode(&self.conn)
    }

    /// Whether `PRAGMA synchronous` is `FULL` on this connection (the durability contract).
    pub fn synchronous_full(&self) -> Result<bool> {
        sql::synchronous_full(&self.conn)
    }

    fn load_table(&self, replicas: bool, out: &mut Vec<(Record, Table)>) -> Result<()> {
        let (table, columns) = if replicas {
            (
                "replic_users",
                "username, ip, port, version, pubkey_b64, sig_b64, owner",
            )
        } else {
            ("users", "username, ip, port, version, pubkey_b64, sig_b64")
        };
        // Keyset pagination; the first page has no lower bound (so even an empty
        // username, which the ring never stores, would not be skipped).
        let first = format!("SELECT {columns} FROM {table} ORDER BY username LIMIT ?1");
        let next =
            format!("SELECT {columns} FROM {table} WHERE username > ?2 ORDER BY username LIMIT ?1");
        let mut after: Option<String> = None;
        loop {
            let mut stmt =
                self.conn
                    .prepare_cached(if after.is_some() { &next } else { &first })?;
            let mut rows = match &after {
                Some(last) => stmt.query(params![LOAD_PAGE, last])?,
                None => stmt.query(params![LOAD_PAGE])?,
            };
            let mut n = 0;
            while let Some(row) = rows.next()? {
                n += 1;
                let record = record_from_row(row, table)?;
                let where_ = if replicas {
                    Table::Replica {
                        owner: sql::text(row, 6, table)?,
                    }
                } else {
                    Table::Owned
                };
                after = Some(record.user.clone());
                out.push((record, where_));
            }
            if n < LOAD_PAGE {
                return Ok(());
            }
        }
    }
}

impl std::fmt::Debug for ServerDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerDb")
            .field("path", &self.conn.path())
            .finish()
    }
}

fn apply_one(tx: &Transaction<'_>, op: &StoreOp) -> Result<()> {
    match op {
        StoreOp::Put { record, table } => {
            let version = i64::try_from(record.version).map_err(|_| {
                StoreError::OutOfRange(format!(
                    "record version {} of {:?} exceeds i64::MAX",
                    record.version, record.user
                ))
            })?;
            let ip = record.ip.to_string();
            match table {
                Table::Owned => {
                    tx.prepare_cached("DELETE FROM replic_users WHERE username = ?1")?
                        .execute([&record.user])?;
                    tx.prepare_cached(
                        "INSERT INTO users (username, ip, port, version, pubkey_b64, sig_b64) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT(username) DO UPDATE SET ip = excluded.ip, \
                         port = excluded.port, version = excluded.version, \
                         pubkey_b64 = excluded.pubkey_b64, sig_b64 = excluded.sig_b64",
                    )?
                    .execute(params![
                        record.user,
                        ip,
                        record.port,
                        version,
                        record.pubkey_b64,
                        record.sig_b64
                    ])?;
                }
                Table::Replica { owner } => {
                    tx.prepare_cached("DELETE FROM users WHERE username = ?1")?
                        .execute([&record.user])?;
                    tx.prepare_cached(
                        "INSERT INTO replic_users \
                         (username, ip, port, version, pubkey_b64, sig_b64, owner) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                         ON CONFLICT(username) DO UPDATE SET ip = excluded.ip, \
                         port = excluded.port, version = excluded.version, \
                         pubkey_b64 = excluded.pubkey_b64, sig_b64 = excluded.sig_b64, \
                         owner = excluded.owner",
                    )?
                    .execute(params![
                        record.user,
                        ip,
                        record.port,
                        version,
                        record.pubkey_b64,
                        record.sig_b64,
                        owner
                    ])?;
                }
            }
        }
        StoreOp::Delete { user } => {
            tx.prepare_cached("DELETE FROM users WHERE username = ?1")?
                .execute([user])?;
            tx.prepare_cached("DELETE FROM replic_users WHERE username = ?1")?
                .execute([user])?;
        }
        StoreOp::DropReplicas { owner } => {
            tx.prepare_cached("DELETE FROM replic_users WHERE owner = ?1")?
                .execute([owner])?;
        }
    }
    Ok(())
}

/// Columns 0-5: username, ip, port, version, pubkey_b64, sig_b64.
fn record_from_row(row: &Row<'_>, table: &'static str) -> Result<Record> {
    let user = sql::text(row, 0, table)?;
    let ip_text = sql::text(row, 1, table)?;
    let ip: Ipv4Addr = ip_text.parse().map_err(|_| {
        corrupt(
            table,
            format!("user {user:?}: bad IPv4 address {ip_text:?}"),
        )
    })?;
    let port_raw = sql::int(row, 2, table)?;
    let port = u16::try_from(port_raw)
        .map_err(|_| corrupt(table, format!("user {user:?}: bad port {port_raw}")))?;
    let version = sql::uint(row, 3, table)?;
    Ok(Record {
        ip,
        port,
        version,
        pubkey_b64: sql::text(row, 4, table)?,
        sig_b64: sql::text(row, 5, table)?,
        user,
    })
}

/// Schema 1: the design document's tables, exactly. `IF NOT EXISTS` so that a file
/// written by the original implementation (which never set `user_version`) is adopted.
fn v1_original(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             username TEXT NOT NULL UNIQUE,
             ip       TEXT NOT NULL,
             port     INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS replic_users (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             username TEXT NOT NULL UNIQUE,
             ip       TEXT NOT NULL,
             port     INTEGER NOT NULL,
             owner    TEXT NOT NULL
         );",
    )?;
    Ok(())
}

/// Schema 2: signed records (version, owner key, signature), an index for
/// `DROP_REPLICS`, and the one-table-per-record rule enforced on old data.
fn v2_signed_records(tx: &Transaction<'_>) -> Result<()> {
    for table in ["users", "replic_users"] {
        // A later original added some of these columns itself: add only what is missing.
        let existing = column_names(tx, table)?;
        for (column, decl) in [
            ("version", "INTEGER NOT NULL DEFAULT 0"),
            ("pubkey_b64", "TEXT NOT NULL DEFAULT ''"),
            ("sig_b64", "TEXT NOT NULL DEFAULT ''"),
        ] {
            if !existing.iter().any(|c| c == column) {
                tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
    }
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS replic_users_owner ON replic_users (owner);
         DELETE FROM replic_users WHERE username IN (SELECT username FROM users);",
    )?;
    Ok(())
}

fn column_names(tx: &Transaction<'_>, table: &str) -> Result<Vec<String>> {
    let mut stmt = tx.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let mut rows = stmt.query([table])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(sql::text(row, 0, "pragma_table_info")?);
    }
    Ok(out)
}
