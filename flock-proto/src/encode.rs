//! Writing frames: exactly the bytes the original writes.
//!
//! Numbers are canonical decimals, addresses dotted quads, fields joined by one space,
//! no terminator. Everything appends to a caller-owned `Vec<u8>`.

use std::net::Ipv4Addr;

use crate::frame::{AnswerTo, ErrorReply, Frame, LegacyRecord, OkReply, Register};

/// Appends the whole frame to `out`.
pub(crate) fn frame(frame: &Frame<'_>, out: &mut Vec<u8>) {
    match frame {
        Frame::Discover => put(out, "DISCOVER"),
        Frame::DiscoverServer { reply_to: None } => put(out, "DISCOVER_SERVER"),
        Frame::DiscoverServer {
            reply_to: Some(addr),
        } => {
            put(out, "DISCOVER_SERVER:");
            ip(out, *addr.ip());
            out.push(b':');
            num(out, u64::from(addr.port()));
        }
        Frame::Ping => put(out, "PING"),
        Frame::Pong => put(out, "PONG"),
        Frame::Range => put(out, "RANGE"),
        Frame::Register(register) => {
            put(out, "REGISTER");
            register_fields(out, register);
        }
        Frame::RegisterLegacy {
            user,
            ip: addr,
            port,
        } => {
            put(out, "REGISTER");
            sp_str(out, user);
            sp_ip(out, *addr);
            sp_num(out, u64::from(*port));
        }
        Frame::Resolve { user } => {
            put(out, "RESOLVE");
            sp_str(out, user);
        }
        Frame::ForwardRegister { answer, register } => {
            put(out, "REGISTER");
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
            put(out, "RESOLVE");
            sp_ip(out, *answer.ip());
            sp_num(out, u64::from(answer.port()));
            sp_str(out, user);
        }
        Frame::Status => put(out, "STATUS"),
        Frame::Snapshot => put(out, "SNAPSHOT"),
        Frame::Checksum => put(out, "CHECKSUM"),
        Frame::Ok(reply) => ok_reply(out, reply),
        Frame::Error(reply) => error_reply(out, reply),
        Frame::Join => put(out, "JOIN"),
        Frame::PredChange { ip: addr } => {
            put(out, "PRED_CHANGE");
            sp_ip(out, *addr);
        }
        Frame::Succ { ips } => {
            put(out, "SUCC");
            for addr in ips {
                sp_ip(out, *addr);
            }
        }
        Frame::Fix => put(out, "FIX"),
        Frame::Replic(record) => {
            put(out, "REPLIC");
            legacy_record(out, record);
        }
        Frame::Takeover(record) => {
            put(out, "TAKEOVER");
            legacy_record(out, record);
        }
        Frame::DropReplics { owner } => {
            put(out, "DROP_REPLICS");
            sp_ip(out, *owner);
        }
        Frame::Kill => put(out, "KILL"),
        Frame::Ring(ring) => ring.encode(out),
        Frame::Message {
            sender,
            payload_b64,
        } => {
            put(out, "MESSAGE");
            sp_str(out, sender);
            sp_str(out, payload_b64);
        }
        Frame::PubkeyReq { requester } => {
            put(out, "PUBKEY_REQ");
            sp_str(out, requester);
        }
        Frame::PubkeyRes { user, pubkey_b64 } => {
            put(out, "PUBKEY_RES");
            sp_str(out, user);
            sp_str(out, pubkey_b64);
        }
        Frame::Hello { user, features } => {
            put(out, "HELLO");
            sp_str(out, user);
            sp_str(out, features);
        }
        Frame::SecureMessage {
            sender,
            id,
            payload_b64,
            sig_b64,
        } => {
            put(out, "SMESSAGE");
            sp_str(out, sender);
            sp_num(out, *id);
            sp_str(out, payload_b64);
            sp_str(out, sig_b64);
        }
        Frame::Ack { from, id, sig_b64 } => {
            put(out, "ACK");
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

fn ok_reply(out: &mut Vec<u8>, reply: &OkReply<'_>) {
    put(out, "OK");
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
            ip(out, *addr);
            out.push(b':');
            num(out, u64::from(*port));
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

fn error_reply(out: &mut Vec<u8>, reply: &ErrorReply<'_>) {
    put(out, "ERROR");
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

// ---- primitives -----------------------------------------------------------------------------

fn put(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
}

fn sp_str(out: &mut Vec<u8>, text: &str) {
    out.push(b' ');
    put(out, text);
}

fn sp_num(out: &mut Vec<u8>, n: u64) {
    out.push(b' ');
    num(out, n);
}

fn sp_ip(out: &mut Vec<u8>, addr: Ipv4Addr) {
    out.push(b' ');
    ip(out, addr);
}

/// A canonical decimal (no sign, no leading zeros), without going through `fmt`.
fn num(out: &mut Vec<u8>, mut n: u64) {
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
    out.extend_from_slice(&buf[at..]);
}

/// A dotted quad.
fn ip(out: &mut Vec<u8>, addr: Ipv4Addr) {
    let [a, b, c, d] = addr.octets();
    num(out, u64::from(a));
    out.push(b'.');
    num(out, u64::from(b));
    out.push(b'.');
    num(out, u64::from(c));
    out.push(b'.');
    num(out, u64::from(d));
}
