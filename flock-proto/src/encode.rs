//! Writing frames: exactly the bytes the original writes, for both grammars.
//!
//! Numbers are canonical decimals, addresses dotted quads, fields joined by one space,
//! no terminator. Everything appends to a caller-owned buffer: a `Vec<u8>`, or a
//! [`Len`] that only counts, which is how [`RingFrame::encoded_len`] stays exact
//! without allocating (one writer, two sinks). The client frames ([`frame`]) and the
//! ring frames ([`ring_frame`]) share the verb table and the number, address and
//! record writers below.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::frame::{AnswerTo, ErrorReply, Frame, LegacyRecord, OkReply, Register};
use crate::record::Record;
use crate::ring::{FindOp, Outcome, Peer, RingFrame, words};
use crate::verbs::Verb;

/// Appends the whole frame to `out`.
pub(crate) fn frame(frame: &Frame<'_>, out: &mut Vec<u8>) {
    if let Frame::Ring(ring) = frame {
        return ring_frame(ring, out);
    }
    // The verb, then the fields after it.
    verb(out, frame.kind());
    match frame {
        Frame::Discover
        | Frame::DiscoverServer { reply_to: None }
        | Frame::Ping
        | Frame::Pong
        | Frame::Range
        | Frame::Status
        | Frame::Snapshot
        | Frame::Checksum
        | Frame::Join
        | Frame::Fix
        | Frame::Kill
        | Frame::Ring(_) => {}
        // `DISCOVER_SERVER:<ip>:<port>`: the proxied form glues its field to the verb.
        Frame::DiscoverServer {
            reply_to: Some(addr),
        } => {
            out.byte(b':');
            socket_addr(out, *addr);
        }
        Frame::Register(register) => {
            register_fields(out, register);
        }
        Frame::Lookup { user, rid } => {
            sp_str(out, user);
            sp_num(out, *rid);
        }
        Frame::Found { rid, record } => {
            sp_num(out, *rid);
            register_fields(out, record);
        }
        Frame::NotFound { rid } => {
            sp_num(out, *rid);
        }
        Frame::RegisterLegacy {
            user,
            ip: addr,
            port,
        } => {
            sp_str(out, user);
            sp_ip(out, *addr);
            sp_num(out, u64::from(*port));
        }
        Frame::Resolve { user } => {
            sp_str(out, user);
        }
        Frame::ForwardRegister { answer, register } => {
            match answer {
                AnswerTo::Addr(addr) => {
                    sp_ip(out, *addr.ip());
                    sp_num(out, u64::from(addr.port()));
                }
                // `.` means "do not reply"; the port is a placeholder that parses as a
                // number, so a receiver that converts it unconditionally survives.
                AnswerTo::Nobody => put(out, " . 0"),
            }
            register_fields(out, register);
        }
        Frame::ForwardResolve { answer, user } => {
            sp_ip(out, *answer.ip());
            sp_num(out, u64::from(answer.port()));
            sp_str(out, user);
        }
        Frame::Ok(reply) => ok_reply(out, reply),
        Frame::Error(reply) => error_reply(out, reply),
        Frame::PredChange { ip: addr } => {
            sp_ip(out, *addr);
        }
        Frame::Succ { ips } => {
            for addr in ips {
                sp_ip(out, *addr);
            }
        }
        Frame::Replic(record) | Frame::Takeover(record) => legacy_record(out, record),
        Frame::DropReplics { owner } => {
            sp_ip(out, *owner);
        }
        Frame::Message {
            sender,
            payload_b64,
        } => {
            sp_str(out, sender);
            sp_str(out, payload_b64);
        }
        Frame::PubkeyReq { requester } => {
            sp_str(out, requester);
        }
        Frame::PubkeyRes { user, pubkey_b64 } => {
            sp_str(out, user);
            sp_str(out, pubkey_b64);
        }
        Frame::Hello { user, features } => {
            sp_str(out, user);
            sp_str(out, features);
        }
        Frame::SecureMessage {
            sender,
            id,
            payload_b64,
            sig_b64,
        } => {
            sp_str(out, sender);
            sp_num(out, *id);
            sp_str(out, payload_b64);
            sp_str(out, sig_b64);
        }
        Frame::Ack { from, id, sig_b64 } => {
            sp_str(out, from);
            sp_num(out, *id);
            sp_str(out, sig_b64);
        }
    }
}

/// ` <user> <ip> <port> <version> <pubkey_b64> <sig_b64>`.
fn register_fields(out: &mut Vec<u8>, r: &Register<'_>) {
    sp_str(out, &r.user);
    sp_ip(out, r.ip);
    sp_num(out, u64::from(r.port));
    sp_num(out, r.version);
    sp_str(out, &r.pubkey_b64);
    sp_str(out, &r.sig_b64);
}

