//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The original implementation's client tables, as its files have them.
pub const ORIGINAL_CLIENT_SCHEMA: &str = "
    CREATE TABLE messages (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        author    TEXT NOT NULL,
        receiver  TEXT NOT NULL,
        text      TEXT NOT NULL,
        date_time DATETIME DEFAULT CURRENT_TIMESTAMP,
        seen      BOOLEAN DEFAULT 0
    );
    CREATE TABLE pending_messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        recipient  TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    );";

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
