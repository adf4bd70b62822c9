//! Our ring protocol: server-to-server frames that start with `RING `.
//!
//! Original peers never see these. The state machine that speaks them lives in
//! `flock-chord`; this module is only the typed frames and their text codec.
//!
//! # Grammar
//!
//! One datagram, UTF-8, fields separated by exactly one space, no terminator:
//!
//! ```text
//! frame    = "RING " verb
//! u64, u32 = decimal              ; canonical (no sign, no leading zero), fits the type
//! rid      = u64                  ; request id, random per request; replies echo it
//! cookie   = u64                  ; address-validation cookie the receiver issued, 0 if none
//! id       = u64                  ; ring position (start of the node's range)
//! port     = decimal              ; 0..=65535 (unlike the client grammar, 0 is a value)
//! peer     = id "@" ipv4 ":" port ; a ring member
//! opt-peer = peer / "-"
//! peers    = count *(" " peer)
//! record   = user " " ipv4 " " port " " version " " (pubkey_b64 / "-") " " (sig_b64 / "-")
//! records  = count *(" " record)
//!
//! DISCOVER  rid                                 ; who is out there? -> HERE
//! HERE      rid lo hi                           ; my range (lo > hi: it wraps)
//! COOKIE    rid cookie                          ; resend request rid carrying this cookie
//! JOIN      rid cookie                          ; split your range for me -> WELCOME / REFUSE
//! WELCOME   rid id chunks pred peers            ; your id, pred, successor list; RECORDS follow
//! REFUSE    rid                                 ; cannot split now
//! RECORDS   rid seq total records               ; chunk seq of total of a record transfer -> ACK
//! ACK       rid n                               ; n = 0: request rid done; n = k+1: chunk k received
//! GET_STATE rid cookie                          ; -> STATE
//! STATE     rid id opt-peer peers               ; my id, predecessor, successor list
//! RECTIFY   rid cookie id                       ; I think I am your predecessor -> ACK
//! PING      rid cookie                          ; -> ACK
//! FIND      rid cookie key op                   ; op = "LOCATE" / "RESOLVE" user / "REGISTER" record / "HELD" user
//! REFER     rid peer                            ; not mine: ask this closer node
//! FOUND     rid id outcome                      ; outcome = "NODE" / "REC" record / "OK" / "ERR" code
//! BUSY      rid                                 ; owner not ready (taking over), retry
//! REPLICATE rid cookie records                  ; store these replicas -> ACK
//! SYNC      rid cookie lo hi count digest       ; my owned range's digest -> SYNCED
//! SYNCED    rid want                            ; want = 0 (in sync) / 1 (push me the range)
//! FETCH     rid cookie lo hi                    ; send me every record hashing in [lo, hi] -> RECORDS
//! FIX       rid cookie                          ; something failed: stabilize now -> ACK
//! LEAVE     rid cookie chunks opt-peer peers    ; I leave: my pred and successors; RECORDS follow
//! DROP      rid cookie lo hi                    ; reserved: acknowledged; replicas expire by SYNC lease
//! ```
//!
//! Error codes in `FOUND ... ERR`: `404`, `PAYLOAD`, `KEY`, `SIG`, `STALE` (the original's
//! five client errors). Records are carried signed, so every receiver re-verifies them.
//!
//! Text fields (`user`, `pubkey_b64`, `sig_b64`) are tokens (no whitespace, no control
//! characters); an empty key or signature (an unsigned record) is written `-`. Lists
//! announce at most [`RING_MAX_LIST`](crate::limits::RING_MAX_LIST) entries.
//!
//! # Codec
//!
//! The grammar is parsed by the same nom rules as the client grammar (numbers, IPv4
//! addresses, tokens, one field per space), one small parser per rule above, and
//! encoded by the same writers, straight into the caller's buffer; the verbs are listed
//! once, in [`RingVerb`].
//!
//! Unlike [`Frame`](crate::Frame), a [`RingFrame`] owns its fields: the ring's state
//! machine keeps frames well past the datagram they came in (pending requests,
//! retransmissions, record transfers split over several datagrams, records it stores),
//! so a borrowed frame would be copied right away anyway. The parser borrows from the
//! datagram while it works and copies each text field once, when the frame is built.

use std::net::SocketAddrV4;

