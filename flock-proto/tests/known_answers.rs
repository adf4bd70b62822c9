//! Known-answer tests: the exact texts of PROTOCOL-NOTES.md, decoded and re-encoded.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};

use flock_proto::limits::{MAX_DATAGRAM, PUBKEY_B64_LEN_RSA2048, SIG_B64_LEN};
use flock_proto::{
    AnswerTo, DecodeError, ErrorReply, Frame, LegacyRecord, OkReply, Record, Register,
    decode_discover_reply, decode_discover_server_reply, encode_discover_reply,
    encode_discover_server_reply,
};

/// Decodes `text`, checks it equals `frame`, and checks `frame` encodes to `text`.
#[track_caller]
fn known(text: &str, frame: Frame<'_>) {
    let decoded = Frame::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(decoded, frame, "decoding {text:?}");
    assert_eq!(
        String::from_utf8(frame.encode_to_vec()).expect("utf-8"),
        text,
        "encoding {frame:?}"
    );
    // The owned copy is the same value.
    assert_eq!(decoded.into_owned(), frame);
}

#[track_caller]
fn rejected(text: &str, err: DecodeError) {
    assert_eq!(Frame::decode(text.as_bytes()), Err(err), "{text:?}");
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);

fn key() -> String {
    // The length of a real RSA-2048 key; the alphabet is all that is checked.
    let mut k = "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K".repeat(17);
    k.truncate(PUBKEY_B64_LEN_RSA2048 - 2);
    k.push_str("==");
    k
}

fn sig() -> String {
    let mut s = "AbC+/9".repeat(60);
    s.truncate(SIG_B64_LEN - 1);
    s.push('=');
    s
}

#[test]
fn no_argument_frames() {
    known("DISCOVER", Frame::Discover);
    known("DISCOVER_SERVER", Frame::DiscoverServer { reply_to: None });
    known("PING", Frame::Ping);
    known("PONG", Frame::Pong);
    known("RANGE", Frame::Range);
    known("STATUS", Frame::Status);
    known("SNAPSHOT", Frame::Snapshot);
    known("CHECKSUM", Frame::Checksum);
    known("JOIN", Frame::Join);
    known("FIX", Frame::Fix);
    known("KILL", Frame::Kill);
    rejected("PING ", DecodeError::Fields { verb: "PING" });
    rejected("PING x", DecodeError::Fields { verb: "PING" });
    rejected("ping", DecodeError::UnknownVerb);
    rejected("PING\n", DecodeError::UnknownVerb);
}

#[test]
fn discover_server_proxied() {
    known(
        "DISCOVER_SERVER:10.1.2.3:54321",
        Frame::DiscoverServer {
            reply_to: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 54321)),
        },
    );
    let bad = DecodeError::BadField {
        verb: "DISCOVER_SERVER",
        field: "reply_to",
    };
    rejected("DISCOVER_SERVER:10.1.2.3:0", bad.clone());
    rejected("DISCOVER_SERVER:10.1.2.3", bad.clone());
    rejected("DISCOVER_SERVER:10.1.2.3:65536", bad.clone());
    rejected("DISCOVER_SERVER:", bad);
    rejected(
        "DISCOVER_SERVER:10.1.2.3:5 x",
        DecodeError::Fields {
            verb: "DISCOVER_SERVER",
        },
    );
}

#[test]
fn discovery_replies() {
    assert_eq!(decode_discover_reply(b"node1"), Ok("node1"));
    assert_eq!(decode_discover_reply(b"my server 2"), Ok("my server 2"));
    assert_eq!(decode_discover_reply(b""), Err(DecodeError::Empty));
    assert_eq!(decode_discover_reply(b"\xff"), Err(DecodeError::NotUtf8));
    assert_eq!(
        decode_discover_server_reply(b"10.0.0.5"),
        Ok(Ipv4Addr::new(10, 0, 0, 5))
    );
    assert!(decode_discover_server_reply(b"10.0.0.5 ").is_err());
    assert!(decode_discover_server_reply(b"node1").is_err());
    let mut out = Vec::new();
    encode_discover_reply("node1", &mut out);
    assert_eq!(out, b"node1");
    out.clear();
    encode_discover_server_reply(Ipv4Addr::new(10, 0, 0, 5), &mut out);
    assert_eq!(out, b"10.0.0.5");
}

