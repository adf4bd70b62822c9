//! The client machine in-process: several clients and a fake ring server on a simulated
//! network with a simulated clock, each client with an in-memory stand-in for its
//! database that applies the machine's store effects in order.

mod sim;

use std::net::{Ipv4Addr, SocketAddrV4};

use flock_crypto::{PrivateKey, PublicKey, seal_b64, sign_b64, verify_b64};
use flock_proto::client::{Action, Event, Status, Transmit};
use flock_proto::signed_text as registration_text;
use flock_proto::{Frame, OkReply};
use sim::*;

use flock_proto::client::{
    ConnectionState, KeySource, MAX_TEXT_BYTES, SendError, Warning, ack_signed_text, max_text_len,
    smessage_signed_text,
};
use flock_proto::limits::ORIGINAL_CLIENT_MAX_DATAGRAM;

/// `SMESSAGE <claimed> <id> ...` sealed for `to_key`, signed by `signer` for `to`.
fn forged_smessage(
    rng: &mut TestRng,
    claimed: &str,
    to: &str,
    to_key: &PublicKey,
    id: u64,
    signer: &PrivateKey,
) -> Vec<u8> {
    let payload = seal_b64(rng, to_key, b"forged").expect("seal");
    let text = smessage_signed_text(claimed, to, id, &payload);
    let sig = sign_b64(rng, signer, text.as_bytes()).expect("sign");
    format!("SMESSAGE {claimed} {id} {payload} {sig}").into_bytes()
}

fn pair(bob_extension: bool) -> Sim {
    pair_on(bob_extension, false)
}

/// alice and bob registered, with our servers or (`original_servers`) original ones.
fn pair_on(bob_extension: bool, original_servers: bool) -> Sim {
    let mut sim = Sim::new();
    sim.original_servers = original_servers;
    sim.add("alice", key(1), 1, true);
    sim.add("bob", key(2), 2, bob_extension);
    assert!(sim.run_until(10_000, |s| s.registered("alice") && s.registered("bob")));
    sim
}

fn delivered(sim: &Sim, from: &str, to: &str, id: u64) -> bool {
    let i = sim.idx(from);
    sim.nodes[i].db.status(to, id) == Some(Status::Delivered)
}

fn verbs_from(sim: &Sim, from: SocketAddrV4) -> Vec<String> {
    sim.log
        .iter()
        .filter(|(f, _, _)| *f == from)
        .map(|(_, _, d)| {
            let text = String::from_utf8_lossy(d);
            text.split(' ').next().unwrap_or_default().to_owned()
        })
        .collect()
}

