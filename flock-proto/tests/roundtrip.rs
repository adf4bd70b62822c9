//! Property tests: `decode(encode(x)) == x` for every frame variant built from valid
//! values, and arbitrary bytes never panic and re-encode to themselves once decoded.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4};

use flock_proto::validate::validate_username;
use flock_proto::{AnswerTo, ErrorReply, Frame, LegacyRecord, OkReply, Register, Verb, ring_hash};
use proptest::prelude::*;

// ---- strategies for valid field values ----------------------------------------------------

/// A username obeying the original's rules: 3-20 Unicode letters, digits or `_`.
fn username() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9_]{3,20}", "[\\p{L}\\p{N}_]{3,20}",]
}

/// Any token: no whitespace, no control characters (what non-REGISTER name fields hold).
fn token() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9_-]{1,12}", "[^\\s\\p{Cc}]{1,16}"]
}

/// Standard base64 text, short or RSA-2048-sized.
fn b64() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9+/]{1,40}={0,2}",
        "[A-Za-z0-9+/]{602}==",
        "[A-Za-z0-9+/]{343}=",
    ]
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn port() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn version() -> impl Strategy<Value = u64> {
    prop_oneof![1..=i64::MAX as u64, Just(1u64), Just(i64::MAX as u64)]
}

fn sock() -> impl Strategy<Value = SocketAddrV4> {
    (ip(), port()).prop_map(|(ip, port)| SocketAddrV4::new(ip, port))
}

fn register() -> impl Strategy<Value = Register<'static>> {
    (username(), ip(), port(), version(), b64(), b64()).prop_map(
        |(user, ip, port, version, key, sig)| Register {
            user: Cow::Owned(user),
            ip,
            port,
            version,
            pubkey_b64: Cow::Owned(key),
            sig_b64: Cow::Owned(sig),
        },
    )
}

fn legacy_record() -> impl Strategy<Value = LegacyRecord<'static>> {
    (
        token(),
        ip(),
        port(),
        proptest::option::of((any::<u64>(), b64())),
    )
        .prop_map(|(user, ip, port, extra)| {
            let (version, key) = extra.map_or((None, None), |(v, k)| (Some(v), Some(k)));
            LegacyRecord {
                user: Cow::Owned(user),
                ip,
                port,
                version,
                pubkey_b64: key.map(Cow::Owned),
            }
        })
}

fn ok_reply() -> impl Strategy<Value = OkReply<'static>> {
    prop_oneof![
        Just(OkReply::Bare),
        (any::<u64>(), any::<u64>()).prop_map(|(lo, hi)| OkReply::Range { lo, hi }),
        (username(), ip(), port()).prop_map(|(user, ip, port)| OkReply::Registered {
            user: Cow::Owned(user),
            ip,
            port
        }),
        (ip(), port(), b64(), any::<u64>()).prop_map(|(ip, port, key, version)| {
            OkReply::Resolved {
                ip,
                port,
                pubkey_b64: Cow::Owned(key),
                version,
            }
        }),
        (ip(), port()).prop_map(|(ip, port)| OkReply::ResolvedLegacy { ip, port }),
        (any::<u64>(), any::<u64>(), ip(), proptest::option::of(ip()))
            .prop_map(|(lo, hi, pred, succ)| OkReply::Joined { lo, hi, pred, succ }),
        "\\{[^\\x00]{0,40}".prop_map(|json| OkReply::Json(Cow::Owned(json))),
    ]
}

fn error_reply() -> impl Strategy<Value = ErrorReply<'static>> {
    prop_oneof![
        Just(ErrorReply::InvalidPayload),
        Just(ErrorReply::DifferentKey),
        Just(ErrorReply::InvalidSignature),
        Just(ErrorReply::StaleVersion),
        Just(ErrorReply::NotFound),
        // Any text at all, normalised as the docs require.
        any::<String>().prop_map(|t| ErrorReply::from_text(Cow::Owned(t))),
    ]
}