#[test]
fn register_signed() {
    let (k, s) = (key(), sig());
    let text = format!("REGISTER alice 192.168.1.20 40001 1732550400123456789 {k} {s}");
    let reg = Register {
        user: b("alice"),
        ip: IP,
        port: 40001,
        version: 1_732_550_400_123_456_789,
        pubkey_b64: b(&k),
        sig_b64: b(&s),
    };
    known(&text, Frame::Register(reg.clone()));
    assert_eq!(
        reg.signed_text(),
        format!("alice|192.168.1.20|40001|1732550400123456789|{k}")
    );
    assert_eq!(reg.validate(), Ok(()));

    // Record round trip.
    let record = reg.to_record();
    assert!(record.is_signed());
    assert_eq!(Register::from(&record), reg);
    assert_eq!(Record::from(reg.clone()), record);

    // Zero-copy: the fields point into the datagram.
    let frame = Frame::decode(text.as_bytes()).expect("decodes");
    let Frame::Register(r) = frame else {
        panic!("not a register")
    };
    assert!(matches!(r.user, Cow::Borrowed(_)));
    assert!(matches!(r.pubkey_b64, Cow::Borrowed(_)));
    assert!(std::ptr::eq(
        r.sig_b64.as_ptr(),
        text.as_bytes()[text.len() - s.len()..].as_ptr()
    ));
}

#[test]
fn register_legacy_and_forwarded() {
    known(
        "REGISTER bob 10.0.0.2 5000",
        Frame::RegisterLegacy {
            user: b("bob"),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            port: 5000,
        },
    );
    let reg = Register {
        user: b("carol"),
        ip: IP,
        port: 1,
        version: i64::MAX as u64,
        pubkey_b64: b("QUJD"),
        sig_b64: b("REVG"),
    };
    known(
        "REGISTER 10.9.8.7 12345 carol 192.168.1.20 1 9223372036854775807 QUJD REVG",
        Frame::ForwardRegister {
            answer: AnswerTo::Addr(SocketAddrV4::new(Ipv4Addr::new(10, 9, 8, 7), 12345)),
            register: reg.clone(),
        },
    );
    known(
        "REGISTER . 0 carol 192.168.1.20 1 9223372036854775807 QUJD REVG",
        reg.clone().forward(AnswerTo::Nobody),
    );
    // `. .` is accepted too and normalised to `. 0`.
    let dotted = "REGISTER . . carol 192.168.1.20 1 9223372036854775807 QUJD REVG";
    let frame = Frame::decode(dotted.as_bytes()).expect("decodes");
    assert_eq!(frame, reg.forward(AnswerTo::Nobody));
    assert_eq!(
        frame.encode_to_vec(),
        b"REGISTER . 0 carol 192.168.1.20 1 9223372036854775807 QUJD REVG"
    );
}