/// ` <user> <ip> <port> [<version> <pubkey_b64>]`. Written only when both optional fields
/// are present: a record with one of them alone has no wire form and is sent without.
fn legacy_record(out: &mut Vec<u8>, r: &LegacyRecord<'_>) {
    sp_str(out, &r.user);
    sp_ip(out, r.ip);
    sp_num(out, u64::from(r.port));
    if let (Some(version), Some(key)) = (r.version, &r.pubkey_b64) {
        sp_num(out, version);
        sp_str(out, key);
    }
}

/// The fields of an `OK` reply (the verb is written already).
fn ok_reply(out: &mut Vec<u8>, reply: &OkReply<'_>) {
    match reply {
        OkReply::Range { lo, hi } => {
            sp_num(out, *lo);
            sp_num(out, *hi);
        }
        OkReply::Registered {
            user,
            ip: addr,
            port,
        } => {
            put(out, " User '");
            put(out, user);
            put(out, "' in (");
            socket_addr(out, SocketAddrV4::new(*addr, *port));
            put(out, ") successfully registered");
        }
        OkReply::Resolved {
            ip: addr,
            port,
            pubkey_b64,
            version,
        } => {
            sp_ip(out, *addr);
            sp_num(out, u64::from(*port));
            sp_str(out, pubkey_b64);
            sp_num(out, *version);
        }
        OkReply::ResolvedLegacy { ip: addr, port } => {
            sp_ip(out, *addr);
            sp_num(out, u64::from(*port));
        }
        OkReply::Joined { lo, hi, pred, succ } => {
            sp_num(out, *lo);
            sp_num(out, *hi);
            sp_ip(out, *pred);
            match succ {
                Some(succ) => sp_ip(out, *succ),
                None => put(out, " _"),
            }
        }
        OkReply::Json(json) => sp_str(out, json),
        OkReply::Bare => {}
    }
}

/// The text of an `ERROR` reply (the verb is written already).
fn error_reply(out: &mut Vec<u8>, reply: &ErrorReply<'_>) {
    let text = reply.text();
    if !text.is_empty() {
        sp_str(out, text);
    }
}

/// The raw `DISCOVER` reply: the name's bytes.
pub(crate) fn discover_reply(name: &str, out: &mut Vec<u8>) {
    put(out, name);
}

/// The raw `DISCOVER_SERVER` reply: the dotted quad.
pub(crate) fn discover_server_reply(addr: Ipv4Addr, out: &mut Vec<u8>) {
    ip(out, addr);
}

// ---- the ring grammar -------------------------------------------------------------------------

/// Appends a whole ring frame, `RING ` included (grammar: [`crate::ring`]).
pub(crate) fn ring_frame<S: Sink>(frame: &RingFrame, out: &mut S) {
    verb(out, Verb::Ring);
    out.byte(b' ');
    put(out, frame.kind().as_str());
    sp_num(out, frame.rid());
    if let Some(cookie) = frame.cookie() {
        sp_num(out, cookie);
    }
    match frame {
        RingFrame::Discover { .. }
        | RingFrame::Refuse { .. }
        | RingFrame::Busy { .. }
        | RingFrame::Join { .. }
        | RingFrame::GetState { .. }
        | RingFrame::Ping { .. }
        | RingFrame::Fix { .. } => {}
        RingFrame::Here { lo, hi, .. }
        | RingFrame::Fetch { lo, hi, .. }
        | RingFrame::Drop { lo, hi, .. } => {
            sp_num(out, *lo);
            sp_num(out, *hi);
        }
        // Not a request: its cookie is the answer, not a carried one.
        RingFrame::Cookie { cookie, .. } => sp_num(out, *cookie),
        RingFrame::Welcome {
            id,
            chunks,
            pred,
            succs,
            ..
        } => {
            sp_num(out, *id);
            sp_num(out, u64::from(*chunks));
            sp_peer(out, pred);
            sp_peers(out, succs);
        }
        RingFrame::Records {
            seq,
            total,
            records,
            ..
        } => {
            sp_num(out, u64::from(*seq));
            sp_num(out, u64::from(*total));
            sp_records(out, records);
        }
        RingFrame::Ack { seq, .. } => sp_num(out, u64::from(*seq)),
        RingFrame::State {
            id, pred, succs, ..
        } => {
            sp_num(out, *id);
            sp_opt_peer(out, pred.as_ref());
            sp_peers(out, succs);
        }
        RingFrame::Rectify { id, .. } => sp_num(out, *id),
        RingFrame::Find { key, op, .. } => {
            sp_num(out, *key);
            match op {
                FindOp::Locate => sp_str(out, words::LOCATE),
                FindOp::Resolve { user } => {
                    sp_str(out, words::RESOLVE);
                    sp_str(out, user);
                }
                FindOp::Register { record } => {
                    sp_str(out, words::REGISTER);
                    sp_record(out, record);
                }
                FindOp::Held { user } => {
                    sp_str(out, words::HELD);
                    sp_str(out, user);
                }
            }
        }
        RingFrame::Refer { peer, .. } => sp_peer(out, peer),
        RingFrame::Found { id, outcome, .. } => {
            sp_num(out, *id);
            match outcome {
                Outcome::Node => sp_str(out, words::NODE),
                Outcome::Record(record) => {
                    sp_str(out, words::REC);
                    sp_record(out, record);
                }
                Outcome::Registered => sp_str(out, words::OK),
                Outcome::Error(error) => {
                    sp_str(out, words::ERR);
                    sp_str(out, error.code());
                }
            }
        }
        RingFrame::Replicate { records, .. } => sp_records(out, records),
        RingFrame::Sync {
            lo,
            hi,
            count,
            digest,
            ..
        } => {
            sp_num(out, *lo);
            sp_num(out, *hi);
            sp_num(out, *count);
            sp_num(out, *digest);
        }
        RingFrame::Synced { want, .. } => sp_num(out, u64::from(*want)),
        RingFrame::Leave {
            chunks,
            pred,
            succs,
            ..
        } => {
            sp_num(out, u64::from(*chunks));
            sp_opt_peer(out, pred.as_ref());
            sp_peers(out, succs);
        }
    }
}

