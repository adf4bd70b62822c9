//! The ring grammar (`RING ...`, see [`crate::ring`]) on the shared rules of the parent
//! module: one small parser per rule, the same numbers, addresses and tokens as the client
//! grammar.

use std::net::SocketAddrV4;

use nom::{
    Finish, IResult, Parser,
    branch::alt,
    bytes::complete::tag,
    character::complete::char,
    combinator::{all_consuming, map, map_opt, value, verify},
    error::{ErrorKind, ParseError},
    multi::count,
    sequence::separated_pair,
};

use super::{PResult, decimal, decimal_u16, decimal_u32, ipv4, token, verb};
use crate::error::DecodeError;
use crate::limits::RING_MAX_LIST;
use crate::record::Record;
use crate::ring::{FindError, FindOp, Outcome, Peer, RingFrame, RingVerb, words};

/// Why a ring rule failed; the nom error of the ring grammar, never seen outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RingFail {
    /// A field is missing, or something follows the last one.
    Fields,
    /// This field is present but malformed.
    Bad(&'static str),
}

impl<I> ParseError<I> for RingFail {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        Self::Fields
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type RResult<'a, O> = IResult<&'a str, O, RingFail>;

/// Decodes the text after `RING `: `verb SP rid *(SP field)` (grammar: [`crate::ring`]).
pub(crate) fn ring_frame(text: &str) -> Result<RingFrame, DecodeError> {
    let (body, word) = verb(text).map_err(|_| DecodeError::UnknownVerb)?;
    let verb = RingVerb::from_text(word).ok_or(DecodeError::UnknownVerb)?;
    all_consuming(|body| ring_body(verb, body))
        .parse(body)
        .finish()
        .map(|(_, frame)| frame)
        .map_err(|fail| match fail {
            RingFail::Fields => DecodeError::Fields {
                verb: verb.as_str(),
            },
            RingFail::Bad(field) => DecodeError::BadField {
                verb: verb.as_str(),
                field,
            },
        })
}

/// The fields of `verb`, from `rid` on.
fn ring_body(verb: RingVerb, input: &str) -> RResult<'_, RingFrame> {
    let (input, rid) = sp(decimal, "rid").parse(input)?;
    let u64 = |name| sp(decimal, name);
    let u32 = |name| sp(decimal_u32, name);
    match verb {
        RingVerb::Discover => Ok((input, RingFrame::Discover { rid })),
        RingVerb::Refuse => Ok((input, RingFrame::Refuse { rid })),
        RingVerb::Busy => Ok((input, RingFrame::Busy { rid })),
        RingVerb::Here => map((u64("lo"), u64("hi")), |(lo, hi)| RingFrame::Here {
            rid,
            lo,
            hi,
        })
        .parse(input),
        RingVerb::Cookie => {
            map(u64("cookie"), |cookie| RingFrame::Cookie { rid, cookie }).parse(input)
        }
        RingVerb::Join => map(u64("cookie"), |cookie| RingFrame::Join { rid, cookie }).parse(input),
        RingVerb::Welcome => map(
            (u64("id"), u32("chunks"), sp(peer, "pred"), sp_peers),
            |(id, chunks, pred, succs)| RingFrame::Welcome {
                rid,
                id,
                chunks,
                pred,
                succs,
            },
        )
        .parse(input),
        RingVerb::Records => map(
            (u32("seq"), u32("total"), sp_records),
            |(seq, total, records)| RingFrame::Records {
                rid,
                seq,
                total,
                records,
            },
        )
        .parse(input),
        RingVerb::Ack => map(u32("seq"), |seq| RingFrame::Ack { rid, seq }).parse(input),
        RingVerb::GetState => {
            map(u64("cookie"), |cookie| RingFrame::GetState { rid, cookie }).parse(input)
        }
        RingVerb::State => map(
            (u64("id"), sp(opt_peer, "pred"), sp_peers),
            |(id, pred, succs)| RingFrame::State {
                rid,
                id,
                pred,
                succs,
            },
        )
        .parse(input),
        RingVerb::Rectify => map((u64("cookie"), u64("id")), |(cookie, id)| {
            RingFrame::Rectify { rid, cookie, id }
        })
        .parse(input),
        RingVerb::Ping => map(u64("cookie"), |cookie| RingFrame::Ping { rid, cookie }).parse(input),
        RingVerb::Find => map(
            (u64("cookie"), u64("key"), sp_find_op),
            |(cookie, key, op)| RingFrame::Find {
                rid,
                cookie,
                key,
                op,
            },
        )
        .parse(input),
        RingVerb::Refer => {
            map(sp(peer, "peer"), |peer| RingFrame::Refer { rid, peer }).parse(input)
        }
        RingVerb::Found => map((u64("id"), sp_outcome), |(id, outcome)| RingFrame::Found {
            rid,
            id,
            outcome,
        })
        .parse(input),
        RingVerb::Replicate => map((u64("cookie"), sp_records), |(cookie, records)| {
            RingFrame::Replicate {
                rid,
                cookie,
                records,
            }
        })
        .parse(input),
        RingVerb::Sync => map(
            (
                u64("cookie"),
                u64("lo"),
                u64("hi"),
                u64("count"),
                u64("digest"),
            ),
            |(cookie, lo, hi, count, digest)| RingFrame::Sync {
                rid,
                cookie,
                lo,
                hi,
                count,
                digest,
            },
        )
        .parse(input),
        RingVerb::Synced => {
            map(sp(flag, "want"), |want| RingFrame::Synced { rid, want }).parse(input)
        }
        RingVerb::Fetch => map((u64("cookie"), u64("lo"), u64("hi")), |(cookie, lo, hi)| {
            RingFrame::Fetch {
                rid,
                cookie,
                lo,
                hi,
            }
        })
        .parse(input),
        RingVerb::Fix => map(u64("cookie"), |cookie| RingFrame::Fix { rid, cookie }).parse(input),
        RingVerb::Leave => map(
            (u64("cookie"), u32("chunks"), sp(opt_peer, "pred"), sp_peers),
            |(cookie, chunks, pred, succs)| RingFrame::Leave {
                rid,
                cookie,
                chunks,
                pred,
                succs,
            },
        )
        .parse(input),
        RingVerb::Drop => map((u64("cookie"), u64("lo"), u64("hi")), |(cookie, lo, hi)| {
            RingFrame::Drop {
                rid,
                cookie,
                lo,
                hi,
            }
        })
        .parse(input),
    }
}

