#![allow(clippy::unwrap_used)]
//! `RING` frames: known answers and `decode(encode(x)) == x` for arbitrary frames.

use std::net::{Ipv4Addr, SocketAddrV4};

use flock_proto::ring::{self, FindError, FindOp, Outcome, Peer, RingFrame, RingVerb};
use flock_proto::{DecodeError, Frame, Record};
use proptest::prelude::*;

fn roundtrip(f: &RingFrame) -> RingFrame {
    let mut buf = Vec::new();
    f.encode(&mut buf);
    let text = std::str::from_utf8(&buf).unwrap();
    let rest = text.strip_prefix("RING ").unwrap();
    ring::decode(rest).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn peer() -> impl Strategy<Value = Peer> {
    (any::<u64>(), any::<u32>(), any::<u16>()).prop_map(|(id, ip, port)| Peer {
        id,
        addr: SocketAddrV4::new(Ipv4Addr::from(ip), port),
    })
}

fn record() -> impl Strategy<Value = Record> {
    (
        "[a-zA-Z0-9_ñΩ]{3,20}",
        any::<u32>(),
        1u16..,
        any::<u64>(),
        prop::option::of(("[A-Za-z0-9+/=]{1,40}", "[A-Za-z0-9+/=]{1,40}")),
    )
        .prop_map(|(user, ip, port, version, signed)| {
            let (pubkey_b64, sig_b64) = signed.unwrap_or_default();
            Record {
                user,
                ip: Ipv4Addr::from(ip),
                port,
                version,
                pubkey_b64,
                sig_b64,
            }
        })
}

fn frame() -> impl Strategy<Value = RingFrame> {
    let u = any::<u64>;
    let peers = || prop::collection::vec(peer(), 0..6);
    let records = || prop::collection::vec(record(), 0..4);
    let op = prop_oneof![
        Just(FindOp::Locate),
        "[a-z0-9_]{3,20}".prop_map(|user| FindOp::Resolve { user }),
        record().prop_map(|record| FindOp::Register { record }),
        "[a-z0-9_]{3,20}".prop_map(|user| FindOp::Held { user }),
    ];
    let err = prop_oneof![
        Just(FindError::NotFound),
        Just(FindError::InvalidPayload),
        Just(FindError::DifferentKey),
        Just(FindError::InvalidSignature),
        Just(FindError::StaleVersion),
    ];
    let outcome = prop_oneof![
        Just(Outcome::Node),
        Just(Outcome::Registered),
        record().prop_map(Outcome::Record),
        err.prop_map(Outcome::Error),
    ];
    prop_oneof![
        u().prop_map(|rid| RingFrame::Discover { rid }),
        (u(), u(), u()).prop_map(|(rid, lo, hi)| RingFrame::Here { rid, lo, hi }),
        (u(), u()).prop_map(|(rid, cookie)| RingFrame::Cookie { rid, cookie }),
        (u(), u()).prop_map(|(rid, cookie)| RingFrame::Join { rid, cookie }),
        (u(), u(), any::<u32>(), peer(), peers()).prop_map(|(rid, id, chunks, pred, succs)| {
            RingFrame::Welcome {
                rid,
                id,
                chunks,
                pred,
                succs,
            }
        }),
        u().prop_map(|rid| RingFrame::Refuse { rid }),
        (u(), any::<u32>(), any::<u32>(), records()).prop_map(|(rid, seq, total, records)| {
            RingFrame::Records {
                rid,
                seq,
                total,
                records,
            }
        }),
        (u(), any::<u32>()).prop_map(|(rid, seq)| RingFrame::Ack { rid, seq }),
        (u(), u()).prop_map(|(rid, cookie)| RingFrame::GetState { rid, cookie }),
        (u(), u(), prop::option::of(peer()), peers()).prop_map(|(rid, id, pred, succs)| {
            RingFrame::State {
                rid,
                id,
                pred,
                succs,
            }
        }),
        (u(), u(), u()).prop_map(|(rid, cookie, id)| RingFrame::Rectify { rid, cookie, id }),
        (u(), u()).prop_map(|(rid, cookie)| RingFrame::Ping { rid, cookie }),
        (u(), u(), u(), op).prop_map(|(rid, cookie, key, op)| RingFrame::Find {
            rid,
            cookie,
            key,
            op
        }),
        (u(), peer()).prop_map(|(rid, peer)| RingFrame::Refer { rid, peer }),
        (u(), u(), outcome).prop_map(|(rid, id, outcome)| RingFrame::Found { rid, id, outcome }),
        u().prop_map(|rid| RingFrame::Busy { rid }),
        (u(), u(), records()).prop_map(|(rid, cookie, records)| RingFrame::Replicate {
            rid,
            cookie,
            records
        }),
        (u(), u(), u(), u(), u(), u()).prop_map(|(rid, cookie, lo, hi, count, digest)| {
            RingFrame::Sync {
                rid,
                cookie,
                lo,
                hi,
                count,
                digest,
            }
        }),
        (u(), any::<bool>()).prop_map(|(rid, want)| RingFrame::Synced { rid, want }),
        (u(), u(), u(), u()).prop_map(|(rid, cookie, lo, hi)| RingFrame::Fetch {
            rid,
            cookie,
            lo,
            hi
        }),
        (u(), u()).prop_map(|(rid, cookie)| RingFrame::Fix { rid, cookie }),
        (u(), u(), any::<u32>(), prop::option::of(peer()), peers()).prop_map(
            |(rid, cookie, chunks, pred, succs)| RingFrame::Leave {
                rid,
                cookie,
                chunks,
                pred,
                succs
            }
        ),
        (u(), u(), u(), u()).prop_map(|(rid, cookie, lo, hi)| RingFrame::Drop {
            rid,
            cookie,
            lo,
            hi
        }),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        prop_assert_eq!(roundtrip(&f), f);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = ring::decode(&s);
    }

    #[test]
    fn encoded_len_is_exact(f in frame()) {
        let bytes = f.encode_to_vec();
        prop_assert_eq!(f.encoded_len(), bytes.len());
        prop_assert_eq!(f.to_string().into_bytes(), bytes.clone());
        // Appends, never overwrites.
        let mut out = b"xy".to_vec();
        f.encode(&mut out);
        prop_assert_eq!(&out[2..], &bytes[..]);
        // Through the frame codec: the same bytes, the same value.
        let frame = Frame::Ring(f.clone());
        prop_assert_eq!(frame.encode_to_vec(), bytes.clone());
        prop_assert_eq!(Frame::decode(&bytes), Ok(frame));
        // The verb is the second word, and it is the table's.
        let verb = std::str::from_utf8(&bytes).unwrap().split(' ').nth(1).unwrap();
        prop_assert_eq!(verb, f.verb());
        prop_assert_eq!(RingVerb::from_text(verb), Some(f.kind()));
    }

    #[test]
    fn record_encoded_len_sums_to_the_chunk(
        rid in any::<u64>(),
        records in prop::collection::vec(record(), 0..8),
    ) {
        let empty = RingFrame::Records { rid, seq: 0, total: 1, records: Vec::new() };
        let full = RingFrame::Records { rid, seq: 0, total: 1, records: records.clone() };
        let sum: usize = records.iter().map(ring::record_encoded_len).sum();
        // The announced count grows from "0" to the list's length.
        let count_digits = records.len().to_string().len() - 1;
        prop_assert_eq!(full.encoded_len(), empty.encoded_len() + count_digits + sum);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(text) = std::str::from_utf8(&data) {
            check_text(text)?;
        }
        let mut datagram = b"RING ".to_vec();
        datagram.extend_from_slice(&data);
        let _ = Frame::decode(&datagram);
    }

    #[test]
    fn frame_like_text_reencodes_to_itself_when_it_decodes(text in frame_like()) {
        check_text(&text)?;
    }

    #[test]
    fn decoded_text_reencodes_to_itself(f in frame()) {
        let mut a = Vec::new();
        f.encode(&mut a);
        let text = String::from_utf8(a.clone()).unwrap();
        let back = ring::decode(text.strip_prefix("RING ").unwrap()).unwrap();
        let mut b = Vec::new();
        back.encode(&mut b);
        prop_assert_eq!(a, b);
    }
}

/// Whatever decodes re-encodes to exactly the same text (the ring has no normalised forms).
fn check_text(rest: &str) -> Result<(), TestCaseError> {
    if let Ok(f) = ring::decode(rest) {
        let bytes = f.encode_to_vec();
        prop_assert_eq!(std::str::from_utf8(&bytes).unwrap(), format!("RING {rest}"));
    }
    Ok(())
}

/// Text that looks like a ring frame: a verb of the table and fields drawn from plausible
/// and implausible values, so decoding reaches deep into every rule.
fn frame_like() -> impl Strategy<Value = String> {
    let verb = prop::sample::select(RingVerb::ALL.to_vec());
    let field = prop_oneof![
        Just(String::new()),
        Just("-".to_owned()),
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("2".to_owned()),
        Just("00".to_owned()),
        Just("4097".to_owned()),
        prop::sample::select(vec![
            "LOCATE", "RESOLVE", "REGISTER", "NODE", "REC", "OK", "ERR", "404", "STALE"
        ])
        .prop_map(str::to_owned),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<u16>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|ip| Ipv4Addr::from(ip).to_string()),
        peer().prop_map(|p| format!("{}@{}", p.id, p.addr)),
        "[a-zA-Z0-9_+/=]{1,12}",
        "\\PC{0,8}",
    ];
    (verb, prop::collection::vec(field, 0..14)).prop_map(|(verb, fields)| {
        let mut text = verb.as_str().to_owned();
        for f in fields {
            text.push(' ');
            text.push_str(&f);
        }
        text
    })
}

