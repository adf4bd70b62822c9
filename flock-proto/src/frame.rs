//! Every Flock datagram as a typed value.
//!
//! A [`Frame`] borrows its text fields from the datagram it was decoded from
//! (`Cow::Borrowed`); [`Frame::into_owned`] gives a `Frame<'static>` that can outlive it.
//! Encoding writes exactly the bytes the original Python implementation writes.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ring::RingFrame;

/// A signed registration: `REGISTER <user> <ip> <port> <version> <pubkey_b64> <sig_b64>`.
///
/// The signature is RSA-PSS (SHA-256, max salt) over
/// [`Register::signed_text`] = `user|ip|port|version|pubkey_b64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Register<'a> {
    /// The username (validated by [`crate::validate_username`]).
    pub user: Cow<'a, str>,
    /// The address the user receives messages on.
    pub ip: Ipv4Addr,
    /// The UDP port the user receives messages on (1..=65535).
    pub port: u16,
    /// Monotonic version (the client's clock in nanoseconds); positive, fits `i64`.
    pub version: u64,
    /// Standard base64 of the user's SPKI PEM public key text.
    pub pubkey_b64: Cow<'a, str>,
    /// Standard base64 of the RSA-PSS signature over [`Register::signed_text`].
    pub sig_b64: Cow<'a, str>,
}

/// Where a forwarded request's answer goes: `<ans_ip> <ans_port>`, or `.` for "no reply".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerTo {
    /// Reply to this client address.
    Addr(SocketAddrV4),
    /// The original's `.`: do not reply.
    Nobody,
}

/// A record as the original's replication frames carry it:
/// `<user> <ip> <port> <version> <pubkey_b64>` (no signature: never trusted by our ring).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LegacyRecord<'a> {
    /// Username.
    pub user: Cow<'a, str>,
    /// Address.
    pub ip: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Version, when the frame carries one (the design document's form has none).
    pub version: Option<u64>,
    /// Public key, when the frame carries one.
    pub pubkey_b64: Option<Cow<'a, str>>,
}

/// `OK ...` replies, classified by shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OkReply<'a> {
    /// `OK <lo> <hi>`: answer to RANGE.
    Range {
        /// Lowest hash owned (inclusive).
        lo: u64,
        /// Highest hash owned (inclusive).
        hi: u64,
    },
    /// `OK User '<user>' in (<ip>:<port>) successfully registered`.
    Registered {
        /// Username.
        user: Cow<'a, str>,
        /// Registered address.
        ip: Ipv4Addr,
        /// Registered port.
        port: u16,
    },
    /// `OK <ip> <port> <pubkey_b64> <version>`: answer to RESOLVE.
    Resolved {
        /// The user's address.
        ip: Ipv4Addr,
        /// The user's port.
        port: u16,
        /// The user's public key (base64 of SPKI PEM).
        pubkey_b64: Cow<'a, str>,
        /// The record's version.
        version: u64,
    },
    /// `OK <lo> <hi> <pred_ip> <succ_ip or _>`: the original's JOIN reply.
    Joined {
        /// Lowest hash of the joiner's new range.
        lo: u64,
        /// Highest hash of the joiner's new range.
        hi: u64,
        /// The joiner's predecessor.
        pred: Ipv4Addr,
        /// The joiner's successor, `_` for none.
        succ: Option<Ipv4Addr>,
    },
    /// `OK {json}`: answer to STATUS, SNAPSHOT and CHECKSUM (compact, sorted keys).
    Json(Cow<'a, str>),
    /// A bare `OK`.
    Bare,
}

/// `ERROR ...` replies, with the original's exact texts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorReply<'a> {
    /// `ERROR Invalid registration payload`.
    InvalidPayload,
    /// `ERROR Username belongs to a different identity key`.
    DifferentKey,
    /// `ERROR Invalid registration signature`.
    InvalidSignature,
    /// `ERROR Stale registration version`.
    StaleVersion,
    /// `ERROR 404 User not found`.
    NotFound,
    /// Any other `ERROR <text>` (our own errors: rate limited, busy, bad request, ...).
    Other(Cow<'a, str>),
}

