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
//! rid      = u64                  ; request id, random per request; replies echo it
//! cookie   = u64                  ; address-validation cookie the receiver issued, 0 if none
//! id       = u64                  ; ring position (start of the node's range)
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
//! FIND      rid cookie key op                   ; op = "LOCATE" / "RESOLVE" user / "REGISTER" record
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

use std::net::{Ipv4Addr, SocketAddrV4};

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{all_consuming, map, map_res, value};
use nom::sequence::separated_pair;
use nom::{Finish, IResult, Parser};

use crate::{DecodeError, Record};

/// Largest datagram we ever send (IPv4 UDP payload limit).
pub const MAX_DATAGRAM: usize = 65507;

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

    /// The verb, for counters and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Discover { .. } => "DISCOVER",
            Self::Here { .. } => "HERE",
            Self::Cookie { .. } => "COOKIE",
            Self::Join { .. } => "JOIN",
            Self::Welcome { .. } => "WELCOME",
            Self::Refuse { .. } => "REFUSE",
            Self::Records { .. } => "RECORDS",
            Self::Ack { .. } => "ACK",
            Self::GetState { .. } => "GET_STATE",
            Self::State { .. } => "STATE",
            Self::Rectify { .. } => "RECTIFY",
            Self::Ping { .. } => "PING",
            Self::Find { .. } => "FIND",
            Self::Refer { .. } => "REFER",
            Self::Found { .. } => "FOUND",
            Self::Busy { .. } => "BUSY",
            Self::Replicate { .. } => "REPLICATE",
            Self::Sync { .. } => "SYNC",
            Self::Synced { .. } => "SYNCED",
            Self::Fetch { .. } => "FETCH",
            Self::Fix { .. } => "FIX",
            Self::Leave { .. } => "LEAVE",
            Self::Drop { .. } => "DROP",
        }
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
        let mut s = String::with_capacity(64);
        self.write(&mut s);
        out.extend_from_slice(s.as_bytes());
    }

    fn write(&self, s: &mut String) {
        use std::fmt::Write;
        s.push_str("RING ");
        s.push_str(self.verb());
        let _ = write!(s, " {}", self.rid());
        if let Some(c) = self.cookie() {
            let _ = write!(s, " {c}");
        }
        match self {
            Self::Discover { .. }
            | Self::Refuse { .. }
            | Self::Busy { .. }
            | Self::Join { .. }
            | Self::GetState { .. }
            | Self::Ping { .. }
            | Self::Fix { .. } => {}
            Self::Here { lo, hi, .. } => {
                let _ = write!(s, " {lo} {hi}");
            }
            Self::Cookie { cookie, .. } => {
                let _ = write!(s, " {cookie}");
            }
            Self::Welcome {
                id,
                chunks,
                pred,
                succs,
                ..
            } => {
                let _ = write!(s, " {id} {chunks} ");
                write_peer(s, pred);
                write_peers(s, succs);
            }
            Self::Records {
                seq,
                total,
                records,
                ..
            } => {
                let _ = write!(s, " {seq} {total}");
                write_records(s, records);
            }
            Self::Ack { seq, .. } => {
                let _ = write!(s, " {seq}");
            }
            Self::State {
                id, pred, succs, ..
            } => {
                let _ = write!(s, " {id} ");
                write_opt_peer(s, pred);
                write_peers(s, succs);
            }
            Self::Rectify { id, .. } => {
                let _ = write!(s, " {id}");
            }
            Self::Find { key, op, .. } => {
                let _ = write!(s, " {key} ");
                match op {
                    FindOp::Locate => s.push_str("LOCATE"),
                    FindOp::Resolve { user } => {
                        s.push_str("RESOLVE ");
                        s.push_str(user);
                    }
                    FindOp::Register { record } => {
                        s.push_str("REGISTER ");
                        write_record(s, record);
                    }
                }
            }
            Self::Refer { peer, .. } => {
                s.push(' ');
                write_peer(s, peer);
            }
            Self::Found { id, outcome, .. } => {
                let _ = write!(s, " {id} ");
                match outcome {
                    Outcome::Node => s.push_str("NODE"),
                    Outcome::Record(r) => {
                        s.push_str("REC ");
                        write_record(s, r);
                    }
                    Outcome::Registered => s.push_str("OK"),
                    Outcome::Error(e) => {
                        s.push_str("ERR ");
                        s.push_str(match e {
                            FindError::NotFound => "404",
                            FindError::InvalidPayload => "PAYLOAD",
                            FindError::DifferentKey => "KEY",
                            FindError::InvalidSignature => "SIG",
                            FindError::StaleVersion => "STALE",
                        });
                    }
                }
            }
            Self::Replicate { records, .. } => write_records(s, records),
            Self::Sync {
                lo,
                hi,
                count,
                digest,
                ..
            } => {
                let _ = write!(s, " {lo} {hi} {count} {digest}");
            }
            Self::Synced { want, .. } => {
                s.push_str(if *want { " 1" } else { " 0" });
            }
            Self::Fetch { lo, hi, .. } | Self::Drop { lo, hi, .. } => {
                let _ = write!(s, " {lo} {hi}");
            }
            Self::Leave {
                chunks,
                pred,
                succs,
                ..
            } => {
                let _ = write!(s, " {chunks} ");
                write_opt_peer(s, pred);
                write_peers(s, succs);
            }
        }
    }

    /// Length of the encoded frame in bytes.
    pub fn encoded_len(&self) -> usize {
        let mut s = String::new();
        self.write(&mut s);
        s.len()
    }
}