use crate::encode::{self, Len};
use crate::{DecodeError, Record};

pub use crate::verbs::RingVerb;

/// Largest datagram we ever send (IPv4 UDP payload limit): [`crate::limits::MAX_DATAGRAM`].
pub const MAX_DATAGRAM: usize = crate::limits::MAX_DATAGRAM;

/// Byte budget for the records of one `RECORDS` / `REPLICATE` chunk, leaving room for the header.
pub const CHUNK_BUDGET: usize = 60_000;

/// A ring member: its position and its address (`id@ip:port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// Ring position: the first hash of the member's range.
    pub id: u64,
    /// The member's identity and address.
    pub addr: SocketAddrV4,
}

/// What a `FIND` asks the owner of `key` to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FindOp {
    /// Just identify yourself (finger maintenance).
    Locate,
    /// Look `user` up.
    Resolve {
        /// Username.
        user: String,
    },
    /// Store this record under the owner rules.
    Register {
        /// The record (signed, or unsigned with empty key and signature).
        record: Record,
    },
    /// Not routed: which record for `user` do you hold (owned or replica)? Asked of a
    /// record's holders to confirm an owner's answer by majority (an open ring).
    Held {
        /// Username.
        user: String,
    },
}

/// The owner's answer to a `FIND`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answer to [`FindOp::Locate`].
    Node,
    /// The resolved record.
    Record(Record),
    /// The registration is stored and replicated.
    Registered,
    /// One of the original's client errors.
    Error(FindError),
}

/// The original's client errors, as the owner reports them to the entry node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindError {
    /// `ERROR 404 User not found` (`404`).
    NotFound,
    /// `ERROR Invalid registration payload` (`PAYLOAD`).
    InvalidPayload,
    /// `ERROR Username belongs to a different identity key` (`KEY`).
    DifferentKey,
    /// `ERROR Invalid registration signature` (`SIG`).
    InvalidSignature,
    /// `ERROR Stale registration version` (`STALE`).
    StaleVersion,
}

/// A frame of our ring protocol (`RING ...`). See the module docs for the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RingFrame {
    /// `DISCOVER rid`.
    Discover {
        /// Request id.
        rid: u64,
    },
    /// `HERE rid lo hi`.
    Here {
        /// Request id.
        rid: u64,
        /// First hash of the range.
        lo: u64,
        /// Last hash of the range (below `lo` when the range wraps).
        hi: u64,
    },
    /// `COOKIE rid cookie`.
    Cookie {
        /// The request this answers.
        rid: u64,
        /// The cookie to carry from now on.
        cookie: u64,
    },
    /// `JOIN rid cookie`.
    Join {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
    },
    /// `WELCOME rid id chunks pred peers`.
    Welcome {
        /// Request id of the JOIN.
        rid: u64,
        /// The joiner's ring position.
        id: u64,
        /// How many `RECORDS` chunks follow (same rid).
        chunks: u32,
        /// The joiner's predecessor (the splitting node).
        pred: Peer,
        /// The joiner's successor list.
        succs: Vec<Peer>,
    },
    /// `REFUSE rid`.
    Refuse {
        /// Request id.
        rid: u64,
    },
    /// `RECORDS rid seq total records`.
    Records {
        /// Transfer id.
        rid: u64,
        /// Chunk number, from 0.
        seq: u32,
        /// Number of chunks.
        total: u32,
        /// Records of this chunk.
        records: Vec<Record>,
    },
    /// `ACK rid n`.
    Ack {
        /// Request id.
        rid: u64,
        /// 0 acknowledges the request itself; `k + 1` acknowledges chunk `k`.
        seq: u32,
    },
    /// `GET_STATE rid cookie`.
    GetState {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
    },
    /// `STATE rid id opt-peer peers`.
    State {
        /// Request id.
        rid: u64,
        /// The answering node's position.
        id: u64,
        /// Its predecessor.
        pred: Option<Peer>,
        /// Its successor list.
        succs: Vec<Peer>,
    },
    /// `RECTIFY rid cookie id`.
    Rectify {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// The sender's position.
        id: u64,
    },
    /// `PING rid cookie`.
    Ping {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
    },
    /// `FIND rid cookie key op`.
    Find {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// Ring hash the request is about.
        key: u64,
        /// What to do there.
        op: FindOp,
    },
    /// `REFER rid peer`.
    Refer {
        /// Request id.
        rid: u64,
        /// A node closer to the key.
        peer: Peer,
    },
    /// `FOUND rid id outcome`.
    Found {
        /// Request id.
        rid: u64,
        /// The owner's position.
        id: u64,
        /// The result.
        outcome: Outcome,
    },
    /// `BUSY rid`.
    Busy {
        /// Request id.
        rid: u64,
    },
    /// `REPLICATE rid cookie records`.
    Replicate {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// Records to hold as replicas.
        records: Vec<Record>,
    },
    /// `SYNC rid cookie lo hi count digest`.
    Sync {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// First hash of the owner's range.
        lo: u64,
        /// Last hash of the owner's range.
        hi: u64,
        /// Number of records in the range.
        count: u64,
        /// Order-independent digest of those records.
        digest: u64,
    },
    /// `SYNCED rid want`.
    Synced {
        /// Request id.
        rid: u64,
        /// Whether the replica wants the whole range pushed.
        want: bool,
    },
    /// `FETCH rid cookie lo hi`.
    Fetch {
        /// Transfer id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// First hash wanted.
        lo: u64,
        /// Last hash wanted (below `lo` when wrapping).
        hi: u64,
    },
    /// `FIX rid cookie`.
    Fix {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
    },
    /// `LEAVE rid cookie chunks opt-peer peers`.
    Leave {
        /// Transfer id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// How many `RECORDS` chunks follow.
        chunks: u32,
        /// The leaver's predecessor.
        pred: Option<Peer>,
        /// The leaver's successor list.
        succs: Vec<Peer>,
    },
    /// `DROP rid cookie lo hi`.
    Drop {
        /// Request id.
        rid: u64,
        /// Address-validation cookie.
        cookie: u64,
        /// First hash.
        lo: u64,
        /// Last hash.
        hi: u64,
    },
}