#[test]
fn register_field_rules() {
    let bad = |field| DecodeError::BadField {
        verb: "REGISTER",
        field,
    };
    let ok = "REGISTER alice 10.0.0.1 5000 7 QUJD REVG";
    assert!(Frame::decode(ok.as_bytes()).is_ok());
    for (text, field) in [
        ("REGISTER al 10.0.0.1 5000 7 QUJD REVG", "user"),
        ("REGISTER al-ice 10.0.0.1 5000 7 QUJD REVG", "user"),
        (
            "REGISTER abcdefghijklmnopqrstu 10.0.0.1 5000 7 QUJD REVG",
            "user",
        ),
        ("REGISTER alice 10.0.0 5000 7 QUJD REVG", "ip"),
        ("REGISTER alice 10.0.0.256 5000 7 QUJD REVG", "ip"),
        ("REGISTER alice 10.0.0.01 5000 7 QUJD REVG", "ip"),
        ("REGISTER alice 10.0.0.1 0 7 QUJD REVG", "port"),
        ("REGISTER alice 10.0.0.1 65536 7 QUJD REVG", "port"),
        ("REGISTER alice 10.0.0.1 05000 7 QUJD REVG", "port"),
        ("REGISTER alice 10.0.0.1 +5000 7 QUJD REVG", "port"),
        ("REGISTER alice 10.0.0.1 5000 0 QUJD REVG", "version"),
        ("REGISTER alice 10.0.0.1 5000 -1 QUJD REVG", "version"),
        (
            "REGISTER alice 10.0.0.1 5000 9223372036854775808 QUJD REVG",
            "version",
        ),
        ("REGISTER alice 10.0.0.1 5000 7 QU*D REVG", "pubkey_b64"),
        ("REGISTER alice 10.0.0.1 5000 7 QUJD RE-G", "sig_b64"),
        ("REGISTER al 10.0.0.1 5000", "user"),
        ("REGISTER alice 10.0.0.1 0", "port"),
        (
            "REGISTER 10.0.0.1 0 alice 10.0.0.1 5000 7 QUJD REVG",
            "ans_port",
        ),
        ("REGISTER . 5 alice 10.0.0.1 5000 7 QUJD REVG", "ans_port"),
        ("REGISTER x 5 alice 10.0.0.1 5000 7 QUJD REVG", "ans_ip"),
    ] {
        let err = Frame::decode(text.as_bytes()).expect_err(text);
        assert_eq!(err, bad(field), "{text}");
        assert_eq!(err.verb(), Some("REGISTER"));
    }
    for text in [
        "REGISTER",
        "REGISTER alice",
        "REGISTER alice 10.0.0.1 5000 7",
        "REGISTER alice 10.0.0.1 5000 7 QUJD REVG x y z",
        "REGISTER alice  10.0.0.1 5000 7 QUJD REVG",
        "REGISTER alice 10.0.0.1 5000 7 QUJD REVG ",
    ] {
        rejected(text, DecodeError::Fields { verb: "REGISTER" });
    }
}

#[test]
fn resolve() {
    known("RESOLVE alice", Frame::Resolve { user: b("alice") });
    // Any token resolves (and will be answered 404).
    known("RESOLVE a-b", Frame::Resolve { user: b("a-b") });
    known(
        "RESOLVE 10.0.0.9 40000 alice",
        Frame::ForwardResolve {
            answer: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 40000),
            user: b("alice"),
        },
    );
    rejected("RESOLVE", DecodeError::Fields { verb: "RESOLVE" });
    rejected("RESOLVE a b", DecodeError::Fields { verb: "RESOLVE" });
    rejected(
        "RESOLVE . 0 alice",
        DecodeError::BadField {
            verb: "RESOLVE",
            field: "ans_ip",
        },
    );
    rejected(
        "RESOLVE al\tice",
        DecodeError::BadField {
            verb: "RESOLVE",
            field: "user",
        },
    );
}

