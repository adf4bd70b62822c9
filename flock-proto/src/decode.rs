//! The nom grammars of a Flock datagram, one small parser per rule: the client grammar
//! ([`frame`]) and our ring grammar ([`ring_frame`], the text after `RING `), built on
//! the same rules.
//!
//! Parsers work on the whole datagram as `&str` (UTF-8 is checked once, up front), use
//! only `nom::*::complete` combinators, and borrow every text field from the input. The
//! rules' nom error type is `()`, the ring's field combinator's a private [`RingFail`]:
//! nom never leaks out of this module; each failure is turned into a [`DecodeError`]
//! naming the verb and the field. Verbs are looked up in the tables of [`crate::verbs`].
//!
//! Shared rules (ABNF-ish; `SP` is one space, the only separator):
//!
//! ```text
//! datagram   = verb *(SP field)                   ; no terminator
//! verb       = 1*(%x21-7E)                        ; DISCOVER, REGISTER, OK, ...
//! token      = 1*(char other than whitespace or control)
//! decimal    = "0" / (%x31-39 *DIGIT)             ; canonical, fits u64
//! ipv4       = octet "." octet "." octet "." octet ; octet: decimal <= 255
//! port       = decimal                            ; 1..=65535
//! version    = decimal                            ; 1..=i64::MAX
//! username   = 3*20(letter / digit / "_")         ; Unicode letters and digits
//! b64        = 1*(ALPHA / DIGIT / "+" / "/" / "=")
//! ans-ip     = ipv4 / "."
//! ```
//!
//! The ring grammar's own rules (`peer`, `record`, `op`, `outcome`, ...) are listed in
//! [`crate::ring`].

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};

use nom::{
    Finish, IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while1},
    character::complete::{char, digit1},
    combinator::{all_consuming, map, map_opt, value, verify},
    sequence::preceded,
};

use crate::error::DecodeError;
use crate::frame::{AnswerTo, ErrorReply, Frame, LegacyRecord, OkReply, Register};
use crate::limits::{MAX_FIELDS, USERNAME_MAX_CHARS, USERNAME_MIN_CHARS};
use crate::validate::{is_username_char, validate_version};
use crate::verbs::Verb;

/// nom's result with the unit error: we only need to know *that* a rule failed.
type PResult<'a, O> = IResult<&'a str, O, ()>;

mod ring;
pub(crate) use ring::ring_frame;

// ---- entry point ------------------------------------------------------------------------