impl std::fmt::Display for RingFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// Encoded length of one record inside a `RECORDS` / `REPLICATE` frame (with its separator).
pub fn record_encoded_len(r: &Record) -> usize {
    let mut s = String::new();
    write_record(&mut s, r);
    s.len() + 1
}

fn write_peer(s: &mut String, p: &Peer) {
    use std::fmt::Write;
    let _ = write!(s, "{}@{}", p.id, p.addr);
}

fn write_opt_peer(s: &mut String, p: &Option<Peer>) {
    match p {
        Some(p) => write_peer(s, p),
        None => s.push('-'),
    }
}

fn write_peers(s: &mut String, ps: &[Peer]) {
    use std::fmt::Write;
    let _ = write!(s, " {}", ps.len());
    for p in ps {
        s.push(' ');
        write_peer(s, p);
    }
}

fn write_record(s: &mut String, r: &Record) {
    use std::fmt::Write;
    let _ = write!(s, "{} {} {} {} ", r.user, r.ip, r.port, r.version);
    s.push_str(if r.pubkey_b64.is_empty() {
        "-"
    } else {
        &r.pubkey_b64
    });
    s.push(' ');
    s.push_str(if r.sig_b64.is_empty() {
        "-"
    } else {
        &r.sig_b64
    });
}

fn write_records(s: &mut String, rs: &[Record]) {
    use std::fmt::Write;
    let _ = write!(s, " {}", rs.len());
    for r in rs {
        s.push(' ');
        write_record(s, r);
    }
}

// ---- decoding ---------------------------------------------------------------------------

