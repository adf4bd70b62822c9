//! One identity (name and key) running twice, on two addresses: the newest registration
//! wins, the older client stops re-registering and says so once, and the newer one is
//! told with a notice only our key can sign. No re-registration loop.

mod sim;

use flock_crypto::{seal_b64, sign_b64};
use flock_proto::client::{Event, smessage_signed_text};
use sim::*;

fn registers_from(sim: &Sim, from: std::net::SocketAddrV4, since: usize) -> usize {
    sim.log[since..]
        .iter()
        .filter(|(f, _, d)| *f == from && d.starts_with(b"REGISTER "))
        .count()
}

fn displaced(events: &[Event]) -> Vec<std::net::SocketAddrV4> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Displaced { at } => Some(*at),
            _ => None,
        })
        .collect()
}

fn also_running(events: &[Event]) -> Vec<std::net::SocketAddrV4> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AlsoRunning { at } => Some(*at),
            _ => None,
        })
        .collect()
}

#[test]
fn the_newest_registration_wins_and_both_are_told_once() {
    let mut sim = Sim::new();
    let (first, second) = (addr(1, 40000), addr(3, 40000));
    let old = sim.add("alice", key(1), 1, true);
    assert!(sim.run_until(10_000, |s| {
        s.nodes[old].client.server().is_some_and(|(_, r)| r)
    }));
    // The same identity (key and name) starts on another machine.
    let new = sim.add("alice", key(1), 3, true);
    assert!(sim.run_until(10_000, |s| {
        s.nodes[new].client.server().is_some_and(|(_, r)| r)
    }));
    let start = sim.log.len();
    // Ten keepalive periods (3 s each).
    sim.run_for(30_000);
    assert_eq!(displaced(&sim.nodes[old].events), [second], "said once");
    assert_eq!(sim.nodes[old].client.displaced(), Some(second));
    assert_eq!(also_running(&sim.nodes[new].events), [first], "told once");
    assert!(displaced(&sim.nodes[new].events).is_empty());
    // Nobody fights: no REGISTER from either since, the ring points at the newest.
    assert_eq!(registers_from(&sim, first, start), 0);
    assert_eq!(registers_from(&sim, second, start), 0);
    assert_eq!(sim.records["alice"].addr, second);
    // bob's message reaches the newest.
    sim.add("bob", key(2), 2, true);
    assert!(sim.run_until(10_000, |s| s.registered("bob")));
    let i = sim.idx("bob");
    let now = sim.now;
    sim.nodes[i]
        .client
        .send(now, "alice", "to the newest")
        .expect("send");
    sim.drain(i);
    assert!(sim.run_until(10_000, |s| s.nodes[new].db.texts_from("bob")
        == ["to the newest"]));
    assert!(sim.nodes[old].db.texts_from("bob").is_empty());
}

#[test]
fn a_notice_not_signed_by_our_key_is_ignored() {
    let mut sim = Sim::new();
    let me = sim.add("alice", key(1), 1, true);
    assert!(sim.run_until(10_000, |s| s.registered("alice")));
    // "alice" to alice, signed by someone else's key.
    let mut rng = TestRng::new(5);
    let payload = seal_b64(&mut rng, key(1).public_key(), b"\0flock-elsewhere").expect("seal");
    let text = smessage_signed_text("alice", "alice", 9, &payload);
    let sig = sign_b64(&mut rng, &key(2), text.as_bytes()).expect("sign");
    let forged = format!("SMESSAGE alice 9 {payload} {sig}").into_bytes();
    sim.inject(addr(9, 9999), addr(1, 40000), forged);
    sim.run_for(1_000);
    assert!(also_running(&sim.nodes[me].events).is_empty());
    assert!(sim.nodes[me].db.incoming.is_empty());
}