/// Decodes one whole datagram that is already known to be UTF-8 and not too long.
pub(crate) fn frame(text: &str) -> Result<Frame<'_>, DecodeError> {
    if text.is_empty() {
        return Err(DecodeError::Empty);
    }
    let (args, word) = verb(text).map_err(|_| DecodeError::UnknownVerb)?;
    let Some(verb) = Verb::from_text(word) else {
        return discover_server_proxied_frame(word, args);
    };
    let name = verb.as_str();
    match verb {
        Verb::Discover => none(name, args, Frame::Discover),
        Verb::DiscoverServer => none(name, args, Frame::DiscoverServer { reply_to: None }),
        Verb::Ping => none(name, args, Frame::Ping),
        Verb::Pong => none(name, args, Frame::Pong),
        Verb::Range => none(name, args, Frame::Range),
        Verb::Status => none(name, args, Frame::Status),
        Verb::Snapshot => none(name, args, Frame::Snapshot),
        Verb::Checksum => none(name, args, Frame::Checksum),
        Verb::Join => none(name, args, Frame::Join),
        Verb::Fix => none(name, args, Frame::Fix),
        Verb::Kill => none(name, args, Frame::Kill),
        Verb::Register => register_frame(args),
        Verb::Resolve => resolve_frame(args),
        Verb::Ok => ok_reply(args).map(Frame::Ok),
        Verb::Error => error_reply(args).map(Frame::Error),
        Verb::PredChange => {
            let [ip] = exact(name, args)?;
            Ok(Frame::PredChange {
                ip: field(name, "ip", ip, ipv4)?,
            })
        }
        Verb::Succ => succ_frame(args),
        Verb::Replic => legacy_record(name, args).map(Frame::Replic),
        Verb::Takeover => legacy_record(name, args).map(Frame::Takeover),
        Verb::DropReplics => {
            let [owner] = exact(name, args)?;
            Ok(Frame::DropReplics {
                owner: field(name, "owner_ip", owner, ipv4)?,
            })
        }
        Verb::Ring => match args.strip_prefix(' ') {
            Some(rest) => ring_frame(rest).map(Frame::Ring),
            None => Err(DecodeError::Fields { verb: name }),
        },
        Verb::Message => {
            let [sender, payload] = exact(name, args)?;
            Ok(Frame::Message {
                sender: Cow::Borrowed(field(name, "sender", sender, token)?),
                payload_b64: Cow::Borrowed(field(name, "payload_b64", payload, b64)?),
            })
        }
        Verb::PubkeyReq => {
            let [requester] = exact(name, args)?;
            Ok(Frame::PubkeyReq {
                requester: Cow::Borrowed(field(name, "requester", requester, token)?),
            })
        }
        Verb::PubkeyRes => {
            let [user, key] = exact(name, args)?;
            Ok(Frame::PubkeyRes {
                user: Cow::Borrowed(field(name, "user", user, token)?),
                pubkey_b64: Cow::Borrowed(field(name, "pubkey_b64", key, b64)?),
            })
        }
        Verb::Hello => {
            let [user, features] = exact(name, args)?;
            Ok(Frame::Hello {
                user: Cow::Borrowed(field(name, "user", user, token)?),
                features: Cow::Borrowed(field(name, "features", features, token)?),
            })
        }
        Verb::SecureMessage => {
            let [sender, id, payload, sig] = exact(name, args)?;
            Ok(Frame::SecureMessage {
                sender: Cow::Borrowed(field(name, "sender", sender, token)?),
                id: field(name, "id", id, decimal)?,
                payload_b64: Cow::Borrowed(field(name, "payload_b64", payload, b64)?),
                sig_b64: Cow::Borrowed(field(name, "sig_b64", sig, b64)?),
            })
        }
        Verb::Lookup => {
            let [user, rid] = exact(name, args)?;
            Ok(Frame::Lookup {
                user: Cow::Borrowed(field(name, "user", user, username)?),
                rid: field(name, "rid", rid, decimal)?,
            })
        }
        Verb::Found => {
            let [rid, user, ip, port, version, key, sig] = exact(name, args)?;
            Ok(Frame::Found {
                rid: field(name, "rid", rid, decimal)?,
                record: register_fields([user, ip, port, version, key, sig])?,
            })
        }
        Verb::NotFound => {
            let [rid] = exact(name, args)?;
            Ok(Frame::NotFound {
                rid: field(name, "rid", rid, decimal)?,
            })
        }
        Verb::Ack => {
            let [from, id, sig] = exact(name, args)?;
            Ok(Frame::Ack {
                from: Cow::Borrowed(field(name, "from", from, token)?),
                id: field(name, "id", id, decimal)?,
                sig_b64: Cow::Borrowed(field(name, "sig_b64", sig, b64)?),
            })
        }
    }
}

/// `"DISCOVER_SERVER:" ipv4 ":" port`, the one verb with a field glued to it; any other
/// unknown first word is [`DecodeError::UnknownVerb`].
fn discover_server_proxied_frame<'a>(word: &str, args: &str) -> Result<Frame<'a>, DecodeError> {
    let name = Verb::DiscoverServer.as_str();
    if !word
        .strip_prefix(name)
        .is_some_and(|rest| rest.starts_with(':'))
    {
        return Err(DecodeError::UnknownVerb);
    }
    let addr = field(name, "reply_to", word, discover_server_proxied)?;
    none(
        name,
        args,
        Frame::DiscoverServer {
            reply_to: Some(addr),
        },
    )
}

/// The raw reply to `DISCOVER`: the server's name, any non-empty text.
pub(crate) fn discover_reply(text: &str) -> Result<&str, DecodeError> {
    if text.is_empty() {
        Err(DecodeError::Empty)
    } else {
        Ok(text)
    }
}

/// The raw reply to `DISCOVER_SERVER`: the server's IPv4 address, nothing else.
pub(crate) fn discover_server_reply(text: &str) -> Result<Ipv4Addr, DecodeError> {
    if text.is_empty() {
        return Err(DecodeError::Empty);
    }
    field(Verb::DiscoverServer.as_str(), "ip", text, ipv4)
}

// ---- helpers turning nom results into DecodeError ----------------------------------------

/// Runs `parser` over the whole of one field; any failure is `BadField { verb, field }`.
fn field<'a, O>(
    verb: &'static str,
    name: &'static str,
    input: &'a str,
    parser: impl Parser<&'a str, Output = O, Error = ()>,
) -> Result<O, DecodeError> {
    all_consuming(parser)
        .parse(input)
        .finish()
        .map(|(_, out)| out)
        .map_err(|()| DecodeError::BadField { verb, field: name })
}

