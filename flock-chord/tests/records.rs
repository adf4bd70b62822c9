//! Record rules on every path, with the fake verifier and with a real RSA key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flock_chord::sim::{NetConfig, Sim};
use flock_chord::{Action, Config, FakeVerifier, Node, RecordVerifier, RsaVerifier};
use flock_proto::ring::RingFrame;
use flock_proto::{ErrorReply, Frame, OkReply, Record, Register};

fn reg(r: &Record) -> Frame<'static> {
    Frame::Register(Register {
        user: r.user.clone().into(),
        ip: r.ip,
        port: r.port,
        version: r.version,
        pubkey_b64: r.pubkey_b64.clone().into(),
        sig_b64: r.sig_b64.clone().into(),
    })
}

fn sends(node: &mut Node) -> Vec<(SocketAddrV4, Frame<'static>)> {
    let mut out = Vec::new();
    while let Some(a) = node.poll_action() {
        if let Action::Send { to, frame } = a {
            out.push((to, frame));
        }
    }
    out
}

fn ask(node: &mut Node, client: SocketAddrV4, f: Frame<'static>) -> Frame<'static> {
    node.handle_datagram(Duration::from_millis(1), client, f);
    let out = sends(node);
    let mine: Vec<_> = out.into_iter().filter(|(to, _)| *to == client).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    mine.into_iter().next().unwrap().1
}

fn founder(verifier: Box<dyn RecordVerifier + Send>) -> Node {
    let me: SocketAddrV4 = "10.0.0.1:12345".parse().unwrap();
    let mut n = Node::new(Config::default(), me, 7, Duration::ZERO, verifier);
    sends(&mut n);
    n
}

fn fake(user: &str, key: &str, version: u64, port: u16) -> Record {
    let mut r = Record {
        user: user.into(),
        ip: Ipv4Addr::new(10, 1, 2, 3),
        port,
        version,
        pubkey_b64: key.into(),
        sig_b64: String::new(),
    };
    r.sig_b64 = FakeVerifier::sign(&r);
    r
}

#[test]
fn owner_rules_with_exact_errors() {
    let mut n = founder(Box::new(FakeVerifier));
    let c: SocketAddrV4 = "172.16.0.1:5000".parse().unwrap();
    let ok = |f: &Frame| matches!(f, Frame::Ok(OkReply::Registered { .. }));
    assert!(ok(&ask(&mut n, c, reg(&fake("alice", "K1", 10, 5000)))));
    // Equal version: idempotent.
    assert!(ok(&ask(&mut n, c, reg(&fake("alice", "K1", 10, 5000)))));
    // Newer version, same key.
    assert!(ok(&ask(&mut n, c, reg(&fake("alice", "K1", 11, 5001)))));
    // Stale.
    assert_eq!(
        ask(&mut n, c, reg(&fake("alice", "K1", 9, 5000))),
        Frame::Error(ErrorReply::StaleVersion)
    );
    // Foreign key, even with a higher version.
    assert_eq!(
        ask(&mut n, c, reg(&fake("alice", "K2", 99, 5000))),
        Frame::Error(ErrorReply::DifferentKey)
    );
    // Bad signature.
    let mut bad = fake("alice", "K1", 12, 5000);
    bad.port = 6000;
    assert_eq!(
        ask(&mut n, c, reg(&bad)),
        Frame::Error(ErrorReply::InvalidSignature)
    );
    // Bad payloads.
    let mut p = fake("a-b", "K1", 1, 5000);
    p.sig_b64 = FakeVerifier::sign(&p);
    assert_eq!(
        ask(&mut n, c, reg(&p)),
        Frame::Error(ErrorReply::InvalidPayload)
    );
    // The unsigned form never replaces a signed record...
    let legacy = |user: &str| Frame::RegisterLegacy {
        user: user.to_owned().into(),
        ip: Ipv4Addr::new(1, 1, 1, 1),
        port: 1,
    };
    assert_eq!(
        ask(&mut n, c, legacy("alice")),
        Frame::Error(ErrorReply::DifferentKey)
    );
    // ... but works for a free name, and a signed owner can then claim it.
    assert!(ok(&ask(&mut n, c, legacy("bob"))));
    assert!(ok(&ask(&mut n, c, legacy("bob"))));
    assert!(ok(&ask(&mut n, c, reg(&fake("bob", "KB", 1, 5000)))));
    assert_eq!(
        ask(&mut n, c, legacy("bob")),
        Frame::Error(ErrorReply::DifferentKey)
    );
    // Resolve answers the newest.
    match ask(
        &mut n,
        c,
        Frame::Resolve {
            user: "alice".into(),
        },
    ) {
        Frame::Ok(OkReply::Resolved { version, port, .. }) => {
            assert_eq!((version, port), (11, 5001));
        }
        f => panic!("{f:?}"),
    }
    assert_eq!(
        ask(
            &mut n,
            c,
            Frame::Resolve {
                user: "nobody".into()
            }
        ),
        Frame::Error(ErrorReply::NotFound)
    );
}

#[test]
fn refuses_legacy_server_frames_and_spoofed_ring_requests() {
    let mut n = founder(Box::new(FakeVerifier));
    let evil: SocketAddrV4 = "6.6.6.6:1".parse().unwrap();
    for f in [Frame::Kill, Frame::Fix, Frame::Join] {
        n.handle_datagram(Duration::from_millis(1), evil, f);
    }
    assert!(sends(&mut n).is_empty());
    // A ring request without the cookie gets only a cookie back and changes nothing.
    let forged = fake("alice", "EVIL", 1, 1);
    n.handle_datagram(
        Duration::from_millis(2),
        evil,
        Frame::Ring(RingFrame::Replicate {
            rid: 1,
            cookie: 0,
            records: vec![forged.clone()],
        }),
    );
    let out = sends(&mut n);
    assert!(
        matches!(out.as_slice(), [(_, Frame::Ring(RingFrame::Cookie { .. }))]),
        "{out:?}"
    );
    assert!(n.record("alice").is_none());
    assert!(n.counters().get("refused_legacy_ring") >= 3);
    // With the cookie (the sender really is at that address), records are still checked.
    let Frame::Ring(RingFrame::Cookie { cookie, .. }) = out[0].1 else {
        unreachable!()
    };
    let c: SocketAddrV4 = "172.16.0.1:5000".parse().unwrap();
    ask(&mut n, c, reg(&fake("alice", "K1", 5, 5000)));
    let mut tampered = fake("alice", "K1", 6, 5000);
    tampered.port = 1;
    n.handle_datagram(
        Duration::from_millis(3),
        evil,
        Frame::Ring(RingFrame::Replicate {
            rid: 2,
            cookie,
            records: vec![forged, tampered, fake("alice", "K1", 4, 1)],
        }),
    );
    sends(&mut n);
    assert_eq!(n.record("alice").unwrap().version, 5);
    // Refused before the record rules: a lone node owns every name, and only its
    // predecessor's handover may push into its range.
    assert_eq!(
        n.counters().get("record_refused") + n.counters().get("record_unauthorized"),
        3
    );
    assert_eq!(n.counters().get("record_unauthorized"), 3);
}

fn interop() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/interop.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn real_rsa_signatures() {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    let v = interop();
    let pem = v["keys"]["private_pkcs8_pem"].as_str().unwrap();
    let key = flock_crypto::PrivateKey::from_pem(pem).unwrap();
    let pub_b64 = key.public_key().to_b64();
    assert_eq!(pub_b64, v["keys"]["public_b64"].as_str().unwrap());
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut sign = |user: &str, port: u16, version: u64| {
        let text =
            flock_proto::signed_text(user, Ipv4Addr::new(10, 0, 0, 7), port, version, &pub_b64);
        Record {
            user: user.into(),
            ip: Ipv4Addr::new(10, 0, 0, 7),
            port,
            version,
            pubkey_b64: pub_b64.clone(),
            sig_b64: flock_crypto::sign_b64(&mut rng, &key, text.as_bytes()).unwrap(),
        }
    };
    let good = sign("alice", 5001, 42);
    assert!(RsaVerifier.verify(&good));
    let mut tampered = good.clone();
    tampered.port = 5002;
    assert!(!RsaVerifier.verify(&tampered));

    let mut n = founder(Box::new(RsaVerifier));
    let c: SocketAddrV4 = "172.16.0.1:5000".parse().unwrap();
    assert_eq!(
        ask(&mut n, c, reg(&good)),
        Frame::Ok(OkReply::Registered {
            user: "alice".into(),
            ip: good.ip,
            port: 5001
        })
    );
    assert_eq!(
        ask(&mut n, c, reg(&tampered)),
        Frame::Error(ErrorReply::InvalidSignature)
    );
    let older = sign("alice", 5003, 41);
    assert_eq!(
        ask(&mut n, c, reg(&older)),
        Frame::Error(ErrorReply::StaleVersion)
    );
    let newer = sign("alice", 5004, 43);
    assert!(matches!(ask(&mut n, c, reg(&newer)), Frame::Ok(_)));
    // A fake-signed record under someone else's key is a different identity.
    assert_eq!(
        ask(&mut n, c, reg(&fake("alice", "K1", 50, 1))),
        Frame::Error(ErrorReply::DifferentKey)
    );
}

#[test]
fn real_signatures_survive_a_small_ring() {
    let mut sim = Sim::new(5, NetConfig::default(), Config::default());
    sim.make_verifier = || Box::new(RsaVerifier);
    let v = interop();
    let key = flock_crypto::PrivateKey::from_pem(v["keys"]["private_pkcs8_pem"].as_str().unwrap())
        .unwrap();
    let pub_b64 = key.public_key().to_b64();
    let a: Vec<_> = (0..5).map(Sim::addr).collect();
    sim.start(a[0], vec![]);
    for x in &a[1..] {
        sim.run_for(Duration::from_millis(500)).unwrap();
        sim.start(*x, vec![a[0]]);
    }
    sim.run_until_ideal(Duration::from_secs(30), Duration::from_millis(200))
        .unwrap();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(2);
    for (i, user) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        let text = flock_proto::signed_text(user, Ipv4Addr::new(10, 0, 0, 9), 5000, 1, &pub_b64);
        let r = Record {
            user: (*user).into(),
            ip: Ipv4Addr::new(10, 0, 0, 9),
            port: 5000,
            version: 1,
            pubkey_b64: pub_b64.clone(),
            sig_b64: flock_crypto::sign_b64(&mut rng, &key, text.as_bytes()).unwrap(),
        };
        sim.register(a[i], r);
    }
    sim.run_for(Duration::from_secs(3)).unwrap();
    assert_eq!(sim.acked().len(), 4);
    sim.crash(a[1]);
    sim.crash(a[2]);
    sim.run_until_ideal(Duration::from_secs(30), Duration::from_millis(200))
        .unwrap();
    sim.check_records(None, Duration::from_secs(2)).unwrap();
    assert_eq!(sim.lost_records(), 0);
}