impl RingFrame {
    /// The request id every ring frame carries.
    pub fn rid(&self) -> u64 {
        match self {
            Self::Discover { rid }
            | Self::Here { rid, .. }
            | Self::Cookie { rid, .. }
            | Self::Join { rid, .. }
            | Self::Welcome { rid, .. }
            | Self::Refuse { rid }
            | Self::Records { rid, .. }
            | Self::Ack { rid, .. }
            | Self::GetState { rid, .. }
            | Self::State { rid, .. }
            | Self::Rectify { rid, .. }
            | Self::Ping { rid, .. }
            | Self::Find { rid, .. }
            | Self::Refer { rid, .. }
            | Self::Found { rid, .. }
            | Self::Busy { rid }
            | Self::Replicate { rid, .. }
            | Self::Sync { rid, .. }
            | Self::Synced { rid, .. }
            | Self::Fetch { rid, .. }
            | Self::Fix { rid, .. }
            | Self::Leave { rid, .. }
            | Self::Drop { rid, .. } => *rid,
        }
    }

    /// The verb, as a value of the verb table.
    pub fn kind(&self) -> RingVerb {
        match self {
            Self::Discover { .. } => RingVerb::Discover,
            Self::Here { .. } => RingVerb::Here,
            Self::Cookie { .. } => RingVerb::Cookie,
            Self::Join { .. } => RingVerb::Join,
            Self::Welcome { .. } => RingVerb::Welcome,
            Self::Refuse { .. } => RingVerb::Refuse,
            Self::Records { .. } => RingVerb::Records,
            Self::Ack { .. } => RingVerb::Ack,
            Self::GetState { .. } => RingVerb::GetState,
            Self::State { .. } => RingVerb::State,
            Self::Rectify { .. } => RingVerb::Rectify,
            Self::Ping { .. } => RingVerb::Ping,
            Self::Find { .. } => RingVerb::Find,
            Self::Refer { .. } => RingVerb::Refer,
            Self::Found { .. } => RingVerb::Found,
            Self::Busy { .. } => RingVerb::Busy,
            Self::Replicate { .. } => RingVerb::Replicate,
            Self::Sync { .. } => RingVerb::Sync,
            Self::Synced { .. } => RingVerb::Synced,
            Self::Fetch { .. } => RingVerb::Fetch,
            Self::Fix { .. } => RingVerb::Fix,
            Self::Leave { .. } => RingVerb::Leave,
            Self::Drop { .. } => RingVerb::Drop,
        }
    }