/// A frame with no fields: `args` must be empty.
fn none<'a>(verb: &'static str, args: &str, frame: Frame<'a>) -> Result<Frame<'a>, DecodeError> {
    if args.is_empty() {
        Ok(frame)
    } else {
        Err(DecodeError::Fields { verb })
    }
}

/// Exactly `N` space-separated fields after the verb.
fn exact<'a, const N: usize>(
    verb: &'static str,
    args: &'a str,
) -> Result<[&'a str; N], DecodeError> {
    let fields = fields(args).ok_or(DecodeError::Fields { verb })?;
    fields
        .as_slice()
        .try_into()
        .map_err(|_| DecodeError::Fields { verb })
}

/// Up to [`MAX_FIELDS`] fields, borrowed from the datagram, without allocating.
struct Fields<'a> {
    items: [&'a str; MAX_FIELDS],
    len: usize,
}

impl<'a> Fields<'a> {
    fn as_slice(&self) -> &[&'a str] {
        &self.items[..self.len]
    }
}

/// `*(SP field)` up to the end of the datagram; `None` on an empty field (two spaces, a
/// trailing space) or more than [`MAX_FIELDS`] fields.
fn fields(mut args: &str) -> Option<Fields<'_>> {
    let mut out = Fields {
        items: [""; MAX_FIELDS],
        len: 0,
    };
    while !args.is_empty() {
        let (rest, item) = sp_field(args).ok()?;
        *out.items.get_mut(out.len)? = item;
        out.len += 1;
        args = rest;
    }
    Some(out)
}

// ---- frames with alternative shapes -------------------------------------------------------

/// `REGISTER`: 3 fields = the design document's unsigned form, 6 = signed,
/// 8 = forwarded (`<ans_ip> <ans_port>` first).
fn register_frame(args: &str) -> Result<Frame<'_>, DecodeError> {
    const V: &str = Verb::Register.as_str();
    let fields = fields(args).ok_or(DecodeError::Fields { verb: V })?;
    match *fields.as_slice() {
        [user, ip, port] => Ok(Frame::RegisterLegacy {
            user: Cow::Borrowed(field(V, "user", user, username)?),
            ip: field(V, "ip", ip, ipv4)?,
            port: field(V, "port", port, port_number)?,
        }),
        [user, ip, port, version, key, sig] => Ok(Frame::Register(register_fields([
            user, ip, port, version, key, sig,
        ])?)),
        [ans_ip, ans_port, user, ip, port, version, key, sig] => {
            let answer = match field(V, "ans_ip", ans_ip, answer_ip)? {
                None => {
                    field(V, "ans_port", ans_port, nobody_port)?;
                    AnswerTo::Nobody
                }
                Some(ip) => AnswerTo::Addr(SocketAddrV4::new(
                    ip,
                    field(V, "ans_port", ans_port, port_number)?,
                )),
            };
            Ok(Frame::ForwardRegister {
                answer,
                register: register_fields([user, ip, port, version, key, sig])?,
            })
        }
        _ => Err(DecodeError::Fields { verb: V }),
    }
}

/// `<user> <ip> <port> <version> <pubkey_b64> <sig_b64>` of a signed `REGISTER`.
fn register_fields<'a>(
    [user, ip, port, version, key, sig]: [&'a str; 6],
) -> Result<Register<'a>, DecodeError> {
    const V: &str = Verb::Register.as_str();
    Ok(Register {
        user: Cow::Borrowed(field(V, "user", user, username)?),
        ip: field(V, "ip", ip, ipv4)?,
        port: field(V, "port", port, port_number)?,
        version: field(V, "version", version, registration_version)?,
        pubkey_b64: Cow::Borrowed(field(V, "pubkey_b64", key, b64)?),
        sig_b64: Cow::Borrowed(field(V, "sig_b64", sig, b64)?),
    })
}