/// Every frame variant except `Ring` (the ring codec has its own tests; its dispatch is
/// checked below).
fn frame() -> impl Strategy<Value = Frame<'static>> {
    let simple = prop_oneof![
        Just(Frame::Discover),
        proptest::option::of(sock()).prop_map(|reply_to| Frame::DiscoverServer { reply_to }),
        Just(Frame::Ping),
        Just(Frame::Pong),
        Just(Frame::Range),
        Just(Frame::Status),
        Just(Frame::Snapshot),
        Just(Frame::Checksum),
        Just(Frame::Join),
        Just(Frame::Fix),
        Just(Frame::Kill),
    ];
    let client_server = prop_oneof![
        register().prop_map(Frame::Register),
        (username(), ip(), port()).prop_map(|(user, ip, port)| Frame::RegisterLegacy {
            user: Cow::Owned(user),
            ip,
            port
        }),
        token().prop_map(|user| Frame::Resolve {
            user: Cow::Owned(user)
        }),
        (
            prop_oneof![Just(AnswerTo::Nobody), sock().prop_map(AnswerTo::Addr)],
            register()
        )
            .prop_map(|(answer, register)| Frame::ForwardRegister { answer, register }),
        (sock(), token()).prop_map(|(answer, user)| Frame::ForwardResolve {
            answer,
            user: Cow::Owned(user)
        }),
        (username(), any::<u64>()).prop_map(|(user, rid)| Frame::Lookup {
            user: Cow::Owned(user),
            rid
        }),
        (any::<u64>(), register()).prop_map(|(rid, record)| Frame::Found { rid, record }),
        any::<u64>().prop_map(|rid| Frame::NotFound { rid }),
        ok_reply().prop_map(Frame::Ok),
        error_reply().prop_map(Frame::Error),
    ];
    let server_server = prop_oneof![
        ip().prop_map(|ip| Frame::PredChange { ip }),
        proptest::collection::vec(ip(), 0..6).prop_map(|ips| Frame::Succ { ips }),
        legacy_record().prop_map(Frame::Replic),
        legacy_record().prop_map(Frame::Takeover),
        ip().prop_map(|owner| Frame::DropReplics { owner }),
    ];
    let client_client = prop_oneof![
        (token(), b64()).prop_map(|(s, p)| Frame::Message {
            sender: Cow::Owned(s),
            payload_b64: Cow::Owned(p)
        }),
        token().prop_map(|r| Frame::PubkeyReq {
            requester: Cow::Owned(r)
        }),
        (token(), b64()).prop_map(|(u, k)| Frame::PubkeyRes {
            user: Cow::Owned(u),
            pubkey_b64: Cow::Owned(k)
        }),
        (token(), token()).prop_map(|(u, f)| Frame::Hello {
            user: Cow::Owned(u),
            features: Cow::Owned(f)
        }),
        (token(), any::<u64>(), b64(), b64()).prop_map(|(s, id, p, sig)| {
            Frame::SecureMessage {
                sender: Cow::Owned(s),
                id,
                payload_b64: Cow::Owned(p),
                sig_b64: Cow::Owned(sig),
            }
        }),
        (token(), any::<u64>(), b64()).prop_map(|(from, id, sig)| Frame::Ack {
            from: Cow::Owned(from),
            id,
            sig_b64: Cow::Owned(sig)
        }),
    ];
    prop_oneof![simple, client_server, server_server, client_client]
}

/// Text that looks like a frame: a known verb and fields drawn from a pool of plausible
/// and implausible values, so decoding reaches deep into every rule.
fn frame_like() -> impl Strategy<Value = String> {
    // Every verb of the table, and the proxied discovery form.
    let mut verbs: Vec<String> = Verb::ALL.iter().map(|v| v.as_str().to_owned()).collect();
    verbs.push("DISCOVER_SERVER:1.2.3.4:5".to_owned());
    let verbs = prop::sample::select(verbs);
    let field = prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("_".to_owned()),
        Just("0".to_owned()),
        Just("00".to_owned()),
        Just("User".to_owned()),
        Just("'alice'".to_owned()),
        Just("{\"a\":1}".to_owned()),
        ip().prop_map(|ip| ip.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<u16>().prop_map(|n| n.to_string()),
        username(),
        token(),
        b64(),
        "\\PC{0,8}",
    ];
    (verbs, proptest::collection::vec(field, 0..10)).prop_map(|(verb, fields)| {
        let mut text = verb;
        for f in fields {
            text.push(' ');
            text.push_str(&f);
        }
        text
    })
}