fn warnings(sim: &mut Sim, user: &str) -> Vec<Warning> {
    sim.node(user)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn extension_peers_exchange_both_ways_with_acks() {
    let mut sim = pair(true);
    let id = sim.send("alice", "bob", "hi bob");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    let id2 = sim.send("bob", "alice", "hi alice");
    assert!(sim.run_until(10_000, |s| delivered(s, "bob", "alice", id2)));

    let bob = sim.node("bob").db.clone();
    assert_eq!(
        bob.incoming,
        vec![("alice".into(), "hi bob".into(), Some(id), true)]
    );
    let alice = sim.node("alice").db.clone();
    assert_eq!(
        alice.incoming,
        vec![("bob".into(), "hi alice".into(), Some(id2), true)]
    );
    assert!(alice.outbox.is_empty() && bob.outbox.is_empty());

    // queued -> sent -> delivered, in that order.
    let statuses = statuses_of(&sim.node("alice").events, id);
    assert_eq!(statuses, [Status::Queued, Status::Sent, Status::Delivered]);
    // Signed frames only between extension peers; keys pinned from the ring.
    let verbs = verbs_from(&sim, addr(1, 40000));
    assert!(verbs.contains(&"SMESSAGE".to_owned()) && !verbs.contains(&"MESSAGE".to_owned()));
    assert!(sim.node("alice").events.contains(&Event::KeyPinned {
        user: "bob".into(),
        fingerprint: key(2).public_key().fingerprint().to_string(),
        source: KeySource::Resolve,
    }));
    assert_eq!(sim.node("alice").client.peer_extension("bob"), Some(true));
}

#[test]
fn original_peer_gets_original_messages() {
    let mut sim = pair(false);
    let id = sim.send("alice", "bob", "hello original");
    assert!(sim.run_until(10_000, |s| s.nodes[0].db.status("bob", id)
        == Some(Status::Sent)
        && s.nodes[0].db.outbox.is_empty()));
    assert_eq!(
        sim.node("bob").db.incoming,
        vec![("alice".into(), "hello original".into(), None, false)]
    );
    let verbs = verbs_from(&sim, addr(1, 40000));
    assert!(verbs.contains(&"MESSAGE".to_owned()) && !verbs.contains(&"SMESSAGE".to_owned()));
    // An original client never says HELLO.
    assert!(!verbs_from(&sim, addr(2, 40000)).contains(&"HELLO".to_owned()));
    assert_eq!(sim.node("alice").client.peer_extension("bob"), Some(false));

    // And the other way: an original MESSAGE is accepted, flagged unauthenticated.
    sim.send("bob", "alice", "from the past");
    assert!(sim.run_until(10_000, |s| !s.nodes[0].db.incoming.is_empty()));
    assert_eq!(
        sim.node("alice").db.incoming,
        vec![("bob".into(), "from the past".into(), None, false)]
    );
}

#[test]
fn offline_recipient_sender_restart_exactly_once() {
    let mut sim = pair(true);
    let warm = sim.send("alice", "bob", "warm up");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", warm)));

    // bob goes away; alice writes; nothing is acknowledged.
    let b = sim.idx("bob");
    sim.nodes[b].up = false;
    let id = sim.send("alice", "bob", "while you were out");
    sim.run_for(8_000);
    let a = sim.idx("alice");
    assert_eq!(sim.nodes[a].db.status("bob", id), Some(Status::Sent));
    assert_eq!(sim.nodes[a].db.outbox.len(), 1);
    assert!(sim.nodes[a].db.outbox.values().all(|e| e.1 >= 1), "retried");
    // The outbox holds the sealed payload, never the text.
    assert!(
        sim.nodes[a]
            .db
            .outbox
            .values()
            .all(|e| !e.0.contains("while you were out"))
    );

    // alice restarts (from her database), on the other server.
    sim.nodes[a].up = false;
    sim.run_for(1_000);
    sim.restart(a, SERVER_B);
    // bob comes back on a new port.
    sim.nodes[b].addr = addr(2, 40001);
    sim.nodes[b].cfg.port = 40001;
    sim.restart(b, SERVER_A);
    // Lose the first acknowledgement: alice resends, bob must not store it twice.
    let mut dropped = 0;
    sim.filter = Some(Box::new(move |_, _, d| {
        if d.starts_with(b"ACK ") && dropped == 0 {
            dropped += 1;
            return false;
        }
        true
    }));
    assert!(sim.run_until(60_000, |s| delivered(s, "alice", "bob", id)));
    let texts = sim.nodes[b].db.texts_from("alice");
    assert_eq!(texts, ["warm up", "while you were out"]);
    assert!(sim.nodes[a].db.outbox.is_empty());
    assert_eq!(sim.nodes[a].client.pending_count(), 0);
}

#[test]
fn offline_original_recipient_is_retried_and_delivered_once() {
    let mut sim = pair(false);
    let b = sim.idx("bob");
    sim.nodes[b].up = false;
    let id = sim.send("alice", "bob", "queued for an original");
    sim.run_for(5_000);
    assert_eq!(sim.nodes[0].db.status("bob", id), Some(Status::Queued));
    sim.nodes[b].up = true;
    assert!(sim.run_until(30_000, |s| s.nodes[0].db.status("bob", id)
        == Some(Status::Sent)));
    sim.run_for(10_000);
    assert_eq!(
        sim.nodes[b].db.texts_from("alice"),
        ["queued for an original"]
    );
}

#[test]
fn tampered_ciphertext_is_dropped_with_a_warning() {
    let mut sim = pair(true);
    let bob_addr = addr(2, 40000);
    let mallory = addr(9, 666);
    // An unsigned MESSAGE whose ciphertext was changed.
    let mut rng = TestRng::new(77);
    let payload = seal_b64(&mut rng, key(2).public_key(), b"secret").unwrap();
    let mut raw = base64_decode(&payload);
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let tampered = base64_encode(&raw);
    let frame = format!("MESSAGE carol {tampered}").into_bytes();
    sim.inject(mallory, bob_addr, frame);
    sim.run_for(100);
    assert!(sim.node("bob").db.incoming.is_empty());
    assert!(matches!(
        warnings(&mut sim, "bob")[..],
        [Warning::Undecryptable { .. }]
    ));
    // Never answered.
    assert!(
        sim.log
            .iter()
            .all(|(f, t, _)| !(*f == bob_addr && *t == mallory))
    );

    // A signed message whose payload is changed in flight fails its signature; the
    // sender's retry goes through untouched.
    let mut flipped = false;
    sim.filter = Some(Box::new(move |_, _, d| {
        if d.starts_with(b"SMESSAGE ") && !flipped {
            flipped = true;
            let text = String::from_utf8(d.clone()).unwrap();
            let mut parts: Vec<String> = text.split(' ').map(str::to_owned).collect();
            let mut raw = base64_decode(&parts[3]);
            raw[280] ^= 0x80;
            parts[3] = base64_encode(&raw);
            *d = parts.join(" ").into_bytes();
        }
        true
    }));
    let id = sim.send("alice", "bob", "integrity");
    assert!(sim.run_until(20_000, |s| delivered(s, "alice", "bob", id)));
    assert_eq!(sim.node("bob").db.texts_from("alice"), ["integrity"]);
    assert!(
        warnings(&mut sim, "bob")
            .iter()
            .any(|w| matches!(w, Warning::ForgedSender { .. }))
    );
}

#[test]
fn forged_sender_is_rejected() {
    let mut sim = pair(true);
    sim.add("mallory", key(3), 9, true);
    sim.add("carol", key(4), 3, true);
    assert!(sim.run_until(10_000, |s| s.registered("mallory") && s.registered("carol")));
    let id = sim.send("alice", "bob", "real");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    let bob_addr = addr(2, 40000);
    let mallory = addr(9, 40000);
    let mut rng = TestRng::new(5);

    // Signed, claiming alice (pinned by bob), signed with mallory's key.
    let payload = seal_b64(&mut rng, key(2).public_key(), b"send money").unwrap();
    let sig = sign_b64(
        &mut rng,
        &key(3),
        smessage_signed_text("alice", "bob", 42, &payload).as_bytes(),
    )
    .unwrap();
    sim.inject(
        mallory,
        bob_addr,
        format!("SMESSAGE alice 42 {payload} {sig}").into_bytes(),
    );
    // Claiming carol, whom bob has never seen: bob resolves carol's key first.
    let sig = sign_b64(
        &mut rng,
        &key(3),
        smessage_signed_text("carol", "bob", 43, &payload).as_bytes(),
    )
    .unwrap();
    sim.inject(
        mallory,
        bob_addr,
        format!("SMESSAGE carol 43 {payload} {sig}").into_bytes(),
    );
    // Unsigned, claiming alice, who is known to sign.
    sim.inject(
        mallory,
        bob_addr,
        format!("MESSAGE alice {payload}").into_bytes(),
    );
    sim.run_for(5_000);

    assert_eq!(sim.node("bob").db.texts_from("alice"), ["real"]);
    assert!(sim.node("bob").db.texts_from("carol").is_empty());
    let w = warnings(&mut sim, "bob");
    let forged: Vec<&str> = w
        .iter()
        .filter_map(|w| match w {
            Warning::ForgedSender { claimed, .. } => Some(claimed.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(forged, ["alice", "carol"]);
    assert!(
        w.iter()
            .any(|w| matches!(w, Warning::Unauthenticated { claimed, .. } if claimed == "alice"))
    );
    // No acknowledgement for any of them.
    assert!(
        sim.log
            .iter()
            .all(|(f, t, d)| !(*f == bob_addr && *t == mallory && d.starts_with(b"ACK")))
    );
}

#[test]
fn duplicate_delivery_is_stored_once_and_acknowledged_again() {
    let mut sim = pair(true);
    let id = sim.send("alice", "bob", "once");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    let bob_addr = addr(2, 40000);
    let smessage = sim
        .log
        .iter()
        .find(|(_, t, d)| *t == bob_addr && d.starts_with(b"SMESSAGE "))
        .cloned()
        .expect("smessage");
    let acks_before = sim
        .log
        .iter()
        .filter(|(f, _, d)| *f == bob_addr && d.starts_with(b"ACK "))
        .count();
    sim.inject(smessage.0, smessage.1, smessage.2.clone());
    sim.inject(smessage.0, smessage.1, smessage.2);
    sim.run_for(1_000);
    assert_eq!(sim.node("bob").db.texts_from("alice"), ["once"]);
    let acks = sim
        .log
        .iter()
        .filter(|(f, _, d)| *f == bob_addr && d.starts_with(b"ACK "))
        .count();
    assert_eq!(acks, acks_before + 2);
    // A restarted receiver still suppresses it (by its database).
    let b = sim.idx("bob");
    sim.restart(b, SERVER_A);
    sim.nodes[b].db.seen.insert(("alice".into(), id));
    let smessage = sim
        .log
        .iter()
        .find(|(_, t, d)| *t == bob_addr && d.starts_with(b"SMESSAGE "))
        .cloned()
        .unwrap();
    sim.inject(smessage.0, smessage.1, smessage.2);
    sim.run_for(3_000);
    assert_eq!(sim.node("bob").db.texts_from("alice"), ["once"]);
}

#[test]
fn key_change_blocks_sending_until_accepted() {
    let mut sim = pair(true);
    let id = sim.send("alice", "bob", "before");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));

    // bob comes back with a new key (the ring lost his record).
    sim.allow_rekey = true;
    let b = sim.idx("bob");
    sim.nodes[b].key = key(4);
    sim.restart(b, SERVER_A);
    assert!(sim.run_until(10_000, |s| s.registered("bob")));
    let a = sim.idx("alice");
    let now = sim.now;
    sim.nodes[a].client.lookup(now, "bob");
    sim.drain(a);
    assert!(sim.run_until(10_000, |s| {
        s.nodes[a]
            .events
            .iter()
            .any(|e| matches!(e, Event::KeyChanged { .. }))
    }));
    let changed = sim.nodes[a]
        .events
        .iter()
        .find(|e| matches!(e, Event::KeyChanged { .. }))
        .cloned();
    assert_eq!(
        changed,
        Some(Event::KeyChanged {
            user: "bob".into(),
            pinned: key(2).public_key().fingerprint().to_string(),
            new: key(4).public_key().fingerprint().to_string(),
            source: KeySource::Resolve,
            verified: false,
        })
    );
    let now = sim.now;
    assert_eq!(
        sim.nodes[a].client.send(now, "bob", "blocked?"),
        Err(SendError::KeyChanged { user: "bob".into() })
    );
    // bob's signed messages (new key) are refused meanwhile.
    sim.send("bob", "alice", "it's me, new key");
    sim.run_for(3_000);

    assert!(sim.nodes[a].db.texts_from("bob").is_empty());
    assert!(warnings(&mut sim, "alice").iter().any(|w| matches!(
        w,
        Warning::ForgedSender {
            pending_key: true,
            ..
        }
    )));

    // Accepted: sending works again, and bob's retries now verify.
    let now = sim.now;
    assert!(sim.nodes[a].client.accept_key(now, "bob"));
    sim.drain(a);
    assert_eq!(
        sim.nodes[a].db.contacts["bob"].0,
        key(4).public_key().to_b64()
    );
    let id = sim.send("alice", "bob", "after");
    assert!(sim.run_until(20_000, |s| delivered(s, "alice", "bob", id)));
    assert_eq!(sim.nodes[b].db.texts_from("alice"), ["before", "after"]);
    assert!(sim.run_until(30_000, |s| s.nodes[a].db.texts_from("bob")
        == ["it's me, new key"]));
}

#[test]
fn text_limit_fits_an_original_datagram() {
    let mut sim = pair(false);
    let max = max_text_len("alice", 256);
    assert_eq!(max, 5846);
    let now = sim.now;
    let too_long = "x".repeat(MAX_TEXT_BYTES + 1);
    assert_eq!(
        sim.nodes[0].client.send(now, "bob", &too_long),
        Err(SendError::TooLong {
            len: MAX_TEXT_BYTES + 1,
            max: MAX_TEXT_BYTES
        })
    );
    assert_eq!(sim.nodes[0].client.pending_count(), 0, "nothing queued");
    let id = sim.send("alice", "bob", &"y".repeat(max));
    assert!(sim.run_until(10_000, |s| s.nodes[0].db.status("bob", id)
        == Some(Status::Sent)));
    let longest = sim
        .log
        .iter()
        .filter(|(_, _, d)| d.starts_with(b"MESSAGE "))
        .map(|(_, _, d)| d.len())
        .max()
        .unwrap();
    assert!(longest <= ORIGINAL_CLIENT_MAX_DATAGRAM && longest > ORIGINAL_CLIENT_MAX_DATAGRAM - 4);
    assert_eq!(sim.nodes[1].db.texts_from("alice"), ["y".repeat(max)]);
    // Multi-byte text counts in bytes: one byte over takes two parts (one message
    // for the sender).
    let now = sim.now;
    let ids = sim.nodes[0]
        .client
        .send_parts(now, "bob", &"é".repeat(max / 2 + 1))
        .expect("split");
    assert_eq!(ids.len(), 1);
    sim.drain(0);
    assert_eq!(sim.nodes[0].db.parts_of("bob", ids[0].0).len(), 2);
}

/// A 10,000-character paste of emoji, CJK and ASCII (about 26 KB).
fn paste() -> String {
    // Includes a ZWJ sequence (one glyph, several characters).
    "😀漢字aé 🧑‍🤝‍🧑".chars().cycle().take(10_000).collect()
}

/// A peer that does not reassemble (an original client, or `ack1` without `parts1`)
/// gets the paste as parts with consecutive ids, each a message of its own, in order;
/// the sender shows one message, sent (original) or delivered (extension) once every
/// part is.
fn paste_arrives_in_order_as_parts(bob_extension: bool) {
    let mut sim = Sim::new();
    sim.add("alice", key(1), 1, true);
    sim.add_with("bob", key(2), 2, |cfg| {
        cfg.extension = bob_extension;
        cfg.parts = false;
    });
    assert!(sim.run_until(10_000, |s| s.registered("alice") && s.registered("bob")));
    let text = paste();
    assert_eq!(text.chars().count(), 10_000);
    let now = sim.now;
    let sent = sim.nodes[0]
        .client
        .send_parts(now, "bob", &text)
        .expect("a 10,000-character paste is accepted");
    assert_eq!(sent.len(), 1, "the sender shows one message");
    let (first, shown) = &sent[0];
    assert_eq!(shown, &text);
    sim.drain(0);
    // bob's key comes with the lookup: then the parts are sealed and queued.
    assert!(sim.run_until(10_000, |s| {
        !s.nodes[0].db.parts_of("bob", *first).is_empty()
    }));
    let ids = sim.nodes[0].db.parts_of("bob", *first);
    let max = max_text_len("alice", 256);
    assert!(ids.len() >= text.len().div_ceil(max) && ids.len() > 1);
    assert_eq!(ids[0], *first);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "consecutive ids");
    let want = ids.len();
    assert!(sim.run_until(30_000, |s| s.nodes[1].db.texts_from("alice").len() == want));
    let parts = sim.nodes[1].db.texts_from("alice");
    assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= max));
    assert_eq!(parts.concat(), text, "every byte arrives, in order");
    assert!(
        sim.log
            .iter()
            .filter(|(_, _, d)| d.starts_with(b"MESSAGE "))
            .all(|(_, _, d)| d.len() <= ORIGINAL_CLIENT_MAX_DATAGRAM)
    );
    let done = if bob_extension {
        Status::Delivered
    } else {
        Status::Sent
    };
    assert!(
        sim.run_until(10_000, |s| s.nodes[0].db.status("bob", *first)
            == Some(done))
    );
    assert!(sim.nodes[0].db.outbox.is_empty() && sim.nodes[0].db.parts.is_empty());
    assert_eq!(
        sim.nodes[0].db.outgoing.len(),
        1,
        "one message in the history"
    );
}

