#![allow(clippy::unwrap_used)]
//! `RING` frames: known answers and `decode(encode(x)) == x` for arbitrary frames.

use std::net::{Ipv4Addr, SocketAddrV4};

use flock_proto::Record;
use flock_proto::ring::{self, FindError, FindOp, Outcome, Peer, RingFrame};
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