/// The node reports typed state; the driver renders `STATUS` / `SNAPSHOT` / `CHECKSUM`
/// (the JSON's exact form is tested in flock-bin's `server::status`). The node itself no
/// longer answers them.
#[test]
fn status_is_typed_and_admin_frames_are_the_drivers() {
    let mut n = founder(Box::new(FakeVerifier));
    let c: SocketAddrV4 = "172.16.0.1:5000".parse().unwrap();
    ask(&mut n, c, reg(&fake("alice", "K1", 10, 5000)));
    let s = n.status();
    assert!(s.is_member());
    assert_eq!(s.phase, flock_chord::NodePhase::Member);
    assert_eq!(s.addr, n.addr());
    assert_eq!((s.records, s.owned, s.digest_records), (1, 1, 1));
    assert_ne!(s.digest, 0);
    assert_eq!(s.range, n.range());
    assert!(s.successors.is_empty() && s.predecessor.is_none());
    assert_eq!(s.counters.get("register_stored"), 1);
    for f in [Frame::Status, Frame::Snapshot, Frame::Checksum] {
        n.handle_datagram(Duration::from_millis(2), c, f);
        assert!(sends(&mut n).is_empty());
    }
    assert_eq!(n.counters().get("drop_unexpected"), 3);
}

/// The lookup extension: `LOOKUP <user> <rid>` is answered with the whole signed record
/// and the id echoed, or `NOTFOUND <rid>` (also for an unsigned legacy record: no key).
#[test]
fn lookup_extension_echoes_the_id_and_carries_the_signature() {
    let mut n = founder(Box::new(FakeVerifier));
    let c: SocketAddrV4 = "172.16.0.1:5000".parse().unwrap();
    let alice = fake("alice", "K1", 10, 5000);
    assert!(matches!(
        ask(&mut n, c, reg(&alice)),
        Frame::Ok(OkReply::Registered { .. })
    ));
    let lookup = |user: &str, rid| Frame::Lookup {
        user: user.to_owned().into(),
        rid,
    };
    match ask(&mut n, c, lookup("alice", 0xDEAD_BEEF)) {
        Frame::Found { rid, record } => {
            assert_eq!(rid, 0xDEAD_BEEF);
            assert_eq!(reg(&alice), Frame::Register(record));
        }
        f => panic!("{f:?}"),
    }
    assert_eq!(
        ask(&mut n, c, lookup("nobody", 7)),
        Frame::NotFound { rid: 7 }
    );
    let legacy = Frame::RegisterLegacy {
        user: "bob".into(),
        ip: Ipv4Addr::new(1, 1, 1, 1),
        port: 1,
    };
    assert!(matches!(
        ask(&mut n, c, legacy),
        Frame::Ok(OkReply::Registered { .. })
    ));
    assert_eq!(ask(&mut n, c, lookup("bob", 8)), Frame::NotFound { rid: 8 });
}
