//! The network: queued datagrams and wake-ups, delivery, and the codec round trip.

use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::ring::{self, RingFrame};
use flock_proto::{Frame, OkReply};

use super::traffic::CLIENT_VERB;
use super::{Sim, Violation};
use crate::{Action, Node, StoreOp, Table};

/// Network behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way latency.
    pub latency_min: Duration,
    /// Largest one-way latency (a spread reorders datagrams).
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Round-trip ring frames through the text codec.
    pub codec: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            loss: 0.0,
            dup: 0.0,
            codec: true,
        }
    }
}

/// What a queued event does.
#[derive(Debug)]
pub(super) enum Ev {
    /// A datagram arrives (the frame travels in the event, boxed so that the heap moves
    /// small entries).
    Deliver {
        to: SocketAddrV4,
        from: SocketAddrV4,
        frame: Box<Frame<'static>>,
    },
    /// A node's timer is due.
    Wake {
        to: SocketAddrV4,
        /// Incarnation the wake-up is for.
        inc: u64,
    },
}

/// A queued event, ordered by (time, sequence number) only: the queue pops the earliest,
/// ties in the order they were queued.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) at: Duration,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed: [`BinaryHeap`](std::collections::BinaryHeap) is a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Sim {
    pub(super) fn enqueue(&mut self, from: SocketAddrV4, to: SocketAddrV4, frame: Frame<'static>) {
        if self.chance(self.net.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.chance(self.net.dup) { 2 } else { 1 };
        let mut frame = Some(frame);
        for copy in 0..copies {
            let f = if copy + 1 == copies {
                frame.take()
            } else {
                frame.clone()
            };
            let Some(f) = f else { break };
            let span = self
                .net
                .latency_max
                .saturating_sub(self.net.latency_min)
                .as_micros() as u64;
            let lat = self.net.latency_min + Duration::from_micros(self.rand(span + 1));
            let seq = self.seq;
            self.seq += 1;
            self.queue.push(Queued {
                at: self.now + lat,
                seq,
                ev: Ev::Deliver {
                    to,
                    from,
                    frame: Box::new(f),
                },
            });
        }
    }

    fn schedule_wake(&mut self, addr: SocketAddrV4) {
        let Some(h) = self.hosts.get_mut(&addr) else {
            return;
        };
        let Some(n) = h.node.as_ref() else {
            return;
        };
        let Some(t) = n.poll_timeout() else {
            return;
        };
        let t = t.max(self.now);
        if h.wake.is_some_and(|w| w <= t && w >= self.now) {
            return;
        }
        h.wake = Some(t);
        let inc = h.inc;
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Queued {
            at: t,
            seq,
            ev: Ev::Wake { to: addr, inc },
        });
    }

    /// Performs every action of `addr`'s node; `before` is its [`ring_shape`] before the
    /// input that caused them.
    pub(super) fn drain(&mut self, addr: SocketAddrV4, before: u64) {
        if self.node(addr).map(ring_shape) != Some(before) {
            self.ring_dirty = true;
        }
        while let Some(a) = self.node_mut(addr).and_then(|n| n.poll_action()) {
            match a {
                Action::Send { to, frame } => {
                    if let Frame::Ring(rf) = &frame {
                        self.traffic.count(rf.verb());
                    } else {
                        self.traffic.count(CLIENT_VERB);
                    }
                    let frame = if self.net.codec {
                        codec_roundtrip(frame)
                    } else {
                        Some(frame)
                    };
                    match frame {
                        Some(f) => self.enqueue(addr, to, f),
                        None => panic!("codec round trip failed for a frame from {addr}"),
                    }
                }
                Action::Store(op) => {
                    if let Some(h) = self.hosts.get_mut(&addr) {
                        match op {
                            StoreOp::Put { record, table } => {
                                h.stored.insert(record.user.clone(), (record, table));
                            }
                            StoreOp::Delete { user } => {
                                h.stored.remove(&user);
                            }
                            StoreOp::DropReplicas { owner } => {
                                h.stored.retain(|_, (_, t)| {
                                    *t != Table::Replica {
                                        owner: owner.clone(),
                                    }
                                });
                            }
                        }
                    }
                }
                Action::Event(_) => {}
            }
        }
        self.schedule_wake(addr);
    }

    /// Processes the next event. `false` when the queue is empty.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let Some(Queued { at: t, ev, .. }) = self.queue.pop() else {
            return Ok(false);
        };
        self.now = self.now.max(t);
        self.events += 1;
        let touched = match ev {
            Ev::Deliver { to, from, frame: f } => {
                if let Some(until) = self.blocked.get(&(from, to)).copied() {
                    if until > self.now {
                        self.dropped += 1;
                        return Ok(true);
                    }
                    self.blocked.remove(&(from, to));
                }
                if self.trace.is_some_and(|x| x == to || x == from) {
                    eprintln!("{:?} {from} -> {to}: {f:?}", self.now);
                }
                if let Some(h) = self.hosts.get_mut(&to) {
                    let now = self.now;
                    let Some(n) = h.node.as_deref_mut() else {
                        self.dropped += 1;
                        return Ok(true);
                    };
                    let before = ring_shape(n);
                    n.handle_datagram(now, from, *f);
                    self.delivered += 1;
                    self.drain(to, before);
                    Some(to)
                } else if let Some(v) = self.outside.get_mut(&to) {
                    self.delivered += 1;
                    v.push((from, *f));
                    None
                } else {
                    self.delivered += 1;
                    self.client_receives(to, *f);
                    None
                }
            }
            Ev::Wake { to, inc } => {
                let now = self.now;
                let ok = self
                    .hosts
                    .get(&to)
                    .is_some_and(|h| h.inc == inc && h.node.is_some());
                if !ok {
                    return Ok(true);
                }
                if let Some(h) = self.hosts.get_mut(&to) {
                    if h.wake == Some(t) {
                        h.wake = None;
                    }
                }
                let Some(n) = self.hosts.get_mut(&to).and_then(|h| h.node.as_deref_mut()) else {
                    return Ok(true);
                };
                let before = ring_shape(n);
                if n.poll_timeout().is_some_and(|d| d <= now) {
                    n.handle_timeout(now);
                }
                self.drain(to, before);
                Some(to)
            }
        };
        self.steps += 1;
        if let Some(a) = touched {
            self.check_local(a)?;
        }
        // The ring check is a function of the members and their successor lists only:
        // skipped when none of them changed since the last one.
        if self.check_every > 0 && self.steps.is_multiple_of(self.check_every) && self.ring_dirty {
            self.ring_dirty = false;
            self.check_one_ring()?;
        }
        Ok(true)
    }

    pub(super) fn client_receives(&mut self, client: SocketAddrV4, f: Frame<'static>) {
        if let Some(rec) = self.inflight.remove(&client) {
            if matches!(f, Frame::Ok(OkReply::Registered { .. })) {
                let newer = self
                    .acked
                    .get(&rec.user)
                    .is_none_or(|old| old.version <= rec.version);
                if newer {
                    self.acked.insert(rec.user.clone(), rec);
                }
            }
        }
        let v = self.inbox.entry(client).or_default();
        if v.len() < 16 {
            v.push(f);
        }
    }
}

/// What the ring check depends on at one node, folded: membership and the successor list.
/// (Two shapes that fold alike only postpone a check to the next change.)
pub(super) fn ring_shape(n: &Node) -> u64 {
    n.successors()
        .iter()
        .fold(u64::from(n.is_member()), |acc, p| {
            acc.rotate_left(7)
                ^ p.id
                ^ u64::from(u32::from(*p.addr.ip())) << 16
                ^ u64::from(p.addr.port())
        })
}

/// Encodes a ring frame to text and parses it back (other frames pass through).
fn codec_roundtrip(f: Frame<'static>) -> Option<Frame<'static>> {
    match f {
        Frame::Ring(rf) => {
            let mut buf = Vec::new();
            rf.encode(&mut buf);
            if buf.len() > ring::MAX_DATAGRAM {
                return None;
            }
            let text = std::str::from_utf8(&buf).ok()?;
            let rest = text.strip_prefix("RING ")?;
            let back: RingFrame = ring::decode(rest).ok()?;
            if back != rf {
                return None;
            }
            Some(Frame::Ring(back))
        }
        other => Some(other),
    }
}