/// The lookup extension: a verb of its own, so it cannot be confused with the original's
/// `RESOLVE <user>` or its forwarded `RESOLVE <ans_ip> <ans_port> <user>`.
#[test]
fn lookup_extension() {
    known(
        "LOOKUP alice 18446744073709551615",
        Frame::Lookup {
            user: b("alice"),
            rid: u64::MAX,
        },
    );
    let (k, s) = (key(), sig());
    known(
        &format!("FOUND 7 alice 192.168.1.20 40001 42 {k} {s}"),
        Frame::Found {
            rid: 7,
            record: Register {
                user: b("alice"),
                ip: IP,
                port: 40001,
                version: 42,
                pubkey_b64: b(&k),
                sig_b64: b(&s),
            },
        },
    );
    known("NOTFOUND 0", Frame::NotFound { rid: 0 });
    rejected("LOOKUP alice", DecodeError::Fields { verb: "LOOKUP" });
    rejected(
        "LOOKUP alice 01",
        DecodeError::BadField {
            verb: "LOOKUP",
            field: "rid",
        },
    );
    rejected("NOTFOUND", DecodeError::Fields { verb: "NOTFOUND" });
    rejected(
        &format!("FOUND x alice 192.168.1.20 40001 42 {k} {s}"),
        DecodeError::BadField {
            verb: "FOUND",
            field: "rid",
        },
    );
}