#[test]
fn paste_is_split_for_an_original_peer() {
    paste_arrives_in_order_as_parts(false);
}

#[test]
fn paste_is_split_for_an_extension_peer_without_reassembly() {
    paste_arrives_in_order_as_parts(true);
}

#[test]
fn largest_text_is_accepted_and_split_on_char_boundaries() {
    let mut sim = pair(true);
    // 4-byte characters up to exactly the limit.
    let text = "😀".repeat(MAX_TEXT_BYTES / 4);
    assert_eq!(text.len(), MAX_TEXT_BYTES);
    let now = sim.now;
    let sent = sim.nodes[0]
        .client
        .send_parts(now, "bob", &text)
        .expect("64 KiB is accepted");
    assert_eq!(sent.len(), 1);
    // bob reassembles: one message, whole.
    assert!(sim.run_until(30_000, |s| s.nodes[1].db.texts_from("alice").len() == 1));
    assert!(
        sim.nodes[0].db.parts_of("bob", sent[0].0).len() > 1,
        "sent in parts"
    );
    assert_eq!(sim.nodes[1].db.texts_from("alice").concat(), text);
    // One more byte is refused whole.
    let now = sim.now;
    let over = format!("{text}x");
    assert!(matches!(
        sim.nodes[0].client.send(now, "bob", &over),
        Err(SendError::TooLong { len, max: MAX_TEXT_BYTES }) if len == MAX_TEXT_BYTES + 1
    ));
}

