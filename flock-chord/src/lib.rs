//! Flock's Chord ring as a pure, deterministic sans-IO state machine, with a seeded
//! network simulator to prove it.
//!
//! A [`Node`] never touches a socket, a clock or OS randomness: time comes in as `now`
//! (a [`Duration`](std::time::Duration) since an epoch the driver picks), randomness from
//! the seed, datagrams as parsed [`Frame`](flock_proto::Frame)s, and everything it wants
//! done comes out of one ordered queue of [`Action`]s.
//!
//! ```
//! use std::net::SocketAddrV4;
//! use std::time::Duration;
//! use flock_chord::{Action, Config, FakeVerifier, Node};
//!
//! let me: SocketAddrV4 = "10.0.0.1:12345".parse().unwrap();
//! let now = Duration::ZERO;
//! // An empty bootstrap list founds a new ring; otherwise the node discovers and joins.
//! let mut node = Node::new(Config::default(), me, 42, now, Box::new(FakeVerifier));
//! // The driver loop:
//! //   on a datagram:  node.handle_datagram(now, from, Frame::decode(&buf)?);
//! //   on a timer:     node.handle_timeout(now);
//! // then drain every action, in order:
//! while let Some(action) = node.poll_action() {
//!     match action {
//!         Action::Send { to, frame } => { /* frame.encode(&mut buf); socket.send_to(&buf, to) */ }
//!         Action::Store(op) => { /* persist before performing the following actions */ }
//!         Action::Event(e) => { /* log */ }
//!     }
//! }
//! // and sleep until the next deadline (never in the past):
//! let wake_at = node.poll_timeout();
//! assert!(wake_at.is_some());
//! node.handle_timeout(wake_at.unwrap());
//! ```
//!
//! See `README.md` for the ring design (ids, ranges, replication, cookies) and the
//! simulator commands.
#![warn(missing_docs)]

mod api;
mod node;
pub mod sim;
mod status;
mod store;
mod verify;

pub use api::{Action, Config, Counters, Event, HopStats, Now};
pub use flock_proto::ring::Peer;
pub use flock_proto::ring_hash;
pub use flock_proto::space::{self, MODULUS, dist};
pub use node::Node;
pub use status::{NodePhase, Status};
pub use store::{StoreOp, Table};
pub use verify::{FakeVerifier, RecordVerifier, RsaVerifier};