#[test]
fn ok_replies() {
    known("OK", Frame::Ok(OkReply::Bare));
    known(
        "OK 0 499999999999999999",
        Frame::Ok(OkReply::Range {
            lo: 0,
            hi: 499_999_999_999_999_999,
        }),
    );
    known(
        "OK User 'alice' in (192.168.1.20:40001) successfully registered",
        Frame::registered("alice", IP, 40001),
    );
    known(
        "OK User 'mañana' in (10.0.0.1:1) successfully registered",
        Frame::registered("mañana", Ipv4Addr::new(10, 0, 0, 1), 1),
    );
    let k = key();
    known(
        &format!("OK 192.168.1.20 40001 {k} 1732550400123456789"),
        Frame::Ok(OkReply::Resolved {
            ip: IP,
            port: 40001,
            pubkey_b64: b(&k),
            version: 1_732_550_400_123_456_789,
        }),
    );
    known(
        "OK 10.0.0.2 5000",
        Frame::Ok(OkReply::ResolvedLegacy {
            ip: Ipv4Addr::new(10, 0, 0, 2),
            port: 5000,
        }),
    );
    let unsigned = Record {
        user: "bob".into(),
        ip: Ipv4Addr::new(10, 0, 0, 2),
        port: 5000,
        version: 0,
        pubkey_b64: String::new(),
        sig_b64: String::new(),
    };
    assert_eq!(
        Frame::resolved(&unsigned).encode_to_vec(),
        b"OK 10.0.0.2 5000"
    );
    known(
        "OK 500000000000000000 1000000000000000002 10.0.0.1 _",
        Frame::Ok(OkReply::Joined {
            lo: 500_000_000_000_000_000,
            hi: 1_000_000_000_000_000_002,
            pred: Ipv4Addr::new(10, 0, 0, 1),
            succ: None,
        }),
    );
    known(
        "OK 5 9 10.0.0.1 10.0.0.3",
        Frame::Ok(OkReply::Joined {
            lo: 5,
            hi: 9,
            pred: Ipv4Addr::new(10, 0, 0, 1),
            succ: Some(Ipv4Addr::new(10, 0, 0, 3)),
        }),
    );
    known(
        r#"OK {"checksum":"ab12","records":3}"#,
        Frame::Ok(OkReply::Json(b(r#"{"checksum":"ab12","records":3}"#))),
    );
    known(
        r#"OK {"name":"node 1"}"#,
        Frame::Ok(OkReply::Json(b(r#"{"name":"node 1"}"#))),
    );
    rejected("OK ", DecodeError::Fields { verb: "OK" });
    rejected("OK 1", DecodeError::Fields { verb: "OK" });
    rejected("OK 1 2 3", DecodeError::Fields { verb: "OK" });
    rejected(
        "OK User 'alice' in (192.168.1.20:40001) registered",
        DecodeError::BadField {
            verb: "OK",
            field: "registered",
        },
    );
    rejected(
        "OK 1 x",
        DecodeError::BadField {
            verb: "OK",
            field: "hi",
        },
    );
}

#[test]
fn error_replies_exact_texts() {
    for (text, reply) in [
        (
            "ERROR Invalid registration payload",
            ErrorReply::InvalidPayload,
        ),
        (
            "ERROR Username belongs to a different identity key",
            ErrorReply::DifferentKey,
        ),
        (
            "ERROR Invalid registration signature",
            ErrorReply::InvalidSignature,
        ),
        ("ERROR Stale registration version", ErrorReply::StaleVersion),
        ("ERROR 404 User not found", ErrorReply::NotFound),
        ("ERROR rate limited", ErrorReply::Other(b("rate limited"))),
        ("ERROR", ErrorReply::Other(b(""))),
    ] {
        known(text, Frame::Error(reply));
    }
    assert_eq!(
        Frame::not_found().encode_to_vec(),
        b"ERROR 404 User not found"
    );
    assert_eq!(Frame::error("404 User not found"), Frame::not_found());
    assert_eq!(
        ErrorReply::from_text(b("Stale registration version")),
        ErrorReply::StaleVersion
    );
    rejected("ERROR ", DecodeError::Fields { verb: "ERROR" });
}

#[test]
fn server_to_server() {
    known(
        "PRED_CHANGE 10.0.0.4",
        Frame::PredChange {
            ip: Ipv4Addr::new(10, 0, 0, 4),
        },
    );
    known(
        "SUCC 10.0.0.2 10.0.0.3 10.0.0.4",
        Frame::Succ {
            ips: vec![
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 0, 3),
                Ipv4Addr::new(10, 0, 0, 4),
            ],
        },
    );
    known("SUCC", Frame::Succ { ips: vec![] });
    known(
        "DROP_REPLICS 10.0.0.2",
        Frame::DropReplics {
            owner: Ipv4Addr::new(10, 0, 0, 2),
        },
    );
    known(
        "REPLIC alice 10.0.0.7 4000",
        Frame::Replic(LegacyRecord {
            user: b("alice"),
            ip: Ipv4Addr::new(10, 0, 0, 7),
            port: 4000,
            version: None,
            pubkey_b64: None,
        }),
    );
    let record = Record {
        user: "alice".into(),
        ip: Ipv4Addr::new(10, 0, 0, 7),
        port: 4000,
        version: 17,
        pubkey_b64: "QUJD".into(),
        sig_b64: "REVG".into(),
    };
    known(
        "TAKEOVER alice 10.0.0.7 4000 17 QUJD",
        Frame::Takeover(LegacyRecord::from(&record)),
    );
    known(
        "REPLIC alice 10.0.0.7 4000 17 QUJD",
        Frame::Replic(LegacyRecord::from(&record)),
    );
    rejected(
        "REPLIC alice 10.0.0.7 4000 17",
        DecodeError::Fields { verb: "REPLIC" },
    );
    rejected(
        "SUCC 10.0.0.2 x",
        DecodeError::BadField {
            verb: "SUCC",
            field: "ip",
        },
    );
    rejected("SUCC 10.0.0.2 ", DecodeError::Fields { verb: "SUCC" });
}

#[test]
fn client_to_client() {
    known(
        "MESSAGE alice AQBhGtUduyan8cOU+/w==",
        Frame::Message {
            sender: b("alice"),
            payload_b64: b("AQBhGtUduyan8cOU+/w=="),
        },
    );
    known(
        "PUBKEY_REQ alice",
        Frame::PubkeyReq {
            requester: b("alice"),
        },
    );
    known(
        "PUBKEY_RES bob QUJD",
        Frame::PubkeyRes {
            user: b("bob"),
            pubkey_b64: b("QUJD"),
        },
    );
    known(
        "HELLO bob ack1,foo",
        Frame::Hello {
            user: b("bob"),
            features: b("ack1,foo"),
        },
    );
    known(
        "SMESSAGE alice 18446744073709551615 QUJD REVG",
        Frame::SecureMessage {
            sender: b("alice"),
            id: u64::MAX,
            payload_b64: b("QUJD"),
            sig_b64: b("REVG"),
        },
    );
    known(
        "ACK bob 0 REVG",
        Frame::Ack {
            from: b("bob"),
            id: 0,
            sig_b64: b("REVG"),
        },
    );
    rejected(
        "MESSAGE alice hello world",
        DecodeError::Fields { verb: "MESSAGE" },
    );
    rejected(
        "MESSAGE alice héllo",
        DecodeError::BadField {
            verb: "MESSAGE",
            field: "payload_b64",
        },
    );
    rejected(
        "SMESSAGE alice 18446744073709551616 QUJD REVG",
        DecodeError::BadField {
            verb: "SMESSAGE",
            field: "id",
        },
    );
}

#[test]
fn envelope_errors() {
    rejected("", DecodeError::Empty);
    rejected(" PING", DecodeError::UnknownVerb);
    rejected("HELO x", DecodeError::UnknownVerb);
    assert_eq!(Frame::decode(b"PING\xff"), Err(DecodeError::NotUtf8));
    let long = vec![b'A'; MAX_DATAGRAM + 1];
    assert_eq!(
        Frame::decode(&long),
        Err(DecodeError::TooLong(MAX_DATAGRAM + 1))
    );
    // The largest datagram is accepted.
    let mut big = b"MESSAGE alice ".to_vec();
    big.resize(MAX_DATAGRAM, b'A');
    assert!(matches!(Frame::decode(&big), Ok(Frame::Message { .. })));
    // Too-long is checked before UTF-8.
    let mut bad = vec![0xff; MAX_DATAGRAM + 1];
    bad[0] = b'P';
    assert_eq!(
        Frame::decode(&bad),
        Err(DecodeError::TooLong(MAX_DATAGRAM + 1))
    );
}

#[test]
fn ring_frames_go_to_the_ring_codec() {
    // Whatever the ring codec says about the text after `RING `, the frame codec says too.
    for rest in ["", "NOP", "PING 1", "garbage here"] {
        let text = format!("RING {rest}");
        assert_eq!(
            Frame::decode(text.as_bytes()),
            flock_proto::ring::decode(rest).map(Frame::Ring),
            "{text:?}"
        );
    }
    rejected("RING", DecodeError::Fields { verb: "RING" });
}

#[test]
fn verbs() {
    assert_eq!(Frame::Discover.verb(), "DISCOVER");
    assert_eq!(Frame::not_found().verb(), "ERROR");
    assert_eq!(Frame::range_reply(1, 2).verb(), "OK");
    assert_eq!(Frame::range_reply(1, 2).encode_to_vec(), b"OK 1 2");
}

#[test]
fn register_sizes_against_the_original_buffers() {
    use flock_proto::limits::ORIGINAL_SERVER_RECV;
    // The longest ASCII signed REGISTER with an RSA-2048 key fits the original server's
    // 1024-byte buffer; its forwarded form does not (as the notes say).
    let reg = Register {
        user: b("abcdefghijklmnopqrst"),
        ip: Ipv4Addr::new(255, 255, 255, 255),
        port: 65535,
        version: i64::MAX as u64,
        pubkey_b64: Cow::Owned(key()),
        sig_b64: Cow::Owned(sig()),
    };
    let direct = Frame::Register(reg.clone()).encode_to_vec();
    assert_eq!(direct.len(), 1021);
    assert!(direct.len() <= ORIGINAL_SERVER_RECV);
    let forwarded = reg
        .forward(AnswerTo::Addr(SocketAddrV4::new(
            Ipv4Addr::new(255, 255, 255, 255),
            65535,
        )))
        .encode_to_vec();
    assert!(forwarded.len() > ORIGINAL_SERVER_RECV);
    assert!(Frame::decode(&forwarded).is_ok());
}