#[test]
fn interop_vectors_open_and_frames_are_byte_compatible() {
    let v = vectors();
    let mut sim = Sim::new();
    sim.add("vector", key(0), 5, true);
    assert!(sim.run_until(10_000, |s| s.registered("vector")));
    let me = addr(5, 40000);
    for (i, case) in v["sealed"].as_array().unwrap().iter().enumerate() {
        let payload = case["payload_b64"].as_str().unwrap();
        sim.inject(
            addr(7, 7000 + i as u16),
            me,
            format!("MESSAGE peer{i} {payload}").into_bytes(),
        );
    }
    sim.run_for(100);
    let got: Vec<String> = sim
        .node("vector")
        .db
        .incoming
        .iter()
        .map(|m| m.1.clone())
        .collect();
    let want: Vec<String> = v["sealed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["plaintext"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want);

    // The REGISTER the machine sent: the original's 7 fields, verifiable signature,
    // version = wall clock in ns, and the bytes re-encode identically.
    let (_, to, reg) = sim
        .log
        .iter()
        .find(|(f, _, d)| *f == me && d.starts_with(b"REGISTER "))
        .cloned()
        .unwrap();
    assert_eq!(to, SERVER_A);
    let Frame::Register(r) = Frame::decode(&reg).unwrap() else {
        panic!("not a register")
    };
    assert_eq!(r.pubkey_b64, v["keys"]["public_b64"].as_str().unwrap());
    assert_eq!(r.version, 1_700_000_000_000 * 1_000_000);
    assert_eq!(
        String::from_utf8(reg.clone()).unwrap().split(' ').count(),
        7
    );
    let pubkey = key(0).public_key().clone();
    verify_b64(
        &pubkey,
        registration_text(&r.user, r.ip, r.port, r.version, &r.pubkey_b64).as_bytes(),
        &r.sig_b64,
    )
    .unwrap();
    assert_eq!(Frame::Register(r).encode_to_vec(), reg);
    // The signature scheme of SMESSAGE and ACK is the original's PSS: the vector
    // signatures verify with the same function.
    for case in v["signatures"].as_array().unwrap() {
        verify_b64(
            &pubkey,
            case["text"].as_str().unwrap().as_bytes(),
            case["signature_b64"].as_str().unwrap(),
        )
        .unwrap();
    }
    assert_eq!(ack_signed_text("bob", "alice", 1), "ACK|bob|alice|1");
}

#[test]
fn ping_is_always_answered_and_unknown_frames_are_ignored() {
    let mut sim = pair(true);
    let stranger = addr(8, 1234);
    sim.inject(stranger, addr(1, 40000), b"PING".to_vec());
    sim.inject(stranger, addr(1, 40000), b"GARBAGE \xff".to_vec());
    sim.inject(stranger, addr(1, 40000), b"KILL".to_vec());
    sim.run_for(10);
    let replies: Vec<Vec<u8>> = sim
        .log
        .iter()
        .filter(|(_, t, _)| *t == stranger)
        .map(|(_, _, d)| d.clone())
        .collect();
    assert_eq!(replies, [b"PONG".to_vec()]);

    // The raw-bytes convenience decodes once and counts what does not decode.
    let now = sim.now;
    let alice = &mut sim.node("alice").client;
    assert_eq!(alice.undecodable(), 0);
    alice.handle_datagram(now, stranger, b"GARBAGE \xff");
    alice.handle_datagram(now, stranger, b"PING");
    assert_eq!(alice.undecodable(), 1);
    let answers: Vec<Action> = std::iter::from_fn(|| alice.poll_action()).collect();
    assert_eq!(
        answers,
        [Action::Send(Transmit {
            to: stranger,
            datagram: b"PONG".to_vec()
        })]
    );
}

#[test]
fn server_loss_is_reported_and_a_new_server_takes_over() {
    let mut sim = pair(true);
    sim.servers.insert(SERVER_A, false);
    let a = sim.idx("alice");
    assert!(
        sim.run_until(30_000, |s| s.nodes[a].events.contains(&Event::Connection(
            ConnectionState::Lost { server: SERVER_A }
        )))
    );
    // Messages written meanwhile wait for a server to look the peer up.
    let id = sim.send("alice", "bob", "through another server");
    sim.run_for(2_000);
    let now = sim.now;
    sim.nodes[a].client.connect(now, SERVER_B);
    sim.drain(a);
    assert!(
        sim.run_until(10_000, |s| s.nodes[a].events.contains(&Event::Connection(
            ConnectionState::Registered { server: SERVER_B }
        )))
    );
    // bob, who lost the same server, moves too (as his driver does): he learns alice's
    // key from the ring, never from alice herself.
    let b = sim.idx("bob");
    sim.nodes[b].client.connect(now, SERVER_B);
    sim.drain(b);
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
}

#[test]
fn unknown_recipient_fails_visibly() {
    let mut sim = pair(true);
    let id = sim.send("alice", "nobody", "hello?");
    assert!(sim.run_until(10_000, |s| s.nodes[0].db.status("nobody", id)
        == Some(Status::Failed)));
    assert!(
        warnings(&mut sim, "alice").contains(&Warning::UserNotFound {
            user: "nobody".into()
        })
    );
}

#[test]
fn unsigned_floods_are_rate_limited_before_decryption() {
    let mut sim = pair(true);
    let src = addr(66, 6666);
    let mut rng = TestRng::new(3);
    let payload = seal_b64(&mut rng, key(3).public_key(), b"not for bob").unwrap();
    for _ in 0..200 {
        sim.inject(
            src,
            addr(2, 40000),
            format!("MESSAGE someone {payload}").into_bytes(),
        );
    }
    sim.run_for(10);
    let w = warnings(&mut sim, "bob");
    let opened = w
        .iter()
        .filter(|w| matches!(w, Warning::Undecryptable { .. }))
        .count();
    let limited = w
        .iter()
        .filter(|w| matches!(w, Warning::RateLimited { .. }))
        .count();
    assert!(opened <= 51, "opened {opened}");
    assert_eq!(opened + limited, 200);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn message_written_before_the_key_is_known_survives_a_restart() {
    let mut sim = pair(true);
    // alice's server is unreachable: the lookup for bob cannot happen yet.
    sim.servers.insert(SERVER_A, false);
    let id = sim.send("alice", "bob", "written offline");
    let a = sim.idx("alice");
    assert_eq!(sim.nodes[a].db.status("bob", id), Some(Status::Queued));
    assert!(sim.nodes[a].db.outbox.is_empty(), "not sealed yet: no key");
    // Restart: the driver feeds the unsealed history row back.
    sim.nodes[a].up = false;
    sim.restart(a, SERVER_B);
    let text = sim.nodes[a].db.outgoing[&("bob".to_owned(), id)].0.clone();
    let now = sim.now;
    sim.nodes[a].client.restore_unsealed("bob", id, &text);
    sim.nodes[a].client.handle_timeout(now);
    sim.drain(a);
    // bob's server is gone too: he looks alice up through another one (a peer's own
    // PUBKEY_RES never introduces her key).
    let b = sim.idx("bob");
    sim.nodes[b].client.connect(now, SERVER_B);
    sim.drain(b);
    assert!(sim.run_until(20_000, |s| delivered(s, "alice", "bob", id)));
    assert_eq!(sim.nodes[1].db.texts_from("alice"), ["written offline"]);
}

// ---- issue 9: a contact's key comes only from the ring ---------------------------------

const ATTACKER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 6666);

/// `FOUND <rid> <user> <attacker's address and key>`, signed by `key` (the record's own
/// signature is valid: only the request id and the source give it away).
fn forged_found(user: &str, rid: u64, key: &PrivateKey) -> Vec<u8> {
    let mut rng = TestRng::new(rid);
    let pubkey_b64 = key.public_key().to_b64();
    let text = registration_text(user, *ATTACKER.ip(), ATTACKER.port(), 1, &pubkey_b64);
    let sig_b64 = sign_b64(&mut rng, key, text.as_bytes()).expect("sign");
    Frame::Found {
        rid,
        record: flock_proto::Register {
            user: user.to_owned().into(),
            ip: *ATTACKER.ip(),
            port: ATTACKER.port(),
            version: 1,
            pubkey_b64: pubkey_b64.into(),
            sig_b64: sig_b64.into(),
        },
    }
    .encode_to_vec()
}

/// `OK <ip> <port> <key> <version>` as an original server answers `RESOLVE`.
fn forged_ok(key: &PublicKey) -> Vec<u8> {
    Frame::Ok(OkReply::Resolved {
        ip: *ATTACKER.ip(),
        port: ATTACKER.port(),
        pubkey_b64: key.to_b64().into(),
        version: 1,
    })
    .encode_to_vec()
}

fn sent_to(sim: &Sim, from: SocketAddrV4, to: SocketAddrV4, prefix: &str) -> usize {
    sim.log
        .iter()
        .filter(|(f, t, d)| *f == from && *t == to && d.starts_with(prefix.as_bytes()))
        .count()
}

fn key_changes(sim: &mut Sim, user: &str) -> usize {
    sim.node(user)
        .events
        .iter()
        .filter(|e| matches!(e, Event::KeyChanged { .. }))
        .count()
}

#[test]
fn forged_lookup_burst_after_a_hello_trigger_changes_nothing() {
    forged_lookup_burst(false);
}

#[test]
fn forged_lookup_burst_changes_nothing_with_original_servers() {
    forged_lookup_burst(true);
}

fn forged_lookup_burst(original_servers: bool) {
    let mut sim = pair_on(true, original_servers);
    sim.add("frank", key(4), 4, true);
    assert!(sim.run_until(10_000, |s| s.registered("frank")));
    let bob_addr = addr(2, 40000);
    let mallory = key(3).public_key().clone();

    // The trigger: a HELLO naming frank from the attacker's address starts no lookup.
    sim.inject(ATTACKER, bob_addr, b"HELLO frank ack1".to_vec());
    sim.run_for(100);
    assert_eq!(sent_to(&sim, bob_addr, SERVER_A, "RESOLVE frank"), 0);
    assert_eq!(sent_to(&sim, bob_addr, SERVER_A, "LOOKUP frank"), 0);
    assert_eq!(sim.node("bob").client.pinned_key("frank"), None);

    // bob writes to frank: his lookup is outstanding while a burst of forged answers
    // arrives before the server's.
    let id = sim.send("bob", "frank", "for frank only");
    for rid in 0..50 {
        sim.inject(ATTACKER, bob_addr, forged_ok(&mallory));
        sim.inject(ATTACKER, bob_addr, forged_found("frank", rid, &key(3)));
    }
    assert!(sim.run_until(10_000, |s| delivered(s, "bob", "frank", id)));
    let bob = sim.node("bob");
    assert_eq!(bob.client.pinned_key("frank"), Some(key(4).public_key()));
    assert!(bob.client.counters().stray_answers >= 100);
    assert_eq!(bob.client.counters().lookup_fallbacks > 0, original_servers);
    assert_eq!(key_changes(&mut sim, "bob"), 0);
    assert_eq!(sent_to(&sim, bob_addr, ATTACKER, "SMESSAGE"), 0);
    assert_eq!(sent_to(&sim, bob_addr, ATTACKER, "MESSAGE"), 0);
    assert_eq!(sim.node("frank").db.texts_from("bob"), ["for frank only"]);
}

#[test]
fn blind_spray_of_forged_answers_changes_nothing() {
    blind_spray(false);
}

#[test]
fn blind_spray_changes_nothing_with_original_servers() {
    blind_spray(true);
}

fn blind_spray(original_servers: bool) {
    let mut sim = pair_on(true, original_servers);
    let alice_addr = addr(1, 40000);
    let mallory = key(3).public_key().clone();
    // Sprayed before, during and after alice's first lookup of bob.
    for _ in 0..20 {
        sim.inject(ATTACKER, alice_addr, forged_ok(&mallory));
        sim.inject(ATTACKER, alice_addr, Frame::not_found().encode_to_vec());
    }
    sim.run_for(50);
    let id = sim.send("alice", "bob", "secret");
    for _ in 0..20 {
        sim.inject(ATTACKER, alice_addr, forged_ok(&mallory));
    }
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    for _ in 0..20 {
        sim.inject(ATTACKER, alice_addr, forged_ok(&mallory));
    }
    sim.run_for(5_000);
    let alice = sim.node("alice");
    assert_eq!(alice.client.pinned_key("bob"), Some(key(2).public_key()));
    assert_eq!(alice.client.counters().stray_answers, 80);
    assert_eq!(key_changes(&mut sim, "alice"), 0);
    // Nothing alice sent ever went to the attacker.
    assert!(
        sim.log
            .iter()
            .all(|(f, t, _)| !(*f == alice_addr && *t == ATTACKER))
    );
    assert_eq!(sim.node("bob").db.texts_from("alice"), ["secret"]);
}

#[test]
fn pubkey_res_never_pins_a_key() {
    let mut sim = pair(true);
    let bob_addr = addr(2, 40000);
    let mut rng = TestRng::new(9);
    // The attacker asks for bob's key as alice: bob answers but asks nothing back.
    sim.inject(ATTACKER, bob_addr, b"PUBKEY_REQ alice".to_vec());
    sim.run_for(100);
    assert_eq!(sent_to(&sim, bob_addr, ATTACKER, "PUBKEY_RES bob"), 1);
    assert_eq!(sent_to(&sim, bob_addr, ATTACKER, "PUBKEY_REQ"), 0);
    // Its PUBKEY_RES for alice is not believed.
    let res = format!("PUBKEY_RES alice {}", key(3).public_key().to_b64());
    sim.inject(ATTACKER, bob_addr, res.into_bytes());
    sim.run_for(100);
    assert_eq!(sim.node("bob").client.pinned_key("alice"), None);
    assert!(sim.node("bob").client.counters().unconfirmed_keys >= 1);
    // Its signed message as alice is checked against the ring's key for alice: forged.
    let forged = forged_smessage(&mut rng, "alice", "bob", key(2).public_key(), 5, &key(3));
    sim.inject(ATTACKER, bob_addr, forged);
    sim.run_for(3_000);
    assert!(sim.node("bob").db.texts_from("alice").is_empty());
    assert_eq!(sent_to(&sim, bob_addr, ATTACKER, "ACK"), 0);
    assert_eq!(
        sim.node("bob").client.pinned_key("alice"),
        Some(key(1).public_key())
    );
    // The real alice then chats normally, with no key change anywhere.
    let id = sim.send("alice", "bob", "really me");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    assert_eq!(sim.node("bob").db.texts_from("alice"), ["really me"]);
    assert_eq!(key_changes(&mut sim, "bob"), 0);

    // Even solicited (bob's probe after a restart asks alice for her key), a PUBKEY_RES
    // with another key only makes bob ask the ring.
    let mut swapped = false;
    sim.filter = Some(Box::new(move |_, _, d| {
        if d.starts_with(b"PUBKEY_RES alice") && !swapped {
            swapped = true;
            *d = format!("PUBKEY_RES alice {}", key(3).public_key().to_b64()).into_bytes();
        }
        true
    }));
    let b = sim.idx("bob");
    sim.restart(b, SERVER_A);
    let id = sim.send("bob", "alice", "after restart");
    assert!(sim.run_until(10_000, |s| delivered(s, "bob", "alice", id)));
    assert!(
        warnings(&mut sim, "bob").contains(&Warning::KeyNotConfirmed {
            user: "alice".into()
        })
    );
    assert_eq!(
        sim.node("bob").client.pinned_key("alice"),
        Some(key(1).public_key())
    );
    assert_eq!(key_changes(&mut sim, "bob"), 0);
}

#[test]
fn peer_table_is_bounded_and_keeps_pinned_contacts() {
    let mut sim = pair(true);
    let b = sim.idx("bob");
    sim.nodes[b].cfg.max_peers = 8;
    sim.restart(b, SERVER_A);
    let id = sim.send("alice", "bob", "pin me");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    let bob_addr = addr(2, 40000);
    // HELLOs naming 500 strangers leave no state at all.
    for i in 0..500 {
        sim.inject(
            ATTACKER,
            bob_addr,
            format!("HELLO user{i} ack1").into_bytes(),
        );
    }
    sim.run_for(100);
    let before = sim.node("bob").client.peer_count();
    assert!(before <= 2, "peers {before}");
    // Signed messages from 50 unknown names: lookups are limited, the table stays bounded.
    let mut rng = TestRng::new(11);
    for i in 0..50 {
        let sender = format!("user{i}");
        let forged = forged_smessage(&mut rng, &sender, "bob", key(2).public_key(), 1, &key(3));
        sim.inject(ATTACKER, bob_addr, forged);
        sim.run_for(200);
    }
    sim.run_for(15_000);
    let bob = sim.node("bob");
    assert!(bob.client.peer_count() <= 8, "{}", bob.client.peer_count());
    assert!(bob.client.counters().peers_evicted > 0);
    assert_eq!(bob.client.pinned_key("alice"), Some(key(1).public_key()));
    // alice still gets through.
    let id = sim.send("alice", "bob", "still here");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
}

#[test]
fn decryptions_are_capped_globally_beside_per_source() {
    let mut sim = pair(true);
    let mut rng = TestRng::new(3);
    let payload = seal_b64(&mut rng, key(3).public_key(), b"not for bob").unwrap();
    // 20 sources, 20 each: each under its own limit, together over the global one.
    for s in 0..20u8 {
        for _ in 0..20 {
            sim.inject(
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 3, s), 5000),
                addr(2, 40000),
                format!("MESSAGE someone {payload}").into_bytes(),
            );
        }
    }
    sim.run_for(10);
    let c = sim.node("bob").client.counters();
    assert_eq!(c.decrypt_limited_source, 0);
    assert!(c.decryptions <= 101, "{c:?}");
    assert_eq!(c.decryptions + c.decrypt_limited_global, 400);
}