/// Decodes the text after `RING ` (the dispatcher in the codec strips the prefix).
pub fn decode(rest: &str) -> Result<RingFrame, DecodeError> {
    let (verb, body) = match rest.split_once(' ') {
        Some((v, b)) => (v, b),
        None => (rest, ""),
    };
    let verb: &'static str = match verb {
        "DISCOVER" => "DISCOVER",
        "HERE" => "HERE",
        "COOKIE" => "COOKIE",
        "JOIN" => "JOIN",
        "WELCOME" => "WELCOME",
        "REFUSE" => "REFUSE",
        "RECORDS" => "RECORDS",
        "ACK" => "ACK",
        "GET_STATE" => "GET_STATE",
        "STATE" => "STATE",
        "RECTIFY" => "RECTIFY",
        "PING" => "PING",
        "FIND" => "FIND",
        "REFER" => "REFER",
        "FOUND" => "FOUND",
        "BUSY" => "BUSY",
        "REPLICATE" => "REPLICATE",
        "SYNC" => "SYNC",
        "SYNCED" => "SYNCED",
        "FETCH" => "FETCH",
        "FIX" => "FIX",
        "LEAVE" => "LEAVE",
        "DROP" => "DROP",
        _ => return Err(DecodeError::UnknownVerb),
    };
    let mut c = Fields::new(verb, body);
    let rid = c.u64("rid")?;
    let frame = match verb {
        "DISCOVER" => RingFrame::Discover { rid },
        "HERE" => RingFrame::Here {
            rid,
            lo: c.u64("lo")?,
            hi: c.u64("hi")?,
        },
        "COOKIE" => RingFrame::Cookie {
            rid,
            cookie: c.u64("cookie")?,
        },
        "JOIN" => RingFrame::Join {
            rid,
            cookie: c.u64("cookie")?,
        },
        "WELCOME" => RingFrame::Welcome {
            rid,
            id: c.u64("id")?,
            chunks: c.u32("chunks")?,
            pred: c.peer("pred")?,
            succs: c.peers()?,
        },
        "REFUSE" => RingFrame::Refuse { rid },
        "RECORDS" => RingFrame::Records {
            rid,
            seq: c.u32("seq")?,
            total: c.u32("total")?,
            records: c.records()?,
        },
        "ACK" => RingFrame::Ack {
            rid,
            seq: c.u32("seq")?,
        },
        "GET_STATE" => RingFrame::GetState {
            rid,
            cookie: c.u64("cookie")?,
        },
        "STATE" => RingFrame::State {
            rid,
            id: c.u64("id")?,
            pred: c.opt_peer("pred")?,
            succs: c.peers()?,
        },
        "RECTIFY" => RingFrame::Rectify {
            rid,
            cookie: c.u64("cookie")?,
            id: c.u64("id")?,
        },
        "PING" => RingFrame::Ping {
            rid,
            cookie: c.u64("cookie")?,
        },
        "FIND" => {
            let cookie = c.u64("cookie")?;
            let key = c.u64("key")?;
            let op = match c.token("op")? {
                "LOCATE" => FindOp::Locate,
                "RESOLVE" => FindOp::Resolve {
                    user: c.token("user")?.to_owned(),
                },
                "REGISTER" => FindOp::Register {
                    record: c.record()?,
                },
                _ => return Err(c.bad("op")),
            };
            RingFrame::Find {
                rid,
                cookie,
                key,
                op,
            }
        }
        "REFER" => RingFrame::Refer {
            rid,
            peer: c.peer("peer")?,
        },
        "FOUND" => {
            let id = c.u64("id")?;
            let outcome = match c.token("outcome")? {
                "NODE" => Outcome::Node,
                "REC" => Outcome::Record(c.record()?),
                "OK" => Outcome::Registered,
                "ERR" => Outcome::Error(match c.token("code")? {
                    "404" => FindError::NotFound,
                    "PAYLOAD" => FindError::InvalidPayload,
                    "KEY" => FindError::DifferentKey,
                    "SIG" => FindError::InvalidSignature,
                    "STALE" => FindError::StaleVersion,
                    _ => return Err(c.bad("code")),
                }),
                _ => return Err(c.bad("outcome")),
            };
            RingFrame::Found { rid, id, outcome }
        }
        "BUSY" => RingFrame::Busy { rid },
        "REPLICATE" => RingFrame::Replicate {
            rid,
            cookie: c.u64("cookie")?,
            records: c.records()?,
        },
        "SYNC" => RingFrame::Sync {
            rid,
            cookie: c.u64("cookie")?,
            lo: c.u64("lo")?,
            hi: c.u64("hi")?,
            count: c.u64("count")?,
            digest: c.u64("digest")?,
        },
        "SYNCED" => RingFrame::Synced {
            rid,
            want: match c.token("want")? {
                "0" => false,
                "1" => true,
                _ => return Err(c.bad("want")),
            },
        },
        "FETCH" => RingFrame::Fetch {
            rid,
            cookie: c.u64("cookie")?,
            lo: c.u64("lo")?,
            hi: c.u64("hi")?,
        },
        "FIX" => RingFrame::Fix {
            rid,
            cookie: c.u64("cookie")?,
        },
        "LEAVE" => RingFrame::Leave {
            rid,
            cookie: c.u64("cookie")?,
            chunks: c.u32("chunks")?,
            pred: c.opt_peer("pred")?,
            succs: c.peers()?,
        },
        "DROP" => RingFrame::Drop {
            rid,
            cookie: c.u64("cookie")?,
            lo: c.u64("lo")?,
            hi: c.u64("hi")?,
        },
        _ => return Err(DecodeError::UnknownVerb),
    };
    c.end()?;
    Ok(frame)
}

/// Most list entries a frame may announce (bounds allocation on hostile input).
const MAX_LIST: usize = 4096;

