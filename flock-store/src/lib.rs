//! Flock's storage adapters: SQLite (rusqlite, bundled) databases for ring servers and
//! clients, and the client's key files.
//!
//! - [`ServerDb`]: one file per ring node; applies the [`flock_chord::StoreOp`] batches
//!   the ring machine emits, one durable transaction per batch, and loads them back
//!   after a restart.
//! - [`ClientDb`]: a client's `chats/<user>.db` (messages, the sealed outbox, pinned
//!   contact keys, duplicate suppression), private at rest: message text, names and
//!   keys sealed with AES-256-GCM under a key derived from the user's password
//!   (scrypt), names looked up by keyed hashes, the file `0600`.
//! - [`KeyDir`]: `keys/<user>/private.pem`, `public.pem`, `contacts/<peer>.pem`.
//!
//! Both databases run in WAL mode with `synchronous=FULL`, migrate their schema on open
//! (`PRAGMA user_version`) and cache their prepared statements. Nothing here reads a
//! clock: callers pass times in.
//!
//! ```
//! use flock_chord::{StoreOp, Table};
//! use flock_proto::Record;
//! use flock_store::ServerDb;
//!
//! # fn main() -> Result<(), flock_store::StoreError> {
//! let mut db = ServerDb::open_in_memory()?;
//! let alice = Record {
//!     user: "alice".into(),
//!     ip: "10.0.0.7".parse().expect("valid address"),
//!     port: 5000,
//!     version: 1,
//!     pubkey_b64: String::new(),
//!     sig_b64: String::new(),
//! };
//! // One batch, one transaction: durable once `apply` returns Ok.
//! db.apply(&[StoreOp::Put { record: alice.clone(), table: Table::Owned }])?;
//! assert_eq!(db.get("alice")?, Some((alice, Table::Owned)));
//! assert_eq!(db.counts()?.owned, 1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod atrest;
mod client;
mod error;
mod keys;
mod server;
mod sql;
mod username;

pub use client::{
    ChatSummary, ClientDb, Contact, DEFAULT_SEEN_IDS_PER_SENDER, Direction, Message, MessageRow,
    MessageStatus, OutboxEntry, OutboxId, Part, PendingKey, PinOutcome, retry_delay_ms,
};
pub use error::{Result, StoreError};
pub use keys::KeyDir;
pub use server::{Counts, ServerDb};
pub use username::validate_username;
