//! Every Flock datagram as a typed value.
//!
//! A [`Frame`] borrows its text fields from the datagram it was decoded from
//! (`Cow::Borrowed`); [`Frame::into_owned`] gives a `Frame<'static>` that can outlive it.
//! Encoding writes exactly the bytes the original Python implementation writes.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::DecodeError;
use crate::limits::MAX_DATAGRAM;
use crate::record::Record;
use crate::ring::RingFrame;
use crate::validate::{ValidationError, validate_registration};
use crate::verbs::Verb;

/// A signed registration: `REGISTER <user> <ip> <port> <version> <pubkey_b64> <sig_b64>`.
///
/// The signature is RSA-PSS (SHA-256, max salt) over
/// [`Register::signed_text`] = `user|ip|port|version|pubkey_b64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Register<'a> {
    /// The username (validated by [`crate::validate::validate_username`]).
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
    /// The original's `.`: do not reply. Written `. 0` (the port is a placeholder that
    /// parses as a number); `. .` is accepted too.
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
    /// `OK <ip> <port>`: the design document's answer to `RESOLVE`, for a record
    /// registered with the unsigned 3-field `REGISTER` (no key, no version).
    ResolvedLegacy {
        /// The user's address.
        ip: Ipv4Addr,
        /// The user's port.
        port: u16,
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
    /// `LOOKUP <user> <rid>`: the lookup extension (our servers; the original's ignore
    /// the unknown verb). `rid` is an unpredictable request id that the answer echoes.
    Lookup {
        /// Username.
        user: Cow<'a, str>,
        /// Request id.
        rid: u64,
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
    /// `FOUND <rid> <user> <ip> <port> <version> <pubkey_b64> <sig_b64>`: the answer to
    /// [`Frame::Lookup`] `rid`, the whole signed record (the signature covers
    /// [`Register::signed_text`], so the client checks it names the user it asked for).
    Found {
        /// The request id being answered.
        rid: u64,
        /// The record as registered, signature included.
        record: Register<'a>,
    },
    /// `NOTFOUND <rid>`: the answer to [`Frame::Lookup`] `rid` when nobody has the name.
    NotFound {
        /// The request id being answered.
        rid: u64,
    },

    // ---- the original's server-to-server frames (parsed, never trusted) -----------------
    /// `JOIN`.
    Join,
    /// `PRED_CHANGE <ip>`.
    PredChange {
        /// The new predecessor.
        ip: Ipv4Addr,
    },
    /// `SUCC <ip> [<ip>...]` (a bare `SUCC`, an empty list, is accepted too).
    Succ {
        /// The successor list.
        ips: Vec<Ipv4Addr>,
    },
    /// `FIX`.
    Fix,
    /// `REPLIC <user> <ip> <port> [<version> <pubkey_b64>]` (the optional fields are
    /// written only when both are present).
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

// ---- codec entry points ---------------------------------------------------------------------

impl<'a> Frame<'a> {
    /// Decodes one whole datagram.
    ///
    /// Checks, in order: the length (at most [`MAX_DATAGRAM`](crate::limits::MAX_DATAGRAM)
    /// bytes, else [`DecodeError::TooLong`]), emptiness, UTF-8, then the grammar. Text
    /// fields borrow from `datagram`. Datagrams starting with `RING ` go to
    /// [`crate::ring::decode`]. Bad input never panics.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLong(datagram.len()));
        }
        if datagram.is_empty() {
            return Err(DecodeError::Empty);
        }
        let text = std::str::from_utf8(datagram).map_err(|_| DecodeError::NotUtf8)?;
        crate::decode::frame(text)
    }

    /// Appends exactly the bytes the original sends for this frame to `out`.
    ///
    /// A frame built from values that break the field rules (an empty or spaced field, a
    /// port of 0, a username that breaks the rules in `REGISTER`) encodes anyway but will
    /// not decode; build frames from validated values.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::encode::frame(self, out);
    }

    /// [`Frame::encode`] into a new buffer.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }

    /// Copies every borrowed field so the frame can outlive its datagram.
    pub fn into_owned(self) -> Frame<'static> {
        match self {
            Self::Discover => Frame::Discover,
            Self::DiscoverServer { reply_to } => Frame::DiscoverServer { reply_to },
            Self::Ping => Frame::Ping,
            Self::Pong => Frame::Pong,
            Self::Range => Frame::Range,
            Self::Register(r) => Frame::Register(r.into_owned()),
            Self::RegisterLegacy { user, ip, port } => Frame::RegisterLegacy {
                user: own(user),
                ip,
                port,
            },
            Self::Resolve { user } => Frame::Resolve { user: own(user) },
            Self::ForwardRegister { answer, register } => Frame::ForwardRegister {
                answer,
                register: register.into_owned(),
            },
            Self::ForwardResolve { answer, user } => Frame::ForwardResolve {
                answer,
                user: own(user),
            },
            Self::Lookup { user, rid } => Frame::Lookup {
                user: own(user),
                rid,
            },
            Self::Found { rid, record } => Frame::Found {
                rid,
                record: record.into_owned(),
            },
            Self::NotFound { rid } => Frame::NotFound { rid },
            Self::Status => Frame::Status,
            Self::Snapshot => Frame::Snapshot,
            Self::Checksum => Frame::Checksum,
            Self::Ok(reply) => Frame::Ok(reply.into_owned()),
            Self::Error(reply) => Frame::Error(reply.into_owned()),
            Self::Join => Frame::Join,
            Self::PredChange { ip } => Frame::PredChange { ip },
            Self::Succ { ips } => Frame::Succ { ips },
            Self::Fix => Frame::Fix,
            Self::Replic(r) => Frame::Replic(r.into_owned()),
            Self::Takeover(r) => Frame::Takeover(r.into_owned()),
            Self::DropReplics { owner } => Frame::DropReplics { owner },
            Self::Kill => Frame::Kill,
            Self::Ring(r) => Frame::Ring(r),
            Self::Message {
                sender,
                payload_b64,
            } => Frame::Message {
                sender: own(sender),
                payload_b64: own(payload_b64),
            },
            Self::PubkeyReq { requester } => Frame::PubkeyReq {
                requester: own(requester),
            },
            Self::PubkeyRes { user, pubkey_b64 } => Frame::PubkeyRes {
                user: own(user),
                pubkey_b64: own(pubkey_b64),
            },
            Self::Hello { user, features } => Frame::Hello {
                user: own(user),
                features: own(features),
            },
            Self::SecureMessage {
                sender,
                id,
                payload_b64,
                sig_b64,
            } => Frame::SecureMessage {
                sender: own(sender),
                id,
                payload_b64: own(payload_b64),
                sig_b64: own(sig_b64),
            },
            Self::Ack { from, id, sig_b64 } => Frame::Ack {
                from: own(from),
                id,
                sig_b64: own(sig_b64),
            },
        }
    }

    /// The frame's first word as sent (`DISCOVER_SERVER` for both discovery forms), for
    /// logs and counters.
    pub fn verb(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The frame's verb, as a value of the verb table.
    pub fn kind(&self) -> Verb {
        match self {
            Self::Discover => Verb::Discover,
            Self::DiscoverServer { .. } => Verb::DiscoverServer,
            Self::Ping => Verb::Ping,
            Self::Pong => Verb::Pong,
            Self::Range => Verb::Range,
            Self::Register(_) | Self::RegisterLegacy { .. } | Self::ForwardRegister { .. } => {
                Verb::Register
            }
            Self::Resolve { .. } | Self::ForwardResolve { .. } => Verb::Resolve,
            Self::Status => Verb::Status,
            Self::Snapshot => Verb::Snapshot,
            Self::Checksum => Verb::Checksum,
            Self::Ok(_) => Verb::Ok,
            Self::Error(_) => Verb::Error,
            Self::Join => Verb::Join,
            Self::PredChange { .. } => Verb::PredChange,
            Self::Succ { .. } => Verb::Succ,
            Self::Fix => Verb::Fix,
            Self::Replic(_) => Verb::Replic,
            Self::Takeover(_) => Verb::Takeover,
            Self::DropReplics { .. } => Verb::DropReplics,
            Self::Kill => Verb::Kill,
            Self::Ring(_) => Verb::Ring,
            Self::Message { .. } => Verb::Message,
            Self::PubkeyReq { .. } => Verb::PubkeyReq,
            Self::PubkeyRes { .. } => Verb::PubkeyRes,
            Self::Hello { .. } => Verb::Hello,
            Self::SecureMessage { .. } => Verb::SecureMessage,
            Self::Ack { .. } => Verb::Ack,
            Self::Lookup { .. } => Verb::Lookup,
            Self::Found { .. } => Verb::Found,
            Self::NotFound { .. } => Verb::NotFound,
        }
    }

    // ---- reply constructors ---------------------------------------------------------------

    /// `OK User '<user>' in (<ip>:<port>) successfully registered`.
    pub fn registered(user: impl Into<Cow<'a, str>>, ip: Ipv4Addr, port: u16) -> Self {
        Self::Ok(OkReply::Registered {
            user: user.into(),
            ip,
            port,
        })
    }

    /// The answer to `RESOLVE` for `record` (see [`OkReply::resolved`]).
    pub fn resolved(record: &'a Record) -> Self {
        Self::Ok(OkReply::resolved(record))
    }

    /// `OK <lo> <hi>`: the answer to `RANGE`.
    pub fn range_reply(lo: u64, hi: u64) -> Self {
        Self::Ok(OkReply::Range { lo, hi })
    }

    /// `ERROR 404 User not found`.
    pub fn not_found() -> Self {
        Self::Error(ErrorReply::NotFound)
    }

    /// `ERROR <text>`, recognising the original's exact texts (see
    /// [`ErrorReply::from_text`]).
    pub fn error(text: impl Into<Cow<'a, str>>) -> Self {
        Self::Error(ErrorReply::from_text(text.into()))
    }
}