/// `SP field`, the whole field (up to the next space or the end) parsed by `rule`: a
/// missing or empty field is [`RingFail::Fields`], one that `rule` does not match exactly
/// is `Bad(name)`.
///
/// No rule matches a space, so `rule` runs on the rest of the input directly and must stop
/// at the field's end: one pass over the field, not a search for its end and then a parse.
fn sp<'a, O>(
    rule: impl Fn(&'a str) -> PResult<'a, O>,
    name: &'static str,
) -> impl Parser<&'a str, Output = O, Error = RingFail> {
    move |input: &'a str| {
        let field = input
            .strip_prefix(' ')
            .ok_or(nom::Err::Error(RingFail::Fields))?;
        match rule(field) {
            Ok((rest, out)) if rest.is_empty() || rest.starts_with(' ') => Ok((rest, out)),
            _ if field.is_empty() || field.starts_with(' ') => {
                Err(nom::Err::Error(RingFail::Fields))
            }
            _ => Err(nom::Err::Error(RingFail::Bad(name))),
        }
    }
}

/// `peers = count *(SP peer)`.
fn sp_peers(input: &str) -> RResult<'_, Vec<Peer>> {
    let (input, n) = sp(list_len, "count").parse(input)?;
    count(sp(peer, "peer"), n).parse(input)
}

/// `records = count *(SP record)`.
fn sp_records(input: &str) -> RResult<'_, Vec<Record>> {
    let (input, n) = sp(list_len, "count").parse(input)?;
    count(sp_record, n).parse(input)
}

