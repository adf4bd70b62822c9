//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in a store operation.
///
/// Bad data read back from disk (a row of the wrong type, an address that does not
/// parse) is reported as [`StoreError::Corrupt`], never as a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error (I/O, locking, constraint, disk full, ...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A file-system operation on a key file or directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A stored row does not decode (wrong type, unparsable address, out-of-range number).
    #[error("corrupt row in table {table}: {reason}")]
    Corrupt {
        /// The table the row was read from.
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The database was written by a newer version of Flock; opening it could lose data.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// The client database belongs to a different user than the one opening it.
    #[error("client database belongs to {found:?}, not {expected:?}")]
    WrongOwner {
        /// The user who asked to open it.
        expected: String,
        /// The user recorded in the file.
        found: String,
    },

    /// A value cannot be stored (for example a record version above `i64::MAX`).
    #[error("value out of range: {0}")]
    OutOfRange(String),

    /// A username is not a safe path component (3-20 letters, digits or `_`).
    #[error("invalid username {0:?}: must be 3-20 letters, digits or '_'")]
    InvalidUsername(String),

    /// The password does not unlock the client database's encryption key.
    #[error("wrong password for this client database")]
    WrongPassword,

    /// The operating system's random generator failed.
    #[error("random generator failed: {0}")]
    Random(String),

    /// The row to update does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn corrupt(table: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.into(),
    }
}
