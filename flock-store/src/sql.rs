//! Helpers shared by the server and client databases: opening with the right pragmas,
//! schema migrations keyed on `PRAGMA user_version`, and strict column decoding.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError, corrupt};

/// How long a connection waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (the server and client use fewer than this).
const STATEMENT_CACHE: usize = 64;

/// One schema step: runs inside the migration's transaction.
pub(crate) type Migration<'a> = &'a dyn Fn(&Transaction<'_>) -> Result<()>;

/// Opens (creating if needed) a database file with WAL and `synchronous=FULL`.
pub(crate) fn open_file(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    Ok(conn)
}

/// Opens a private in-memory database (same pragmas; WAL does not apply in memory).
pub(crate) fn open_memory() -> Result<Connection> {
    let conn = Connection::open_in_memory()?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL must be set outside a transaction; in-memory databases answer "memory".
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // FULL: a commit returns only after the WAL is synced, so an acknowledged
    // transaction survives power loss, not just a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// The current journal mode, lower case (`"wal"`, `"memory"`, ...).
pub(crate) fn journal_mode(conn: &Connection) -> Result<String> {
    Ok(conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?)
}

/// Whether `PRAGMA synchronous` is `FULL` (2).
pub(crate) fn synchronous_full(conn: &Connection) -> Result<bool> {
    let level: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
    Ok(level == 2)
}

/// The schema version stored in the file (`PRAGMA user_version`).
pub(crate) fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Applies every migration the file has not seen, each in its own IMMEDIATE transaction
/// together with the `user_version` bump, so a crash leaves the file at a whole version
/// and two processes opening the same file never run a step twice.
pub(crate) fn migrate(conn: &mut Connection, steps: &[Migration<'_>]) -> Result<()> {
    let latest = i64::try_from(steps.len())
        .map_err(|_| StoreError::OutOfRange("too many migrations".into()))?;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = schema_version(&tx)?;
        if found > latest {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: latest,
            });
        }
        if found == latest {
            return Ok(());
        }
        let step = usize::try_from(found)
            .ok()
            .and_then(|i| steps.get(i))
            .ok_or_else(|| corrupt("(schema)", format!("user_version {found}")))?;
        step(&tx)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

/// `PRAGMA integrity_check`: true when SQLite answers exactly `ok`.
pub(crate) fn integrity_check(conn: &Connection) -> Result<bool> {
    // (1): stop after the first problem; we only need a yes/no.
    let first: String = conn.query_row("PRAGMA integrity_check(1)", [], |row| row.get(0))?;
    Ok(first == "ok")
}

/// A TEXT column, strictly (no NULL, no other type).
pub(crate) fn text(row: &Row<'_>, idx: usize, table: &'static str) -> Result<String> {
    match row.get_ref(idx)? {
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map_err(|_| corrupt(table, format!("column {idx} is not UTF-8"))),
        other => Err(corrupt(
            table,
            format!("column {idx}: expected text, found {:?}", other.data_type()),
        )),
    }
}

/// A nullable TEXT column.
pub(crate) fn opt_text(row: &Row<'_>, idx: usize, table: &'static str) -> Result<Option<String>> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        _ => text(row, idx, table).map(Some),
    }
}

/// An INTEGER column, strictly.
pub(crate) fn int(row: &Row<'_>, idx: usize, table: &'static str) -> Result<i64> {
    match row.get_ref(idx)? {
        ValueRef::Integer(i) => Ok(i),
        other => Err(corrupt(
            table,
            format!(
                "column {idx}: expected integer, found {:?}",
                other.data_type()
            ),
        )),
    }
}

/// A nullable INTEGER column.
pub(crate) fn opt_int(row: &Row<'_>, idx: usize, table: &'static str) -> Result<Option<i64>> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        _ => int(row, idx, table).map(Some),
    }
}

/// A non-negative INTEGER column as `u64`.
pub(crate) fn uint(row: &Row<'_>, idx: usize, table: &'static str) -> Result<u64> {
    let v = int(row, idx, table)?;
    u64::try_from(v).map_err(|_| corrupt(table, format!("column {idx}: negative value {v}")))
}
