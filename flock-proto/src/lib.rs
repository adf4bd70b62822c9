//! Flock's wire protocol: every datagram as a typed [`Frame`], a nom codec that reads and
//! writes exactly the original Python implementation's bytes, the ring hash, and the
//! original's field rules.
//!
//! The crate is sans-IO: no sockets, no clocks, no randomness. Feed it the bytes of one
//! received datagram; it gives back a value that borrows from them. Encode into a buffer
//! you own and send it yourself.
//!
//! ```
//! use flock_proto::{Frame, Record};
//! use std::net::Ipv4Addr;
//!
//! // A client asks where bob is.
//! let datagram = b"RESOLVE bob";
//! let frame = Frame::decode(datagram).expect("valid frame");
//!
//! let bob = Record {
//!     user: "bob".into(),
//!     ip: Ipv4Addr::new(10, 0, 0, 2),
//!     port: 40000,
//!     version: 1_700_000_000_000_000_000,
//!     pubkey_b64: "TUlJQg==".into(),
//!     sig_b64: "c2ln".into(),
//! };
//! let reply = match frame {
//!     Frame::Resolve { user } if user == "bob" => Frame::resolved(&bob),
//!     Frame::Resolve { .. } => Frame::not_found(),
//!     _ => return,
//! };
//!
//! let mut out = Vec::new();
//! reply.encode(&mut out);
//! assert_eq!(out, b"OK 10.0.0.2 40000 TUlJQg== 1700000000000000000");
//! assert_eq!(Frame::not_found().encode_to_vec(), b"ERROR 404 User not found");
//! ```
//!
//! # What is where
//! - [`Frame`] with [`Frame::decode`], [`Frame::encode`], [`Frame::into_owned`];
//!   the parts [`Register`], [`AnswerTo`], [`OkReply`], [`ErrorReply`], [`LegacyRecord`].
//! - Discovery replies, which have no verb: [`decode_discover_reply`],
//!   [`decode_discover_server_reply`] and their encoders.
//! - [`hash`]: [`ring_hash`], [`HASH_MOD`], the original's range split.
//! - [`space`]: the hash space's intervals (inclusive, half-open, strictly between).
//! - [`signed_text`]: the text a registration's signature covers.
//! - [`validate`]: the username, port and version rules.
//! - [`limits`]: datagram sizes and field lengths.
//! - [`ring`]: our own server-to-server frames (`RING ...`).
//! - `client` (cargo feature `client`, on by default): the sans-IO client machine. Without
//!   it the crate is the codec alone, with no RSA dependency.
//!
//! # Decoding rules
//! Fields are separated by exactly one space; there is no terminator. Numbers must be
//! canonical decimals (no sign, no leading zeros) and IPs dotted quads, so every datagram
//! that decodes re-encodes to the same bytes (one exception: the forwarded `REGISTER`
//! with `.` as answer address accepts `.` or `0` as its port and always writes `0`).
//! `REGISTER` fields must follow the original's rules ([`validate`]); a `REGISTER` that
//! breaks them fails with [`DecodeError::BadField`] (`verb == "REGISTER"`), to which a
//! server answers `ERROR Invalid registration payload`.
#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
mod decode;
mod discovery;
mod encode;
mod error;
mod frame;
pub mod hash;
pub mod limits;
mod record;
pub mod ring;
pub mod space;
pub mod validate;
mod verbs;

pub use discovery::{
    MAX_MEMBERS, MEMBERS_REQUEST, decode_discover_reply, decode_discover_server_reply,
    decode_members_reply, encode_discover_reply, encode_discover_server_reply,
    encode_members_reply,
};
pub use error::DecodeError;
pub use frame::{AnswerTo, ErrorReply, Frame, LegacyRecord, OkReply, Register};
pub use hash::{HASH_MOD, ring_hash, split_range};
pub use record::{Record, signed_text};
pub use validate::{ValidationError, validate_username};
pub use verbs::Verb;