/// ` id@ip:port`.
fn sp_peer<S: Sink>(out: &mut S, peer: &Peer) {
    sp_num(out, peer.id);
    out.byte(b'@');
    socket_addr(out, peer.addr);
}

/// ` -` or ` id@ip:port`.
fn sp_opt_peer<S: Sink>(out: &mut S, peer: Option<&Peer>) {
    match peer {
        Some(peer) => sp_peer(out, peer),
        None => {
            out.byte(b' ');
            put(out, words::NONE);
        }
    }
}

/// ` count *(SP peer)`.
fn sp_peers<S: Sink>(out: &mut S, peers: &[Peer]) {
    sp_num(out, peers.len() as u64);
    for peer in peers {
        sp_peer(out, peer);
    }
}

/// ` user ip port version pubkey sig`, an empty key or signature written `-`.
pub(crate) fn sp_record<S: Sink>(out: &mut S, r: &Record) {
    sp_str(out, &r.user);
    sp_ip(out, r.ip);
    sp_num(out, u64::from(r.port));
    sp_num(out, r.version);
    sp_str(out, or_dash(&r.pubkey_b64));
    sp_str(out, or_dash(&r.sig_b64));
}

/// An optional text field: empty has no wire form, so it is written `-`.
fn or_dash(text: &str) -> &str {
    if text.is_empty() { words::NONE } else { text }
}

/// ` count *(SP record)`.
fn sp_records<S: Sink>(out: &mut S, records: &[Record]) {
    sp_num(out, records.len() as u64);
    for record in records {
        sp_record(out, record);
    }
}

// ---- primitives, shared by both grammars ------------------------------------------------------

/// Where an encoder writes: the caller's buffer, or a [`Len`] counting the bytes.
pub(crate) trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);

    /// Appends one byte (a separator: cheaper than a one-byte `put`).
    fn byte(&mut self, byte: u8);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline]
    fn byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// A sink that only counts: encoding into it gives the exact encoded length.
#[derive(Debug, Default)]
pub(crate) struct Len(pub(crate) usize);

impl Sink for Len {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    #[inline]
    fn byte(&mut self, _: u8) {
        self.0 += 1;
    }
}

#[inline]
fn put<S: Sink>(out: &mut S, text: &str) {
    out.put(text.as_bytes());
}

#[inline]
fn verb<S: Sink>(out: &mut S, verb: Verb) {
    put(out, verb.as_str());
}

#[inline]
fn sp_str<S: Sink>(out: &mut S, text: &str) {
    out.byte(b' ');
    put(out, text);
}

#[inline]
fn sp_num<S: Sink>(out: &mut S, n: u64) {
    out.byte(b' ');
    num(out, n);
}

#[inline]
fn sp_ip<S: Sink>(out: &mut S, addr: Ipv4Addr) {
    out.byte(b' ');
    ip(out, addr);
}

/// A canonical decimal (no sign, no leading zeros), without going through `fmt`.
fn num<S: Sink>(out: &mut S, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        // n % 10 < 10 fits u8.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&buf[at..]);
}

/// A dotted quad.
fn ip<S: Sink>(out: &mut S, addr: Ipv4Addr) {
    let [a, b, c, d] = addr.octets();
    num(out, u64::from(a));
    out.byte(b'.');
    num(out, u64::from(b));
    out.byte(b'.');
    num(out, u64::from(c));
    out.byte(b'.');
    num(out, u64::from(d));
}

/// `ip:port`.
fn socket_addr<S: Sink>(out: &mut S, addr: SocketAddrV4) {
    ip(out, *addr.ip());
    out.byte(b':');
    num(out, u64::from(addr.port()));
}