    /// The verb, for counters and logs.
    pub fn verb(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The cookie a request carries, if this verb is a request that carries one.
    pub fn cookie(&self) -> Option<u64> {
        match self {
            Self::Join { cookie, .. }
            | Self::GetState { cookie, .. }
            | Self::Rectify { cookie, .. }
            | Self::Ping { cookie, .. }
            | Self::Find { cookie, .. }
            | Self::Replicate { cookie, .. }
            | Self::Sync { cookie, .. }
            | Self::Fetch { cookie, .. }
            | Self::Fix { cookie, .. }
            | Self::Leave { cookie, .. }
            | Self::Drop { cookie, .. } => Some(*cookie),
            _ => None,
        }
    }

    /// Replaces the cookie of a request (no-op for other verbs).
    pub fn set_cookie(&mut self, value: u64) {
        match self {
            Self::Join { cookie, .. }
            | Self::GetState { cookie, .. }
            | Self::Rectify { cookie, .. }
            | Self::Ping { cookie, .. }
            | Self::Find { cookie, .. }
            | Self::Replicate { cookie, .. }
            | Self::Sync { cookie, .. }
            | Self::Fetch { cookie, .. }
            | Self::Fix { cookie, .. }
            | Self::Leave { cookie, .. }
            | Self::Drop { cookie, .. } => *cookie = value,
            _ => {}
        }
    }

    /// Appends the whole frame, `RING ` prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode::ring_frame(self, out);
    }

    /// [`RingFrame::encode`] into a new buffer of exactly the right size.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// Length of the encoded frame in bytes (exact; computed without allocating).
    pub fn encoded_len(&self) -> usize {
        let mut len = Len::default();
        encode::ring_frame(self, &mut len);
        len.0
    }
}

impl std::fmt::Display for RingFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.encode_to_vec();
        // The encoder writes only UTF-8 text fields and ASCII, so this is never lossy.
        f.write_str(&String::from_utf8_lossy(&bytes))
    }
}

impl FindError {
    /// Every error, in wire-code order.
    const ALL: [Self; 5] = [
        Self::NotFound,
        Self::InvalidPayload,
        Self::DifferentKey,
        Self::InvalidSignature,
        Self::StaleVersion,
    ];

    /// The code written after `FOUND ... ERR`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::NotFound => "404",
            Self::InvalidPayload => "PAYLOAD",
            Self::DifferentKey => "KEY",
            Self::InvalidSignature => "SIG",
            Self::StaleVersion => "STALE",
        }
    }

    /// The error whose code is exactly `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// The fixed words inside ring frames, shared by the decoder and the encoder.
pub(crate) mod words {
    /// `FIND` op: identify yourself.
    pub(crate) const LOCATE: &str = "LOCATE";
    /// `FIND` op: look a user up.
    pub(crate) const RESOLVE: &str = "RESOLVE";
    /// `FIND` op: store a record.
    pub(crate) const REGISTER: &str = "REGISTER";
    /// `FIND` op: the record you hold for a user (not routed).
    pub(crate) const HELD: &str = "HELD";
    /// `FOUND` outcome: answer to `LOCATE`.
    pub(crate) const NODE: &str = "NODE";
    /// `FOUND` outcome: a record follows.
    pub(crate) const REC: &str = "REC";
    /// `FOUND` outcome: registered.
    pub(crate) const OK: &str = "OK";
    /// `FOUND` outcome: an error code follows.
    pub(crate) const ERR: &str = "ERR";
    /// A missing peer, key or signature.
    pub(crate) const NONE: &str = "-";
}

/// Encoded length of one record inside a `RECORDS` / `REPLICATE` frame (with its separator).
pub fn record_encoded_len(r: &Record) -> usize {
    let mut len = Len::default();
    encode::sp_record(&mut len, r);
    len.0
}

/// Decodes the text after `RING ` (the dispatcher in the codec strips the prefix).
///
/// Numbers must be canonical decimals and addresses dotted quads, so whatever decodes
/// re-encodes to the same bytes. Bad input never panics.
pub fn decode(rest: &str) -> Result<RingFrame, DecodeError> {
    crate::decode::ring_frame(rest)
}