/// `RESOLVE <user>` or the forwarded `RESOLVE <ans_ip> <ans_port> <user>`.
///
/// The user is any token: the original answers `ERROR 404 User not found` for a name that
/// could never have registered, and so must we.
fn resolve_frame(args: &str) -> Result<Frame<'_>, DecodeError> {
    const V: &str = Verb::Resolve.as_str();
    let fields = fields(args).ok_or(DecodeError::Fields { verb: V })?;
    match *fields.as_slice() {
        [user] => Ok(Frame::Resolve {
            user: Cow::Borrowed(field(V, "user", user, token)?),
        }),
        [ans_ip, ans_port, user] => Ok(Frame::ForwardResolve {
            answer: SocketAddrV4::new(
                field(V, "ans_ip", ans_ip, ipv4)?,
                field(V, "ans_port", ans_port, port_number)?,
            ),
            user: Cow::Borrowed(field(V, "user", user, token)?),
        }),
        _ => Err(DecodeError::Fields { verb: V }),
    }
}

/// `OK` replies, told apart by shape:
/// nothing = bare; `{...` = JSON; `User '...` = registered; 2 fields starting with an
/// IPv4 = legacy resolved; 2 numbers = range; 4 fields starting with an IPv4 = resolved;
/// 4 fields starting with a number = joined.
fn ok_reply(args: &str) -> Result<OkReply<'_>, DecodeError> {
    const V: &str = Verb::Ok.as_str();
    if args.is_empty() {
        return Ok(OkReply::Bare);
    }
    let body = args
        .strip_prefix(' ')
        .ok_or(DecodeError::Fields { verb: V })?;
    if body.starts_with('{') {
        return Ok(OkReply::Json(Cow::Borrowed(body)));
    }
    if body.starts_with("User '") {
        let (user, ip, port) = field(V, "registered", body, registered)?;
        return Ok(OkReply::Registered {
            user: Cow::Borrowed(user),
            ip,
            port,
        });
    }
    let fields = fields(args).ok_or(DecodeError::Fields { verb: V })?;
    match *fields.as_slice() {
        [first, port] if all_consuming(ipv4).parse(first).is_ok() => Ok(OkReply::ResolvedLegacy {
            ip: field(V, "ip", first, ipv4)?,
            port: field(V, "port", port, port_number)?,
        }),
        [lo, hi] => Ok(OkReply::Range {
            lo: field(V, "lo", lo, decimal)?,
            hi: field(V, "hi", hi, decimal)?,
        }),
        [first, port, key, version] if all_consuming(ipv4).parse(first).is_ok() => {
            Ok(OkReply::Resolved {
                ip: field(V, "ip", first, ipv4)?,
                port: field(V, "port", port, port_number)?,
                pubkey_b64: Cow::Borrowed(field(V, "pubkey_b64", key, b64)?),
                version: field(V, "version", version, decimal)?,
            })
        }
        [lo, hi, pred, succ] => Ok(OkReply::Joined {
            lo: field(V, "lo", lo, decimal)?,
            hi: field(V, "hi", hi, decimal)?,
            pred: field(V, "pred_ip", pred, ipv4)?,
            succ: field(V, "succ_ip", succ, optional_ip)?,
        }),
        _ => Err(DecodeError::Fields { verb: V }),
    }
}

/// `ERROR` alone, or `ERROR <text>` with the original's exact texts recognised.
fn error_reply(args: &str) -> Result<ErrorReply<'_>, DecodeError> {
    if args.is_empty() {
        return Ok(ErrorReply::Other(Cow::Borrowed("")));
    }
    match args.strip_prefix(' ') {
        Some(text) if !text.is_empty() => Ok(ErrorReply::from_text(Cow::Borrowed(text))),
        _ => Err(DecodeError::Fields {
            verb: Verb::Error.as_str(),
        }),
    }
}

/// `SUCC *(SP ipv4)`: the successor list, any length.
fn succ_frame(mut args: &str) -> Result<Frame<'static>, DecodeError> {
    let mut ips = Vec::new();
    while !args.is_empty() {
        let (rest, item) = sp_field(args).map_err(|_| DecodeError::Fields {
            verb: Verb::Succ.as_str(),
        })?;
        ips.push(field(Verb::Succ.as_str(), "ip", item, ipv4)?);
        args = rest;
    }
    Ok(Frame::Succ { ips })
}