#[test]
fn forged_unsigned_message_after_a_restart_is_dropped() {
    let mut sim = pair(true);
    let id = sim.send("alice", "bob", "signed hello");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    assert!(sim.node("bob").db.signers.contains("alice"));
    let b = sim.idx("bob");
    sim.restart(b, SERVER_A);
    let mut rng = TestRng::new(21);
    let payload = seal_b64(&mut rng, key(2).public_key(), b"unsigned lie").unwrap();
    let bob_addr = addr(2, 40000);
    sim.inject(
        ATTACKER,
        bob_addr,
        format!("MESSAGE alice {payload}").into_bytes(),
    );
    sim.run_for(1_000);
    assert_eq!(sim.node("bob").db.texts_from("alice"), ["signed hello"]);
    assert!(
        warnings(&mut sim, "bob")
            .iter()
            .any(|w| matches!(w, Warning::Unauthenticated { claimed, .. } if claimed == "alice"))
    );
    assert_eq!(
        sim.node("bob").client.counters().decryptions,
        0,
        "not even opened"
    );
    // alice carries on normally.
    let id = sim.send("alice", "bob", "still me");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    assert_eq!(
        sim.node("bob").db.texts_from("alice"),
        ["signed hello", "still me"]
    );
}

#[test]
fn safety_numbers_match_on_both_sides_and_follow_the_keys() {
    use flock_proto::client::SafetyNumber;
    let mut sim = pair(true);
    let id = sim.send("alice", "bob", "hi");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    let a = sim
        .node("alice")
        .client
        .safety_number("bob")
        .expect("alice's view");
    let b = sim
        .node("bob")
        .client
        .safety_number("alice")
        .expect("bob's view");
    assert_eq!(a, b, "the same on both sides");
    assert_eq!(a.digits().len(), 60);
    assert!(a.digits().bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(a.to_string().split(' ').count(), 12);
    assert_eq!(sim.node("alice").client.safety_number("carol"), None);
    // Either key changing changes it; so does either name.
    let base = SafetyNumber::new("alice", key(1).public_key(), "bob", key(2).public_key());
    assert_eq!(a, base);
    for other in [
        SafetyNumber::new("alice", key(3).public_key(), "bob", key(2).public_key()),
        SafetyNumber::new("alice", key(1).public_key(), "bob", key(3).public_key()),
        SafetyNumber::new("alicia", key(1).public_key(), "bob", key(2).public_key()),
    ] {
        assert_ne!(other, base);
        // Only one half changed: the other party's 30 digits stay.
        let (x, y) = (base.digits(), other.digits());
        assert!(
            x[..30] == y[..30] || x[30..] == y[30..] || x[..30] == y[30..] || x[30..] == y[..30]
        );
    }
}

#[test]
fn key_change_on_a_verified_contact_is_flagged_and_clears_the_mark() {
    let mut sim = pair(true);
    let id = sim.send("alice", "bob", "before");
    assert!(sim.run_until(10_000, |s| delivered(s, "alice", "bob", id)));
    let a = sim.idx("alice");
    assert!(
        !sim.nodes[a].client.set_verified("carol", true),
        "no contact"
    );
    assert!(sim.nodes[a].client.set_verified("bob", true));
    sim.drain(a);
    assert!(sim.nodes[a].db.verified.contains("bob"));
    // Survives a restart.
    sim.restart(a, SERVER_A);
    assert!(sim.nodes[a].client.is_verified("bob"));

    sim.allow_rekey = true;
    let b = sim.idx("bob");
    sim.nodes[b].key = key(4);
    sim.restart(b, SERVER_A);
    assert!(sim.run_until(10_000, |s| s.registered("bob")));
    let now = sim.now;
    sim.nodes[a].client.lookup(now, "bob");
    sim.drain(a);
    assert!(sim.run_until(10_000, |s| {
        s.nodes[a]
            .events
            .iter()
            .any(|e| matches!(e, Event::KeyChanged { verified: true, .. }))
    }));
    // Blocking: no sending, no verifying the pending key in passing.
    let now = sim.now;
    assert!(matches!(
        sim.nodes[a].client.send(now, "bob", "x"),
        Err(SendError::KeyChanged { .. })
    ));
    assert!(!sim.nodes[a].client.set_verified("bob", true));
    assert!(sim.nodes[a].client.accept_key(now, "bob"));
    sim.drain(a);
    assert!(!sim.nodes[a].client.is_verified("bob"));
    assert!(!sim.nodes[a].db.verified.contains("bob"));
    let n = sim.nodes[a].client.safety_number("bob").unwrap();
    assert_eq!(
        n,
        flock_proto::client::SafetyNumber::new(
            "alice",
            key(1).public_key(),
            "bob",
            key(4).public_key()
        )
    );
}

/// Known answer, computed independently (Python's `hashlib`, the algorithm as documented)
/// for the interop vector key under two names.
#[test]
fn safety_number_known_answer() {
    let k = key(0);
    let n = flock_proto::client::SafetyNumber::new("alice", k.public_key(), "bob", k.public_key());
    assert_eq!(
        n.digits(),
        "156019405351441618334303883301763569384351622491070903300689"
    );
    assert_eq!(
        n.to_string(),
        "15601 94053 51441 61833 43038 83301 76356 93843 51622 49107 09033 00689"
    );
}

/// With our servers, an answer must echo the `LOOKUP`'s id and carry the record's
/// signature over `user|ip|port|version|pubkey` for the name asked: even from the
/// server's own address, a record for another name or with a bad signature is refused.
#[test]
fn lookup_answers_echo_the_id_and_are_signed_for_the_name_asked() {
    let mut sim = pair(true);
    let alice_addr = addr(1, 40000);
    let now = sim.now;
    sim.nodes[0].client.lookup(now, "bob");
    sim.drain(0);
    // The LOOKUP went out; hold the server's answer back by taking the request off the
    // queue, and answer it ourselves first.
    let (_, _, lookup) = sim.queue.pop_back().expect("a lookup");
    let Ok(Frame::Lookup { user, rid }) = Frame::decode(&lookup) else {
        panic!("not a LOOKUP: {:?}", String::from_utf8_lossy(&lookup));
    };
    assert_eq!(user, "bob");
    // Wrong id, from the server's address: a stray answer.
    sim.inject(SERVER_A, alice_addr, forged_found("bob", rid ^ 1, &key(3)));
    // Right id, a validly signed record, but for another name.
    sim.inject(SERVER_A, alice_addr, forged_found("mallory", rid, &key(3)));
    // Right id and name, signature by another key than the record's.
    let mut bad = forged_found("bob", rid, &key(3));
    let text = String::from_utf8(bad.clone()).unwrap();
    let sig = sign_b64(&mut TestRng::new(1), &key(4), b"something else").unwrap();
    let mut parts: Vec<&str> = text.split(' ').collect();
    *parts.last_mut().unwrap() = &sig;
    bad = parts.join(" ").into_bytes();
    sim.inject(SERVER_A, alice_addr, bad);
    sim.run_for(10);
    let c = sim.node("alice").client.counters();
    assert_eq!((c.stray_answers, c.bad_records), (1, 2));
    assert_eq!(sim.node("alice").client.pinned_key("bob"), None);
    // The real answer is still awaited and accepted.
    let a = sim.idx("alice");
    sim.inject(sim.nodes[a].addr, SERVER_A, lookup);
    assert!(sim.run_until(5_000, |s| s.nodes[0].client.pinned_key("bob").is_some()));
    assert_eq!(
        sim.node("alice").client.pinned_key("bob"),
        Some(key(2).public_key())
    );
    assert_eq!(sim.node("alice").client.counters().lookup_fallbacks, 0);
}

#[test]
fn original_servers_are_asked_with_resolve_after_one_unanswered_lookup() {
    let mut sim = pair_on(true, true);
    let id = sim.send("alice", "bob", "through an original ring");
    assert!(sim.run_until(20_000, |s| delivered(s, "alice", "bob", id)));
    let alice = addr(1, 40000);
    let asked: Vec<String> = sim
        .log
        .iter()
        .filter(|(f, t, _)| *f == alice && *t == SERVER_A)
        .map(|(_, _, d)| {
            String::from_utf8_lossy(d)
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|v| v == "LOOKUP" || v == "RESOLVE")
        .collect();
    // One LOOKUP (unanswered), RESOLVE ever after.
    assert_eq!(asked.first().map(String::as_str), Some("LOOKUP"));
    assert_eq!(
        asked.iter().filter(|v| *v == "LOOKUP").count(),
        1,
        "{asked:?}"
    );
    assert_eq!(sim.node("alice").client.counters().lookup_fallbacks, 1);
}