/// A cursor over the space-separated fields of one frame body.
struct Fields<'a> {
    verb: &'static str,
    rest: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(verb: &'static str, body: &'a str) -> Self {
        Self {
            verb,
            rest: Some(body),
        }
    }

    fn bad(&self, field: &'static str) -> DecodeError {
        DecodeError::BadField {
            verb: self.verb,
            field,
        }
    }

    fn fields(&self) -> DecodeError {
        DecodeError::Fields { verb: self.verb }
    }

    /// The next space-separated token (non-empty).
    fn token(&mut self, _field: &'static str) -> Result<&'a str, DecodeError> {
        let rest = self.rest.ok_or_else(|| self.fields())?;
        let (tok, next) = match rest.split_once(' ') {
            Some((t, n)) => (t, Some(n)),
            None => (rest, None),
        };
        if tok.is_empty() {
            return Err(self.fields());
        }
        self.rest = next;
        Ok(tok)
    }

    fn with<T>(
        &mut self,
        field: &'static str,
        p: impl Fn(&'a str) -> IResult<&'a str, T>,
    ) -> Result<T, DecodeError> {
        let tok = self.token(field)?;
        all_consuming(p)
            .parse(tok)
            .finish()
            .map(|(_, v)| v)
            .map_err(|_: nom::error::Error<&str>| self.bad(field))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.with(field, dec_u64)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.with(field, dec_u32)
    }

    fn peer(&mut self, field: &'static str) -> Result<Peer, DecodeError> {
        self.with(field, peer)
    }

    fn opt_peer(&mut self, field: &'static str) -> Result<Option<Peer>, DecodeError> {
        self.with(field, |i| {
            alt((value(None, tag("-")), map(peer, Some))).parse(i)
        })
    }

    fn count(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.u64(field)?;
        if n as usize > MAX_LIST {
            return Err(self.bad(field));
        }
        Ok(n as usize)
    }

    fn peers(&mut self) -> Result<Vec<Peer>, DecodeError> {
        let n = self.count("count")?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.peer("peer")?);
        }
        Ok(v)
    }

    fn record(&mut self) -> Result<Record, DecodeError> {
        let user = self.token("user")?;
        if user == "-" {
            return Err(self.bad("user"));
        }
        let ip = self.with("ip", ipv4)?;
        let port = self.with("port", dec_u16)?;
        let version = self.u64("version")?;
        let key = self.token("pubkey")?;
        let sig = self.token("sig")?;
        let dash = |t: &str| {
            if t == "-" {
                String::new()
            } else {
                t.to_owned()
            }
        };
        Ok(Record {
            user: user.to_owned(),
            ip,
            port,
            version,
            pubkey_b64: dash(key),
            sig_b64: dash(sig),
        })
    }

    fn records(&mut self) -> Result<Vec<Record>, DecodeError> {
        let n = self.count("count")?;
        let mut v = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            v.push(self.record()?);
        }
        Ok(v)
    }

    fn end(&self) -> Result<(), DecodeError> {
        match self.rest {
            None => Ok(()),
            Some(_) => Err(self.fields()),
        }
    }
}

/// `u64 = 1*DIGIT` (canonical: no leading zeros except "0").
fn dec_u64(i: &str) -> IResult<&str, u64> {
    map_res(digit1, |d: &str| {
        if d.len() > 1 && d.starts_with('0') {
            Err(())
        } else {
            d.parse::<u64>().map_err(|_| ())
        }
    })
    .parse(i)
}

fn dec_u32(i: &str) -> IResult<&str, u32> {
    map_res(dec_u64, u32::try_from).parse(i)
}

fn dec_u16(i: &str) -> IResult<&str, u16> {
    map_res(dec_u64, u16::try_from).parse(i)
}

/// `ipv4 = dotted quad`, parsed by the standard library (canonical form only).
fn ipv4(i: &str) -> IResult<&str, Ipv4Addr> {
    map_res(
        take_while1(|c: char| c.is_ascii_digit() || c == '.'),
        |s: &str| s.parse::<Ipv4Addr>(),
    )
    .parse(i)
}

/// `peer = id "@" ipv4 ":" port`.
fn peer(i: &str) -> IResult<&str, Peer> {
    map(
        separated_pair(dec_u64, char('@'), separated_pair(ipv4, char(':'), dec_u16)),
        |(id, (ip, port))| Peer {
            id,
            addr: SocketAddrV4::new(ip, port),
        },
    )
    .parse(i)
}
