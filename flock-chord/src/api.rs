//! The node's inputs and outputs: configuration, actions, events, counters.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::Frame;
use flock_proto::ring::Peer;

use crate::StoreOp;

/// Simulated or real time: the time since an epoch the driver picks (e.g. its start).
///
/// The node never reads a clock; every input carries `now`. A tokio driver passes
/// `start.elapsed()`; the simulator passes its virtual clock.
pub type Now = Duration;

/// Tunables of a ring node. [`Config::default`] matches the original's fault tolerance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Successor list length `r` (the original's `FAIL_TOLERANCE + 1` = 4). Every record
    /// lives on its owner and the owner's next `r - 1` successors.
    pub r: usize,
    /// Period of stabilization (a `GET_STATE` to the first successor) while the ring
    /// changes; 1.5 times it once the node's neighbours held for a few rounds.
    pub stabilize_interval: Duration,
    /// Period of the predecessor liveness check; skipped while the predecessor's own
    /// stabilize rounds arrive (they show it alive).
    pub ping_interval: Duration,
    /// Retransmission timeout of one request.
    pub rto: Duration,
    /// Tries before a peer that does not answer is declared dead (liveness checks of a
    /// known member: one more, at `rto / 2`).
    pub dead_after: u32,
    /// Period between two finger refreshes (one finger per tick) while fingers change;
    /// up to 16 times it while they hold.
    pub fix_fingers_interval: Duration,
    /// Period of replica anti-entropy (`SYNC` to the replica holders whose copy may
    /// differ, or whose lease is due).
    pub sync_interval: Duration,
    /// How long a replica outlives the last `SYNC` that covered it.
    pub lease: Duration,
    /// Route with finger tables (`false`: successor list only, for comparison).
    pub fingers: bool,
    /// Where to send `RING DISCOVER` when joining (may include a broadcast address).
    /// Empty: this node founds a new ring and owns the whole hash space.
    pub bootstrap: Vec<SocketAddrV4>,
    /// How long to collect `HERE` answers before choosing the widest range.
    pub discover_window: Duration,
    /// Whether a node with a bootstrap list may found a ring when no member answers: it
    /// probes for [`Config::probe_window`] first (found-or-join, e.g. a server started
    /// without `--join` that broadcasts). `false`: keep looking until a ring answers.
    pub may_found: bool,
    /// How long a probing node listens for a ring before founding one (plus up to half of
    /// it as a jitter drawn from the seed); its `DISCOVER` is sent three times a window.
    pub probe_window: Duration,
    /// Longest a lookup for a client may take before it is abandoned (clients wait 3 s).
    pub lookup_timeout: Duration,
    /// Most referrals one lookup follows.
    pub max_hops: u32,
    /// Most outstanding requests, lookups, transfers and queued client requests (each).
    pub max_pending: usize,
    /// Name reported in `STATUS`.
    pub name: String,
    /// Every ring frame this node receives was authenticated by its driver (a cluster
    /// key): members are trusted to be who they say, so requests need no address cookie
    /// (no `COOKIE` round trip). `false` (default): an open ring, cookies required.
    pub authenticated: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            r: 4,
            stabilize_interval: Duration::from_millis(500),
            ping_interval: Duration::from_millis(500),
            rto: Duration::from_millis(200),
            dead_after: 4,
            fix_fingers_interval: Duration::from_millis(500),
            sync_interval: Duration::from_secs(2),
            lease: Duration::from_secs(12),
            fingers: true,
            bootstrap: Vec::new(),
            discover_window: Duration::from_millis(300),
            may_found: false,
            probe_window: Duration::from_millis(1200),
            lookup_timeout: Duration::from_millis(2500),
            max_hops: 48,
            max_pending: 4096,
            name: String::from("flock"),
            authenticated: false,
        }
    }
}

/// One effect for the driver, taken with [`crate::Node::poll_action`] in order.
///
/// Exhaustive on purpose (as is [`crate::StoreOp`]): a driver must perform every effect,
/// so a new one is a breaking change that the driver's `match` reports. [`Event`], which
/// a driver may only log, is `#[non_exhaustive]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `frame` to `to` (from the node's own socket).
    Send {
        /// Destination.
        to: SocketAddrV4,
        /// The frame; encode with `Frame::encode`.
        frame: Frame<'static>,
    },
    /// Persist this storage effect before performing the actions after it.
    Store(StoreOp),
    /// Tell the embedding application something happened.
    Event(Event),
}

/// Things the embedding application may want to log or show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Nobody answered: the node founded a new ring and owns the whole space `[lo, hi]`.
    Founded {
        /// Ring position.
        id: u64,
        /// First hash owned.
        lo: u64,
        /// Last hash owned (below `lo` when wrapping).
        hi: u64,
    },
    /// The node joined a ring and is a member now, owning `[lo, hi]`.
    Joined {
        /// Ring position.
        id: u64,
        /// First hash owned.
        lo: u64,
        /// Last hash owned (below `lo` when wrapping).
        hi: u64,
    },
    /// The owned range changed.
    RangeChanged {
        /// First hash owned.
        lo: u64,
        /// Last hash owned.
        hi: u64,
    },
    /// The first successor changed (`None`: alone).
    SuccessorChanged {
        /// The new first successor.
        succ: Option<Peer>,
    },
    /// The predecessor changed.
    PredecessorChanged {
        /// The new predecessor.
        pred: Option<Peer>,
    },
    /// A peer stopped answering and was removed.
    PeerDead {
        /// Its address.
        addr: SocketAddrV4,
    },
    /// Records of a grown range arrived from the replicas; the range is served again.
    TakeoverDone {
        /// First hash taken over.
        lo: u64,
        /// Last hash taken over.
        hi: u64,
        /// How many records arrived.
        records: usize,
    },
    /// A graceful leave finished: the node handed everything over and is silent now.
    Left,
    /// A `DISCOVER` / `DISCOVER_SERVER` arrived: the original answers with the server's
    /// name or IP, raw, which is the driver's business.
    Discovery {
        /// Who asked.
        from: SocketAddrV4,
        /// Where the answer goes.
        reply_to: SocketAddrV4,
        /// `true` for `DISCOVER` (answer: name), `false` for `DISCOVER_SERVER` (answer: IP).
        name: bool,
    },
}

/// Monotonic counters by name (sorted, for `STATUS` and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub(crate) BTreeMap<&'static str, u64>);

impl Counters {
    pub(crate) fn inc(&mut self, name: &'static str) {
        *self.0.entry(name).or_insert(0) += 1;
    }

    pub(crate) fn add(&mut self, name: &'static str, n: u64) {
        *self.0.entry(name).or_insert(0) += n;
    }

    /// The value of counter `name` (0 if never touched).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// All counters, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }
}

/// Hop statistics of the lookups this node started (client requests only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopStats {
    /// `histogram[h]` = lookups answered after `h` FIND messages (0: the entry node owned
    /// the key). The last bucket (65535) collects everything above.
    pub histogram: Vec<u64>,
}

impl HopStats {
    pub(crate) fn record(&mut self, hops: u32) {
        let h = (hops as usize).min(65_535);
        if self.histogram.len() <= h {
            self.histogram.resize(h + 1, 0);
        }
        self.histogram[h] += 1;
    }
}
