//! Storage effects the ring emits, in order with the frames that depend on them.
//!
//! The node keeps its records in memory; every change comes out as a [`StoreOp`] so a
//! driver can persist it (in one transaction per batch) before sending the frames that
//! follow it in the action queue. On restart the driver loads the stored records and
//! hands them back to the node.

use flock_proto::Record;

/// Which table a record lives in (the design document's `users` and `replic_users`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Records this node owns (`users`).
    Owned,
    /// Replicas held for another node (`replic_users`), with the owner's identity (`ip:port`).
    Replica {
        /// The owning node, `ip:port`.
        owner: String,
    },
}

/// One storage effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// Insert or replace `record` in `table` (a record is in at most one table at a time).
    Put {
        /// The record.
        record: Record,
        /// Where it goes.
        table: Table,
    },
    /// Remove the user's record from whichever table holds it.
    Delete {
        /// Username.
        user: String,
    },
    /// Remove every replica held for `owner` (`DROP_REPLICS`).
    DropReplicas {
        /// The owning node, `ip:port`.
        owner: String,
    },
}