impl<'a> From<OkReply<'a>> for Frame<'a> {
    fn from(reply: OkReply<'a>) -> Self {
        Self::Ok(reply)
    }
}

impl<'a> From<ErrorReply<'a>> for Frame<'a> {
    fn from(reply: ErrorReply<'a>) -> Self {
        Self::Error(reply)
    }
}

impl<'a> From<Register<'a>> for Frame<'a> {
    fn from(register: Register<'a>) -> Self {
        Self::Register(register)
    }
}

/// Moves a borrowed field into an owned one.
fn own(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

// ---- Register -------------------------------------------------------------------------------

impl<'a> Register<'a> {
    /// The text the signature covers: `user|ip|port|version|pubkey_b64`, with canonical
    /// decimals and a dotted-quad IP.
    pub fn signed_text(&self) -> String {
        crate::signed_text(
            &self.user,
            self.ip,
            self.port,
            self.version,
            &self.pubkey_b64,
        )
    }

    /// Checks the original's field rules (username, port, version). The codec refuses to
    /// decode a `REGISTER` that breaks them, so decoded values always pass.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_registration(&self.user, self.port, self.version)
    }

    /// The record a server stores for this registration.
    pub fn to_record(&self) -> Record {
        Record {
            user: self.user.clone().into_owned(),
            ip: self.ip,
            port: self.port,
            version: self.version,
            pubkey_b64: self.pubkey_b64.clone().into_owned(),
            sig_b64: self.sig_b64.clone().into_owned(),
        }
    }

    /// Copies every borrowed field.
    pub fn into_owned(self) -> Register<'static> {
        Register {
            user: own(self.user),
            ip: self.ip,
            port: self.port,
            version: self.version,
            pubkey_b64: own(self.pubkey_b64),
            sig_b64: own(self.sig_b64),
        }
    }

    /// The forwarded form of this registration.
    pub fn forward(self, answer: AnswerTo) -> Frame<'a> {
        Frame::ForwardRegister {
            answer,
            register: self,
        }
    }
}