/// `<user> <ip> <port> [<version> <pubkey_b64>]` of `REPLIC` and `TAKEOVER`.
fn legacy_record<'a>(verb: &'static str, args: &'a str) -> Result<LegacyRecord<'a>, DecodeError> {
    let fields = fields(args).ok_or(DecodeError::Fields { verb })?;
    let (user, ip, port, extra) = match *fields.as_slice() {
        [user, ip, port] => (user, ip, port, None),
        [user, ip, port, version, key] => (user, ip, port, Some((version, key))),
        _ => return Err(DecodeError::Fields { verb }),
    };
    let (version, pubkey_b64) = match extra {
        None => (None, None),
        Some((version, key)) => (
            Some(field(verb, "version", version, decimal)?),
            Some(Cow::Borrowed(field(verb, "pubkey_b64", key, b64)?)),
        ),
    };
    Ok(LegacyRecord {
        user: Cow::Borrowed(field(verb, "user", user, token)?),
        ip: field(verb, "ip", ip, ipv4)?,
        port: field(verb, "port", port, port_number)?,
        version,
        pubkey_b64,
    })
}

// ---- the grammar rules ----------------------------------------------------------------------

/// `verb = 1*(char other than SP)`: the first word. Returns (rest, verb); `rest` is empty
/// or starts with the space before the first field.
fn verb(input: &str) -> PResult<'_, &str> {
    till_space1(input)
}

/// Whether `c` may appear in a token: anything but whitespace and control characters
/// (so a name can never smuggle a newline into a log line or a second field).
fn is_token_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control()
}

/// `token = 1*(char other than whitespace or control)`.
///
/// Visible ASCII, the common case (names, base64), is scanned byte-wise in chunks (see
/// [`prefix_len`]); the first other byte, if it is not the end of the token, starts a
/// multi-byte char and the rest is checked char by char.
fn token(input: &str) -> PResult<'_, &str> {
    let bytes = input.as_bytes();
    let ascii = prefix_len(bytes, |b| b.wrapping_sub(0x21) < 0x5e);
    let at = match bytes.get(ascii) {
        // Every byte before `ascii` is ASCII, so `ascii` is a char boundary.
        Some(b) if !b.is_ascii() => {
            let rest = input.get(ascii..).unwrap_or_default();
            ascii + rest.find(|c| !is_token_char(c)).unwrap_or(rest.len())
        }
        // The end, or an ASCII space or control character.
        _ => ascii,
    };
    match at {
        0 => Err(nom::Err::Error(())),
        at => Ok((&input[at..], &input[..at])),
    }
}

/// `SP 1*(char other than SP)`: one field with the space that precedes it. What the
/// field may contain is checked by the field's own rule, so errors name the field.
fn sp_field(input: &str) -> PResult<'_, &str> {
    preceded(char(' '), till_space1).parse(input)
}

/// `1*(char other than SP)`, found with `str::find` (a vectorised byte search): the
/// same as `take_till1(|c| c == ' ')` but much faster over a kilobyte of base64.
fn till_space1(input: &str) -> PResult<'_, &str> {
    match input.find(' ').unwrap_or(input.len()) {
        0 => Err(nom::Err::Error(())),
        // ' ' is ASCII, so `at` is a char boundary.
        at => Ok((&input[at..], &input[..at])),
    }
}

/// `decimal = "0" / (%x31-39 *DIGIT)`: a canonical unsigned decimal that fits `u64`.
/// Leading zeros are refused so that every decoded frame re-encodes to the same bytes.
fn decimal(input: &str) -> PResult<'_, u64> {
    map_opt(digit1, |digits: &str| {
        if digits.len() > 1 && digits.starts_with('0') {
            None
        } else {
            digits.parse().ok()
        }
    })
    .parse(input)
}

/// `decimal` that fits `u32`.
fn decimal_u32(input: &str) -> PResult<'_, u32> {
    map_opt(decimal, |n| u32::try_from(n).ok()).parse(input)
}

/// `decimal` that fits `u16`, 0 included (see [`port_number`] for a port to reply to).
fn decimal_u16(input: &str) -> PResult<'_, u16> {
    map_opt(decimal, |n| u16::try_from(n).ok()).parse(input)
}

/// `octet = decimal` in `0..=255`.
fn octet(input: &str) -> PResult<'_, u8> {
    map_opt(decimal, |n| u8::try_from(n).ok()).parse(input)
}

/// `ipv4 = octet "." octet "." octet "." octet`.
fn ipv4(input: &str) -> PResult<'_, Ipv4Addr> {
    map(
        (octet, char('.'), octet, char('.'), octet, char('.'), octet),
        |(a, _, b, _, c, _, d)| Ipv4Addr::new(a, b, c, d),
    )
    .parse(input)
}

/// `port = decimal` in `1..=65535`.
fn port_number(input: &str) -> PResult<'_, u16> {
    verify(decimal_u16, |port| *port != 0).parse(input)
}