/// `record = user SP ipv4 SP port SP version SP (pubkey_b64 / "-") SP (sig_b64 / "-")`,
/// the only place the ring copies text out of the datagram.
fn sp_record(input: &str) -> RResult<'_, Record> {
    map(
        (
            sp(record_user, "user"),
            sp(ipv4, "ip"),
            sp(decimal_u16, "port"),
            sp(decimal, "version"),
            sp(opt_token, "pubkey"),
            sp(opt_token, "sig"),
        ),
        |(user, ip, port, version, pubkey_b64, sig_b64)| Record {
            user: user.to_owned(),
            ip,
            port,
            version,
            pubkey_b64: pubkey_b64.to_owned(),
            sig_b64: sig_b64.to_owned(),
        },
    )
    .parse(input)
}

/// `op = "LOCATE" / "RESOLVE" SP user / "REGISTER" SP record / "HELD" SP user`.
fn sp_find_op(input: &str) -> RResult<'_, FindOp> {
    let (input, word) = sp(token, "op").parse(input)?;
    match word {
        words::LOCATE => Ok((input, FindOp::Locate)),
        words::RESOLVE => map(sp(token, "user"), |user| FindOp::Resolve {
            user: user.to_owned(),
        })
        .parse(input),
        words::REGISTER => map(sp_record, |record| FindOp::Register { record }).parse(input),
        words::HELD => map(sp(token, "user"), |user| FindOp::Held {
            user: user.to_owned(),
        })
        .parse(input),
        _ => Err(nom::Err::Error(RingFail::Bad("op"))),
    }
}

/// `outcome = "NODE" / "REC" SP record / "OK" / "ERR" SP code`.
fn sp_outcome(input: &str) -> RResult<'_, Outcome> {
    let (input, word) = sp(token, "outcome").parse(input)?;
    match word {
        words::NODE => Ok((input, Outcome::Node)),
        words::REC => map(sp_record, Outcome::Record).parse(input),
        words::OK => Ok((input, Outcome::Registered)),
        words::ERR => map(sp(find_error, "code"), Outcome::Error).parse(input),
        _ => Err(nom::Err::Error(RingFail::Bad("outcome"))),
    }
}

/// `code = "404" / "PAYLOAD" / "KEY" / "SIG" / "STALE"` ([`FindError::code`]).
fn find_error(input: &str) -> PResult<'_, FindError> {
    map_opt(token, FindError::from_code).parse(input)
}

/// `peer = id "@" ipv4 ":" port` (any port, 0 included: it is only an address).
fn peer(input: &str) -> PResult<'_, Peer> {
    map(
        separated_pair(
            decimal,
            char('@'),
            separated_pair(ipv4, char(':'), decimal_u16),
        ),
        |(id, (ip, port))| Peer {
            id,
            addr: SocketAddrV4::new(ip, port),
        },
    )
    .parse(input)
}

/// `opt-peer = peer / "-"`.
fn opt_peer(input: &str) -> PResult<'_, Option<Peer>> {
    alt((value(None, tag(words::NONE)), map(peer, Some))).parse(input)
}

/// A record's `user`: a token other than `-`.
fn record_user(input: &str) -> PResult<'_, &str> {
    verify(token, |user: &str| user != words::NONE).parse(input)
}

/// `token / "-"`: an optional text field; `-` is the empty text.
fn opt_token(input: &str) -> PResult<'_, &str> {
    map(token, |text| if text == words::NONE { "" } else { text }).parse(input)
}

/// `count = decimal` up to [`RING_MAX_LIST`].
fn list_len(input: &str) -> PResult<'_, usize> {
    map_opt(decimal, |n| {
        usize::try_from(n).ok().filter(|n| *n <= RING_MAX_LIST)
    })
    .parse(input)
}

/// `want = "0" / "1"`.
fn flag(input: &str) -> PResult<'_, bool> {
    alt((value(false, char('0')), value(true, char('1')))).parse(input)
}