impl<'a> From<&'a Record> for Register<'a> {
    /// The `REGISTER` that stores `record`, borrowing its fields.
    fn from(record: &'a Record) -> Self {
        Self {
            user: Cow::Borrowed(&record.user),
            ip: record.ip,
            port: record.port,
            version: record.version,
            pubkey_b64: Cow::Borrowed(&record.pubkey_b64),
            sig_b64: Cow::Borrowed(&record.sig_b64),
        }
    }
}

impl From<Register<'_>> for Record {
    fn from(register: Register<'_>) -> Self {
        Self {
            user: register.user.into_owned(),
            ip: register.ip,
            port: register.port,
            version: register.version,
            pubkey_b64: register.pubkey_b64.into_owned(),
            sig_b64: register.sig_b64.into_owned(),
        }
    }
}

// ---- LegacyRecord ---------------------------------------------------------------------------

impl LegacyRecord<'_> {
    /// Copies every borrowed field.
    pub fn into_owned(self) -> LegacyRecord<'static> {
        LegacyRecord {
            user: own(self.user),
            ip: self.ip,
            port: self.port,
            version: self.version,
            pubkey_b64: self.pubkey_b64.map(own),
        }
    }
}

impl<'a> From<&'a Record> for LegacyRecord<'a> {
    /// The original's 5-field replication form of `record` (no signature).
    fn from(record: &'a Record) -> Self {
        Self {
            user: Cow::Borrowed(&record.user),
            ip: record.ip,
            port: record.port,
            version: Some(record.version),
            pubkey_b64: Some(Cow::Borrowed(&record.pubkey_b64)),
        }
    }
}