/// Checks what must hold for any input: no panic, and a decoded frame re-encodes to the
/// same bytes (or, for the one normalised form, to bytes that decode to the same frame).
fn check_bytes(data: &[u8]) -> Result<(), TestCaseError> {
    let Ok(frame) = Frame::decode(data) else {
        return Ok(());
    };
    let encoded = frame.encode_to_vec();
    let again = Frame::decode(&encoded);
    prop_assert_eq!(again.as_ref(), Ok(&frame));
    let normalised = matches!(
        frame,
        Frame::ForwardRegister {
            answer: AnswerTo::Nobody,
            ..
        }
    );
    if !normalised {
        prop_assert_eq!(&encoded[..], data);
    }
    prop_assert_eq!(frame.clone().into_owned(), frame);
    Ok(())
}

proptest! {
    #[test]
    fn every_frame_round_trips(frame in frame()) {
        let bytes = frame.encode_to_vec();
        // The encoder writes the verb `Frame::verb` names (from the same table).
        prop_assert!(bytes.starts_with(frame.verb().as_bytes()));
        let decoded = Frame::decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&frame), "{:?}", String::from_utf8_lossy(&bytes));
        // Decoding borrows; the owned copy is equal and the bytes are stable.
        let owned = decoded.expect("checked").into_owned();
        prop_assert_eq!(owned.encode_to_vec(), bytes);
    }

    #[test]
    fn registrations_are_valid_and_signed_text_is_canonical(r in register()) {
        prop_assert_eq!(r.validate(), Ok(()));
        let text = r.signed_text();
        let expected = format!("{}|{}|{}|{}|{}", r.user, r.ip, r.port, r.version, r.pubkey_b64);
        prop_assert_eq!(&text, &expected);
        let record = r.to_record();
        prop_assert_eq!(Register::from(&record), r);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_bytes(&data)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        check_bytes(text.as_bytes())?;
    }

    #[test]
    fn frame_like_text_round_trips_when_it_decodes(text in frame_like()) {
        check_bytes(text.as_bytes())?;
    }

    #[test]
    fn ring_dispatch(rest in "\\PC{0,40}") {
        let text = format!("RING {rest}");
        let decoded = Frame::decode(text.as_bytes());
        prop_assert_eq!(&decoded, &flock_proto::ring::decode(&rest).map(Frame::Ring));
        check_bytes(text.as_bytes())?;
    }

    #[test]
    fn ring_bytes_never_panic(rest in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut data = b"RING ".to_vec();
        data.extend_from_slice(&rest);
        check_bytes(&data)?;
    }

    #[test]
    fn usernames_from_the_strategy_validate(name in username()) {
        prop_assert_eq!(validate_username(&name), Ok(()));
        // The hash is a function of the code points only.
        prop_assert!(ring_hash(&name) < flock_proto::HASH_MOD);
    }
}

/// The verb table drives dispatch: every verb in it is recognised (an error, if any, names
/// the verb rather than `UnknownVerb`), spelled back by `Frame::verb`.
#[test]
fn every_verb_in_the_table_is_dispatched() {
    for &verb in Verb::ALL {
        assert_eq!(verb.as_str().parse::<Verb>(), Ok(verb));
        assert_eq!(Verb::from_text(verb.as_str()), Some(verb));
        match Frame::decode(verb.as_str().as_bytes()) {
            Ok(frame) => assert_eq!(frame.verb(), verb.as_str()),
            Err(e) => assert_eq!(e.verb(), Some(verb.as_str()), "{verb}: {e}"),
        }
    }
    let mut words: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
    words.sort_unstable();
    words.dedup();
    assert_eq!(words.len(), Verb::ALL.len(), "a verb is listed twice");
    assert_eq!(Verb::from_text("discover"), None);
}
