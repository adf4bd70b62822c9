//! A typed snapshot of a node's state, for drivers to render (`STATUS`, `CHECKSUM`) and
//! for tests to assert on.

use std::net::SocketAddrV4;

use flock_proto::ring::Peer;

use crate::api::{Counters, HopStats};

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodePhase {
    /// Deciding whether to found a ring or join one ([`crate::Config::may_found`]).
    Probing,
    /// Looking for a ring to join (it keeps looking until one answers).
    Discovering,
    /// Waiting for the `WELCOME` and records of the node it joins through.
    Joining,
    /// A ring member.
    Member,
    /// Handing its records over before going silent.
    Leaving,
    /// Gone: a graceful leave finished.
    Left,
}

impl NodePhase {
    /// Lower-case name (`"member"`, `"probing"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probing => "probing",
            Self::Discovering => "discovering",
            Self::Joining => "joining",
            Self::Member => "member",
            Self::Leaving => "leaving",
            Self::Left => "left",
        }
    }
}

impl std::fmt::Display for NodePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`crate::Node::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The node's name ([`crate::Config::name`]).
    pub name: String,
    /// Its identity, `ip:port`.
    pub addr: SocketAddrV4,
    /// Where it is in its life.
    pub phase: NodePhase,
    /// Ring position (meaningful once a member).
    pub id: u64,
    /// Owned range `[lo, hi]`, inclusive (`hi < lo` when it wraps).
    pub range: (u64, u64),
    /// The predecessor, if known.
    pub predecessor: Option<Peer>,
    /// The successor list (empty: alone).
    pub successors: Vec<Peer>,
    /// The distinct nodes of the finger table.
    pub fingers: Vec<Peer>,
    /// Records held (owned and replicas).
    pub records: usize,
    /// Records owned.
    pub owned: usize,
    /// Records hashing into the owned range (what [`Status::digest`] covers).
    pub digest_records: u64,
    /// Order-independent digest of the records in the owned range (`CHECKSUM`).
    pub digest: u64,
    /// Whether no part of the range is still being taken over from replicas.
    pub settled: bool,
    /// Counters (frames refused, peers declared dead, ...).
    pub counters: Counters,
    /// Hop statistics of client lookups started here.
    pub hops: HopStats,
}

impl Status {
    /// Whether the node is a ring member.
    pub fn is_member(&self) -> bool {
        self.phase == NodePhase::Member
    }
}
