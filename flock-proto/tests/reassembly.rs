//! Long texts in parts, reassembled by a peer that says `parts1`: in-process, on the
//! simulated network of `sim` (split and reassemble, parts out of order and twice, a
//! lost part sent again, a part that never comes, the buffers' bounds, a restart with
//! parts in the outbox). Peers that do not reassemble (original clients, `ack1` only)
//! are in `client.rs` (`paste_is_split_for_*`).

mod sim;

use flock_crypto::{seal_b64, sign_b64};
use flock_proto::client::{
    ClientConfig, Event, MAX_TEXT_BYTES, Status, Warning, max_text_len, smessage_signed_text,
};
use sim::*;

/// alice and bob registered, both reassembling, `tune` applied to both.
fn pair_with(tune: impl Fn(&mut ClientConfig)) -> Sim {
    let mut sim = Sim::new();
    sim.add_with("alice", key(1), 1, &tune);
    sim.add_with("bob", key(2), 2, &tune);
    assert!(sim.run_until(10_000, |s| s.registered("alice") && s.registered("bob")));
    sim
}

/// A 10,000-character paste of emoji, CJK and ASCII (about 26 KB: five parts).
fn paste() -> String {
    "😀漢字aé 🧑‍🤝‍🧑".chars().cycle().take(10_000).collect()
}

/// The id in an `SMESSAGE` or `ACK` datagram (its third field).
fn id_in(datagram: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(datagram)
        .split(' ')
        .nth(2)?
        .parse()
        .ok()
}

/// The ids of the datagrams from `from` that start with `verb`, in order.
fn ids_from(sim: &Sim, from: std::net::SocketAddrV4, verb: &[u8]) -> Vec<u64> {
    sim.log
        .iter()
        .filter(|(f, _, d)| *f == from && d.starts_with(verb))
        .filter_map(|(_, _, d)| id_in(d))
        .collect()
}

/// The `SMESSAGE` ids in datagrams from `from`, in order.
fn smessage_ids(sim: &Sim, from: std::net::SocketAddrV4) -> Vec<u64> {
    ids_from(sim, from, b"SMESSAGE ")
}

/// The ids acknowledged in `ACK`s from `from`, in order.
fn ack_ids(sim: &Sim, from: std::net::SocketAddrV4) -> Vec<u64> {
    ids_from(sim, from, b"ACK ")
}

/// Part `index` of `count` of alice's text `of` to bob, as alice would send it (the
/// documented marker inside the sealed, signed payload).
fn part_from_alice(rng: &mut TestRng, of: u64, index: u32, count: u32, text: &str) -> Vec<u8> {
    let id = of + u64::from(index);
    let plain = format!("\0flock-part {of} {index} {count}\n{text}");
    let payload = seal_b64(rng, key(2).public_key(), plain.as_bytes()).expect("seal");
    let signed = smessage_signed_text("alice", "bob", id, &payload);
    let sig = sign_b64(rng, &key(1), signed.as_bytes()).expect("sign");
    format!("SMESSAGE alice {id} {payload} {sig}").into_bytes()
}