/// One datagram of the Flock protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame<'a> {
    // ---- discovery and liveness -------------------------------------------------------
    /// `DISCOVER`: broadcast by servers and clients; a server answers with its name, raw.
    Discover,
    /// `DISCOVER_SERVER` (multicast, reply to the sender) or
    /// `DISCOVER_SERVER:<ip>:<port>` (sent by a discovery proxy: reply to that address).
    DiscoverServer {
        /// Where the answer goes, for the proxied form.
        reply_to: Option<SocketAddrV4>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,

    // ---- client to server ---------------------------------------------------------------
    /// `RANGE`.
    Range,
    /// The signed 7-field `REGISTER`.
    Register(Register<'a>),
    /// The design document's unsigned `REGISTER <user> <ip> <port>`.
    RegisterLegacy {
        /// Username.
        user: Cow<'a, str>,
        /// Address.
        ip: Ipv4Addr,
        /// Port.
        port: u16,
    },
    /// `RESOLVE <user>`.
    Resolve {
        /// Username.
        user: Cow<'a, str>,
    },
    /// The original's forwarded `REGISTER <ans_ip> <ans_port> <user> <ip> <port> <version> <pubkey_b64> <sig_b64>`.
    ForwardRegister {
        /// Who gets the answer.
        answer: AnswerTo,
        /// The registration.
        register: Register<'a>,
    },
    /// The original's forwarded `RESOLVE <ans_ip> <ans_port> <user>`.
    ForwardResolve {
        /// Who gets the answer.
        answer: SocketAddrV4,
        /// Username.
        user: Cow<'a, str>,
    },
    /// Admin `STATUS`.
    Status,
    /// Admin `SNAPSHOT`.
    Snapshot,
    /// Admin `CHECKSUM`.
    Checksum,

    // ---- replies ------------------------------------------------------------------------
    /// `OK ...`.
    Ok(OkReply<'a>),
    /// `ERROR ...`.
    Error(ErrorReply<'a>),

    // ---- the original's server-to-server frames (parsed, never trusted) -----------------
    /// `JOIN`.
    Join,
    /// `PRED_CHANGE <ip>`.
    PredChange {
        /// The new predecessor.
        ip: Ipv4Addr,
    },
    /// `SUCC <ip> [<ip>...]`.
    Succ {
        /// The successor list.
        ips: Vec<Ipv4Addr>,
    },
    /// `FIX`.
    Fix,
    /// `REPLIC <user> <ip> <port> [<version> <pubkey_b64>]`.
    Replic(LegacyRecord<'a>),
    /// `TAKEOVER <user> <ip> <port> [<version> <pubkey_b64>]`.
    Takeover(LegacyRecord<'a>),
    /// `DROP_REPLICS <owner_ip>`.
    DropReplics {
        /// The owner whose replicas are dropped.
        owner: Ipv4Addr,
    },
    /// `KILL`: parsed so it can be counted and refused; our servers never obey it.
    Kill,

    // ---- our ring (server-to-server extension, never seen by original peers) -----------
    /// `RING ...`: our authenticated, id-carrying ring protocol (see [`crate::ring`]).
    Ring(RingFrame),

    // ---- client to client ---------------------------------------------------------------
    /// `MESSAGE <sender> <payload_b64>`.
    Message {
        /// Claimed sender (unauthenticated in the original format).
        sender: Cow<'a, str>,
        /// Sealed payload, standard base64.
        payload_b64: Cow<'a, str>,
    },
    /// `PUBKEY_REQ <requester>`.
    PubkeyReq {
        /// Who asks.
        requester: Cow<'a, str>,
    },
    /// `PUBKEY_RES <user> <pubkey_b64>`.
    PubkeyRes {
        /// Whose key.
        user: Cow<'a, str>,
        /// The key (base64 of SPKI PEM).
        pubkey_b64: Cow<'a, str>,
    },

    // ---- client-to-client extension (only with peers that advertise it) ---------------
    /// `HELLO <user> <features>`: advertises extension support (`features` is a
    /// comma-separated list, e.g. `ack1`). Original peers ignore it.
    Hello {
        /// Who says hello.
        user: Cow<'a, str>,
        /// Comma-separated feature tokens.
        features: Cow<'a, str>,
    },
    /// `SMESSAGE <sender> <id> <payload_b64> <sig_b64>`: a message with an id, signed by
    /// the sender's pinned key over `SMESSAGE|sender|recipient|id|payload_b64`.
    SecureMessage {
        /// Sender.
        sender: Cow<'a, str>,
        /// Message id, unique per sender.
        id: u64,
        /// Sealed payload.
        payload_b64: Cow<'a, str>,
        /// Sender's signature.
        sig_b64: Cow<'a, str>,
    },
    /// `ACK <from> <id> <sig_b64>`: the recipient acknowledges message `id`, signed over
    /// `ACK|from|to|id`.
    Ack {
        /// The acknowledging user (the message's recipient).
        from: Cow<'a, str>,
        /// Acknowledged message id.
        id: u64,
        /// Recipient's signature.
        sig_b64: Cow<'a, str>,
    },
}