/// `version = decimal` in `1..=i64::MAX` (the original stores a signed 64-bit integer).
fn registration_version(input: &str) -> PResult<'_, u64> {
    verify(decimal, |v| validate_version(*v).is_ok()).parse(input)
}

/// `username = 3*20(letter / digit / "_")`, counting Unicode code points.
fn username(input: &str) -> PResult<'_, &str> {
    verify(take_while1(is_username_char), |name: &str| {
        (USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&name.chars().count())
    })
    .parse(input)
}

/// `b64 = 1*(ALPHA / DIGIT / "+" / "/" / "=")`: the standard base64 alphabet. Only the
/// alphabet is checked here; decoding is the crypto layer's job.
fn b64(input: &str) -> PResult<'_, &str> {
    // Byte-wise: every base64 byte is ASCII, so the first byte that is not one is the
    // start of a char and slicing there is safe. Much faster than `take_while1` over chars.
    match prefix_len(input.as_bytes(), is_b64_byte) {
        0 => Err(nom::Err::Error(())),
        at => Ok((&input[at..], &input[..at])),
    }
}

/// Length of the longest prefix of `bytes` whose bytes all satisfy `byte_ok`.
///
/// Whole 32-byte chunks are checked without branches (the compiler turns this into SIMD
/// compares for a branch-free `byte_ok`), then the first chunk that fails is searched
/// byte by byte.
fn prefix_len(bytes: &[u8], byte_ok: impl Fn(u8) -> bool) -> usize {
    let mut at = 0;
    for chunk in bytes.chunks_exact(32) {
        if !chunk.iter().fold(true, |ok, &b| ok & byte_ok(b)) {
            break;
        }
        at += 32;
    }
    let tail = bytes.get(at..).unwrap_or_default();
    at + tail.iter().position(|&b| !byte_ok(b)).unwrap_or(tail.len())
}

/// Whether `b` is in the standard base64 alphabet (padding included), without branches.
fn is_b64_byte(b: u8) -> bool {
    (b.wrapping_sub(b'A') < 26)
        | (b.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'+')
        | (b == b'/')
        | (b == b'=')
}

/// `ans-ip = ipv4 / "."`; `.` (no reply) is `None`.
fn answer_ip(input: &str) -> PResult<'_, Option<Ipv4Addr>> {
    alt((value(None, char('.')), map(ipv4, Some))).parse(input)
}

/// The `ans_port` after a `.` ans_ip: `0` (what we send) or `.`; it is ignored.
fn nobody_port(input: &str) -> PResult<'_, ()> {
    value((), alt((tag("0"), tag(".")))).parse(input)
}

/// `ipv4 / "_"`: a successor that may be missing.
fn optional_ip(input: &str) -> PResult<'_, Option<Ipv4Addr>> {
    alt((value(None, char('_')), map(ipv4, Some))).parse(input)
}

/// `"User '" user "' in (" ipv4 ":" port ") successfully registered"`; the user is any
/// token without `'`.
fn registered(input: &str) -> PResult<'_, (&str, Ipv4Addr, u16)> {
    map(
        (
            tag("User '"),
            take_while1(|c| is_token_char(c) && c != '\''),
            tag("' in ("),
            ipv4,
            char(':'),
            port_number,
            tag(") successfully registered"),
        ),
        |(_, user, _, ip, _, port, _)| (user, ip, port),
    )
    .parse(input)
}

/// `"DISCOVER_SERVER:" ipv4 ":" port`: the discovery proxy's form.
fn discover_server_proxied(input: &str) -> PResult<'_, SocketAddrV4> {
    map(
        (
            tag(Verb::DiscoverServer.as_str()),
            char(':'),
            ipv4,
            char(':'),
            port_number,
        ),
        |(_, _, ip, _, port)| SocketAddrV4::new(ip, port),
    )
    .parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The byte-wise `token` and `b64` accept exactly what the char-wise rules do.
        #[test]
        fn fast_rules_match_their_definitions(text in "([!-~]{0,40}|\\PC|[ \t\n\u{7f}\u{85}\u{a0}]){0,12}") {
            let text = text.as_str();
            prop_assert_eq!(
                token(text),
                take_while1::<_, _, ()>(is_token_char).parse(text)
            );
            prop_assert_eq!(
                b64(text),
                take_while1::<_, _, ()>(|c: char| c.is_ascii() && is_b64_byte(c as u8)).parse(text)
            );
        }
    }
}