fn incomplete(events: &[Event]) -> Vec<(u64, u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning(Warning::Incomplete {
                msg_id,
                received,
                parts,
                ..
            }) => Some((*msg_id, *received, *parts)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_paste_arrives_as_one_message_acknowledged_once_whole() {
    let mut sim = pair_with(|_| {});
    let text = paste();
    let id = sim.send("alice", "bob", &text);
    assert!(sim.run_until(30_000, |s| delivered(s, id)));
    // bob shows one message, the whole text, under the text's id.
    assert_eq!(
        sim.nodes[1].db.texts_from("alice"),
        std::slice::from_ref(&text)
    );
    assert_eq!(sim.nodes[1].db.incoming[0].2, Some(id));
    assert!(sim.nodes[1].db.incoming[0].3, "authenticated");
    // alice shows one message; it went out in parts with consecutive ids.
    let parts = sim.nodes[0].db.parts_of("bob", id);
    let max = max_text_len("alice", 256);
    assert!(parts.len() >= text.len().div_ceil(max) && parts.len() > 1);
    assert!(parts.windows(2).all(|w| w[1] == w[0] + 1) && parts[0] == id);
    assert_eq!(sim.nodes[0].db.outgoing.len(), 1);
    assert_eq!(
        sim.nodes[0].db.outgoing[&("bob".to_owned(), id)].0,
        text,
        "alice's history holds the whole text"
    );
    assert!(sim.nodes[0].db.outbox.is_empty() && sim.nodes[0].db.parts.is_empty());
    // Every part acknowledged (again when sent again), and only after the last part
    // went out.
    let (alice, bob) = (addr(1, 40000), addr(2, 40000));
    let mut acked = ack_ids(&sim, bob);
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked, parts);
    let last_part = sim
        .log
        .iter()
        .rposition(|(f, _, d)| *f == alice && d.starts_with(b"SMESSAGE "))
        .expect("parts sent");
    let first_ack = sim
        .log
        .iter()
        .position(|(f, _, d)| *f == bob && d.starts_with(b"ACK "))
        .expect("acks");
    assert!(
        first_ack > last_part,
        "no part acknowledged before the text was whole"
    );
    // The status events name the one message: queued, sent, delivered.
    let statuses = statuses_of(&sim.nodes[0].events, id);
    assert_eq!(
        statuses,
        [Status::Queued, Status::Sent, Status::Delivered],
        "one message's statuses"
    );
    assert_eq!(sim.nodes[1].client.reassembling(), (0, 0));
}

fn delivered(sim: &Sim, id: u64) -> bool {
    sim.nodes[0].db.status("bob", id) == Some(Status::Delivered)
}

#[test]
fn parts_out_of_order_and_twice_make_one_message() {
    let mut sim = pair_with(|_| {});
    let (alice, bob) = (addr(1, 40000), addr(2, 40000));
    let mut rng = TestRng::new(77);
    let of = 5_000;
    let texts = ["first ", "second ", "third"];
    for index in [2u32, 0, 2, 0] {
        let d = part_from_alice(&mut rng, of, index, 3, texts[index as usize]);
        sim.inject(alice, bob, d);
        sim.run_for(200);
    }
    assert!(
        sim.nodes[1].db.texts_from("alice").is_empty(),
        "not whole yet"
    );
    assert!(
        ack_ids(&sim, bob).is_empty(),
        "nothing acknowledged before it is whole"
    );
    assert_eq!(sim.nodes[1].client.reassembling().0, 1);
    let d = part_from_alice(&mut rng, of, 1, 3, texts[1]);
    sim.inject(alice, bob, d);
    assert!(sim.run_until(5_000, |s| s.nodes[1].db.texts_from("alice").len() == 1));
    assert_eq!(sim.nodes[1].db.texts_from("alice"), ["first second third"]);
    let mut acked = ack_ids(&sim, bob);
    acked.sort_unstable();
    assert_eq!(acked, [of, of + 1, of + 2]);
    // A part of the stored text again (an ACK was lost): acknowledged again, not shown.
    let d = part_from_alice(&mut rng, of, 2, 3, texts[2]);
    sim.inject(alice, bob, d);
    sim.run_for(500);
    assert_eq!(sim.nodes[1].db.texts_from("alice").len(), 1);
    assert_eq!(ack_ids(&sim, bob).last(), Some(&(of + 2)));
    assert_eq!(sim.nodes[1].client.reassembling(), (0, 0));
}

#[test]
fn a_lost_part_is_sent_again_and_the_text_completes() {
    let mut sim = pair_with(|_| {});
    let alice = addr(1, 40000);
    let text = paste();
    // The second part is lost the first time it is sent.
    let mut seen = 0;
    let mut second: Option<u64> = None;
    sim.filter = Some(Box::new(move |from, _, d| {
        if from != alice || !d.starts_with(b"SMESSAGE ") {
            return true;
        }
        let id = id_in(d).unwrap_or(0);
        seen += 1;
        if seen == 2 {
            second = Some(id);
            return false;
        }
        second != Some(id) || seen > 2
    }));
    let id = sim.send("alice", "bob", &text);
    assert!(sim.run_until(60_000, |s| delivered(s, id)));
    assert_eq!(sim.nodes[1].db.texts_from("alice"), [text]);
    // Parts went out more than once (the retry), yet bob shows one message.
    let parts = sim.nodes[0].db.parts_of("bob", id).len();
    assert!(smessage_ids(&sim, alice).len() > parts);
}

#[test]
fn a_part_that_never_comes_times_out_reported_never_shown_cut() {
    let mut sim = pair_with(|cfg| {
        cfg.reassembly_timeout_ms = 5_000;
        cfg.max_attempts = Some(2);
    });
    let alice = addr(1, 40000);
    let text = paste();
    let mut first_part: Option<u64> = None;
    // The first part never arrives.
    sim.filter = Some(Box::new(move |from, _, d| {
        if from != alice || !d.starts_with(b"SMESSAGE ") {
            return true;
        }
        let id = id_in(d).unwrap_or(0);
        let first = *first_part.get_or_insert(id);
        id != first
    }));
    let id = sim.send("alice", "bob", &text);
    assert!(sim.run_until(60_000, |s| !incomplete(&s.nodes[1].events).is_empty()));
    let parts = u32::try_from(sim.nodes[0].db.parts_of("bob", id).len()).unwrap();
    assert!(parts > 1);
    assert_eq!(incomplete(&sim.nodes[1].events)[0], (id, parts - 1, parts));
    assert!(
        sim.nodes[1].db.texts_from("alice").is_empty(),
        "nothing shown cut"
    );
    assert!(
        ack_ids(&sim, addr(2, 40000)).is_empty(),
        "nothing acknowledged"
    );
    assert_eq!(sim.nodes[1].client.reassembling(), (0, 0), "buffers freed");
    // alice gives up on the whole message (one failed message, no part left queued).
    assert!(sim.run_until(60_000, |s| s.nodes[0].db.status("bob", id)
        == Some(Status::Failed)));
    assert!(sim.nodes[0].db.outbox.is_empty() && sim.nodes[0].db.parts.is_empty());
    let warning = Warning::Incomplete {
        from: "alice".into(),
        msg_id: id,
        received: parts - 1,
        parts,
    };
    assert!(warning.to_string().contains("nothing of it is shown"));
}

#[test]
fn reassembly_buffers_are_bounded_per_sender_and_in_bytes() {
    let mut sim = pair_with(|cfg| {
        cfg.reassembly_per_peer = 2;
        cfg.reassembly_bytes = 3 * 1000;
    });
    let (alice, bob) = (addr(1, 40000), addr(2, 40000));
    let mut rng = TestRng::new(78);
    let chunk = "z".repeat(1000);
    // Three texts begun: the third is refused (two per sender).
    for of in [100u64, 200, 300] {
        let d = part_from_alice(&mut rng, of, 0, 2, &chunk);
        sim.inject(alice, bob, d);
        sim.run_for(300);
    }
    assert_eq!(sim.nodes[1].client.reassembling(), (2, 2000));
    assert_eq!(sim.nodes[1].client.counters().parts_refused, 1);
    // Another part of a text begun fits the bytes left; one more does not.
    let d = part_from_alice(&mut rng, 100, 1, 3, &chunk);
    sim.inject(alice, bob, d);
    sim.run_for(300);
    assert_eq!(
        sim.nodes[1].client.counters().parts_refused,
        2,
        "a part saying another count than its text is refused"
    );
    let d = part_from_alice(&mut rng, 200, 1, 2, &chunk);
    sim.inject(alice, bob, d);
    assert!(sim.run_until(5_000, |s| s.nodes[1].db.texts_from("alice").len() == 1));
    assert_eq!(sim.nodes[1].client.reassembling(), (1, 1000));
    // A text larger than MAX_TEXT_BYTES is never held.
    let big = "y".repeat(MAX_TEXT_BYTES / 2 + 1);
    let mut sim = pair_with(|_| {});
    for index in 0..2 {
        let d = part_from_alice(&mut rng, 900, index, 3, &big);
        sim.inject(alice, bob, d);
        sim.run_for(300);
    }
    assert_eq!(sim.nodes[1].client.counters().parts_refused, 1);
    assert_eq!(sim.nodes[1].client.reassembling(), (1, big.len()));
}

#[test]
fn a_restart_with_parts_in_the_outbox_still_delivers_one_message() {
    let mut sim = pair_with(|_| {});
    let bob_i = sim.idx("bob");
    let text = paste();
    // bob is away: alice's parts wait in her outbox.
    sim.nodes[bob_i].up = false;
    let id = sim.send("alice", "bob", &text);
    sim.run_for(3_000);
    assert!(!sim.nodes[0].db.parts.is_empty(), "parts queued");
    // alice restarts from her database, then bob is back.
    sim.restart(0, SERVER_A);
    sim.nodes[bob_i].up = true;
    assert!(sim.run_until(60_000, |s| delivered(s, id)));
    assert_eq!(sim.nodes[1].db.texts_from("alice"), [text]);
}
