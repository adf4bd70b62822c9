//! A small harness for the node's unit tests: one node fed by hand, or a simulated ring.

use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::Frame;

use crate::sim::{NetConfig, Sim};
use crate::{Action, Config, Event, FakeVerifier, Node};

/// Milliseconds as a [`Duration`].
pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A node at `Sim::addr(0)` with `config`, seed 7, started at 0, its start-up actions
/// drained.
pub(super) fn node_with(config: Config) -> Node {
    let mut n = Node::new(
        config,
        Sim::addr(0),
        7,
        Duration::ZERO,
        Box::new(FakeVerifier),
    );
    drain(&mut n);
    n
}

/// A founder alone in its ring.
pub(super) fn founder() -> Node {
    node_with(Config::default())
}

/// Every pending action.
pub(super) fn drain(n: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

/// The datagrams among `actions`.
pub(super) fn sends(actions: &[Action]) -> Vec<(SocketAddrV4, Frame<'static>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, frame } => Some((*to, frame.clone())),
            _ => None,
        })
        .collect()
}

/// The events among `actions`.
pub(super) fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A simulated ring of `n` nodes (seed `seed`), joined one by one and settled.
pub(super) fn ring(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default(), Config::default());
    sim.start(Sim::addr(0), Vec::new());
    for i in 1..n {
        sim.start(Sim::addr(i), vec![Sim::addr(0)]);
        sim.run_for(ms(300)).expect("joins");
    }
    sim.run_until_ideal(Duration::from_secs(30), ms(200))
        .expect("the ring settles");
    sim
}

/// The sum of counter `name` over the nodes `nodes` (numbers for [`Sim::addr`]).
pub(super) fn counter_total(sim: &Sim, nodes: &[usize], name: &str) -> u64 {
    nodes
        .iter()
        .filter_map(|&i| sim.node(Sim::addr(i)))
        .map(|n| n.counters().get(name))
        .sum()
}

/// A ring of `n` (seed `seed`) holding `users` registered records, all acknowledged.
pub(super) fn ring_with_users(seed: u64, n: usize, users: usize) -> Sim {
    let mut sim = ring(seed, n);
    for i in 0..users {
        sim.register(Sim::addr(i % n), Sim::make_record(&format!("user{i}"), 1));
    }
    sim.run_for(ms(2000)).expect("runs");
    assert_eq!(sim.acked().len(), users);
    sim
}