// ---- replies --------------------------------------------------------------------------------

impl<'a> OkReply<'a> {
    /// The answer to `RESOLVE` for `record`: `OK <ip> <port> <pubkey_b64> <version>`, or
    /// the design document's `OK <ip> <port>` when the record is unsigned (it has no key
    /// to send, and an empty field has no wire form).
    pub fn resolved(record: &'a Record) -> Self {
        if !record.is_signed() {
            return Self::ResolvedLegacy {
                ip: record.ip,
                port: record.port,
            };
        }
        Self::Resolved {
            ip: record.ip,
            port: record.port,
            pubkey_b64: Cow::Borrowed(&record.pubkey_b64),
            version: record.version,
        }
    }

    /// Copies every borrowed field.
    pub fn into_owned(self) -> OkReply<'static> {
        match self {
            Self::Range { lo, hi } => OkReply::Range { lo, hi },
            Self::Registered { user, ip, port } => OkReply::Registered {
                user: own(user),
                ip,
                port,
            },
            Self::Resolved {
                ip,
                port,
                pubkey_b64,
                version,
            } => OkReply::Resolved {
                ip,
                port,
                pubkey_b64: own(pubkey_b64),
                version,
            },
            Self::ResolvedLegacy { ip, port } => OkReply::ResolvedLegacy { ip, port },
            Self::Joined { lo, hi, pred, succ } => OkReply::Joined { lo, hi, pred, succ },
            Self::Json(json) => OkReply::Json(own(json)),
            Self::Bare => OkReply::Bare,
        }
    }
}

impl<'a> ErrorReply<'a> {
    /// Text of [`ErrorReply::InvalidPayload`].
    pub const INVALID_PAYLOAD: &'static str = "Invalid registration payload";
    /// Text of [`ErrorReply::DifferentKey`].
    pub const DIFFERENT_KEY: &'static str = "Username belongs to a different identity key";
    /// Text of [`ErrorReply::InvalidSignature`].
    pub const INVALID_SIGNATURE: &'static str = "Invalid registration signature";
    /// Text of [`ErrorReply::StaleVersion`].
    pub const STALE_VERSION: &'static str = "Stale registration version";
    /// Text of [`ErrorReply::NotFound`].
    pub const NOT_FOUND: &'static str = "404 User not found";

    /// The text after `ERROR ` (empty for a bare `ERROR`).
    pub fn text(&self) -> &str {
        match self {
            Self::InvalidPayload => Self::INVALID_PAYLOAD,
            Self::DifferentKey => Self::DIFFERENT_KEY,
            Self::InvalidSignature => Self::INVALID_SIGNATURE,
            Self::StaleVersion => Self::STALE_VERSION,
            Self::NotFound => Self::NOT_FOUND,
            Self::Other(text) => text,
        }
    }

    /// The reply for `text`: one of the original's exact texts becomes its variant,
    /// anything else [`ErrorReply::Other`]. Build `Other` through this so that decoding
    /// the encoded reply gives the same value.
    pub fn from_text(text: Cow<'a, str>) -> Self {
        match &*text {
            Self::INVALID_PAYLOAD => Self::InvalidPayload,
            Self::DIFFERENT_KEY => Self::DifferentKey,
            Self::INVALID_SIGNATURE => Self::InvalidSignature,
            Self::STALE_VERSION => Self::StaleVersion,
            Self::NOT_FOUND => Self::NotFound,
            _ => Self::Other(text),
        }
    }

    /// Copies every borrowed field.
    pub fn into_owned(self) -> ErrorReply<'static> {
        match self {
            Self::InvalidPayload => ErrorReply::InvalidPayload,
            Self::DifferentKey => ErrorReply::DifferentKey,
            Self::InvalidSignature => ErrorReply::InvalidSignature,
            Self::StaleVersion => ErrorReply::StaleVersion,
            Self::NotFound => ErrorReply::NotFound,
            Self::Other(text) => ErrorReply::Other(own(text)),
        }
    }
}