#[test]
fn every_verb_in_the_table_is_dispatched() {
    for &verb in RingVerb::ALL {
        assert_eq!(verb.as_str().parse::<RingVerb>(), Ok(verb));
        // Without its rid every verb is recognised and fails on its fields.
        assert_eq!(
            ring::decode(verb.as_str()),
            Err(DecodeError::Fields {
                verb: verb.as_str()
            })
        );
    }
    let mut words: Vec<&str> = RingVerb::ALL.iter().map(|v| v.as_str()).collect();
    words.sort_unstable();
    words.dedup();
    assert_eq!(words.len(), RingVerb::ALL.len(), "a verb is listed twice");
}

#[test]
fn errors_name_the_verb_and_the_field() {
    let fields = |verb| Err(DecodeError::Fields { verb });
    let bad = |verb, field| Err(DecodeError::BadField { verb, field });
    for (text, expected) in [
        ("NOPE 1", Err(DecodeError::UnknownVerb)),
        ("", Err(DecodeError::UnknownVerb)),
        ("PING 1", fields("PING")),
        ("PING 1 2 3", fields("PING")),
        ("PING 1  2", fields("PING")),
        ("PING 01 2", bad("PING", "rid")),
        ("HERE 1 2 18446744073709551616", bad("HERE", "hi")),
        ("ACK 1 4294967296", bad("ACK", "seq")),
        ("STATE 1 3 - 2 5@10.0.0.1:12345", fields("STATE")),
        ("STATE 1 3 x 0", bad("STATE", "pred")),
        ("REFER 1 5@10.0.0.1:70000", bad("REFER", "peer")),
        ("WELCOME 1 2 3 - 0", bad("WELCOME", "pred")),
        ("FIND 1 2 3 JUMP", bad("FIND", "op")),
        ("FOUND 1 0 ERR 500", bad("FOUND", "code")),
        ("FOUND 1 0 ERR", fields("FOUND")),
        ("FOUND 1 0 MAYBE", bad("FOUND", "outcome")),
        ("SYNCED 1 2", bad("SYNCED", "want")),
        ("RECORDS 1 0 1 99999999 a", bad("RECORDS", "count")),
        (
            "REPLICATE 1 2 1 - 1.2.3.4 5 0 - -",
            bad("REPLICATE", "user"),
        ),
        ("REPLICATE 1 2 1 bob 1.2.3 5 0 - -", bad("REPLICATE", "ip")),
        (
            "REPLICATE 1 2 1 bob 1.2.3.4 65536 0 - -",
            bad("REPLICATE", "port"),
        ),
        (
            "REPLICATE 1 2 1 bob 1.2.3.4 5 -1 - -",
            bad("REPLICATE", "version"),
        ),
        ("REPLICATE 1 2 1 bob 1.2.3.4 5 0 -", fields("REPLICATE")),
    ] {
        assert_eq!(ring::decode(text), expected, "{text:?}");
    }
}

