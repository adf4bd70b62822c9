//! Datagrams sent, by message type: what upkeep costs.

use std::collections::BTreeMap;

/// The type under which frames that are not ring frames (answers to clients, `PONG`, ...)
/// are counted.
pub const CLIENT_VERB: &str = "(client)";

/// Datagrams sent by the simulated nodes, per ring verb (`GET_STATE`, `SYNC`, ...), counted
/// when a node emits them (before loss or partitions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic(BTreeMap<&'static str, u64>);

impl Traffic {
    pub(super) fn count(&mut self, verb: &'static str) {
        *self.0.entry(verb).or_insert(0) += 1;
    }

    /// Datagrams of type `verb` so far.
    pub fn get(&self, verb: &str) -> u64 {
        self.0.get(verb).copied().unwrap_or(0)
    }

    /// Datagrams of every type so far.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Every type with its count, sorted by type.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    /// What was sent after `earlier` (a snapshot of the same counter).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, v)| (*k, v.saturating_sub(earlier.get(k))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }
}