#[test]
fn known_answers() {
    let p = Peer {
        id: 5,
        addr: "10.0.0.1:12345".parse().unwrap(),
    };
    let cases: Vec<(RingFrame, &str)> = vec![
        (RingFrame::Discover { rid: 7 }, "RING DISCOVER 7"),
        (
            RingFrame::Here {
                rid: 7,
                lo: 0,
                hi: 9,
            },
            "RING HERE 7 0 9",
        ),
        (RingFrame::Join { rid: 1, cookie: 2 }, "RING JOIN 1 2"),
        (
            RingFrame::State {
                rid: 1,
                id: 3,
                pred: None,
                succs: vec![p],
            },
            "RING STATE 1 3 - 1 5@10.0.0.1:12345",
        ),
        (
            RingFrame::Find {
                rid: 1,
                cookie: 2,
                key: 3,
                op: FindOp::Resolve {
                    user: "alice".into(),
                },
            },
            "RING FIND 1 2 3 RESOLVE alice",
        ),
        (
            RingFrame::Found {
                rid: 1,
                id: 0,
                outcome: Outcome::Error(FindError::NotFound),
            },
            "RING FOUND 1 0 ERR 404",
        ),
        (
            RingFrame::Replicate {
                rid: 1,
                cookie: 2,
                records: vec![Record {
                    user: "bob".into(),
                    ip: Ipv4Addr::new(1, 2, 3, 4),
                    port: 5,
                    version: 0,
                    pubkey_b64: String::new(),
                    sig_b64: String::new(),
                }],
            },
            "RING REPLICATE 1 2 1 bob 1.2.3.4 5 0 - -",
        ),
        (RingFrame::Synced { rid: 4, want: true }, "RING SYNCED 4 1"),
    ];
    for (f, text) in cases {
        let mut buf = Vec::new();
        f.encode(&mut buf);
        assert_eq!(std::str::from_utf8(&buf).unwrap(), text);
        assert_eq!(
            ring::decode(text.strip_prefix("RING ").unwrap()).unwrap(),
            f
        );
    }
}

#[test]
fn rejects_malformed() {
    for bad in [
        "PING 1 2\n",
        "FIND 1 2 3 RESOLVE a\tb",
        "",
        "NOPE 1",
        "PING",
        "PING 1",
        "PING 1 2 3",
        "PING 01 2",
        "PING 1  2",
        "PING 1 2 ",
        "HERE 1 2 18446744073709551616",
        "STATE 1 3 - 2 5@10.0.0.1:12345",
        "STATE 1 3 x 0",
        "REFER 1 5@10.0.0.1:70000",
        "REFER 1 5@10.0.0.256:1",
        "FOUND 1 0 ERR 500",
        "SYNCED 1 2",
        "RECORDS 1 0 1 99999999 a",
        "REPLICATE 1 2 1 - 1.2.3.4 5 0 - -",
    ] {
        assert!(ring::decode(bad).is_err(), "{bad:?} decoded");
    }
}
