//! Long texts in parts: the part marker sealed inside a part's payload for a peer that
//! reassembles ([`FEATURE_PARTS1`](super::FEATURE_PARTS1)), and the bounded reassembly
//! of incoming parts.
//!
//! A marked part's plaintext is `"\0flock-part <of> <index> <count>\n"` followed by the
//! part's text: `of` is the text's id (its first part's id), part `index` (0-based) has
//! the id `of + index`, `count` is at least 2. The marker is inside the sealed and signed
//! payload, so nobody but the sender can make or change one; an original client, or a
//! peer without reassembly, never gets a marked payload.

use std::collections::BTreeMap;

use super::MAX_TEXT_BYTES;

/// What starts a marked part's plaintext.
const MARKER: &str = "\u{0}flock-part ";

/// Most parts a text may have: 64 KiB in parts of at least 1 KiB (a part fits an
/// original client's datagram, some 5,800 bytes).
pub(super) const MAX_PARTS: u32 = 64;

/// Which part of which text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) of: u64,
    pub(super) index: u32,
    pub(super) count: u32,
}

impl Mark {
    /// The part's own message id; `None` if it would overflow.
    pub(super) fn id(self) -> Option<u64> {
        self.of.checked_add(u64::from(self.index))
    }

    /// Whether the mark describes a possible part.
    fn valid(self) -> bool {
        (2..=MAX_PARTS).contains(&self.count) && self.index < self.count && self.id().is_some()
    }
}

/// `text` with its part marker in front.
pub(super) fn marked(mark: Mark, text: &str) -> String {
    format!("{MARKER}{} {} {}\n{text}", mark.of, mark.index, mark.count)
}

/// A plaintext read back: `None` for an ordinary message, `Some(Err(()))` for a marker
/// that does not parse or describes no possible part (dropped), else the mark and text.
pub(super) fn unmark(plaintext: &str) -> Option<Result<(Mark, &str), ()>> {
    let rest = plaintext.strip_prefix(MARKER)?;
    let parsed = (|| {
        let (head, text) = rest.split_once('\n')?;
        let mut fields = head.split(' ');
        let mark = Mark {
            of: fields.next()?.parse().ok()?,
            index: fields.next()?.parse().ok()?,
            count: fields.next()?.parse().ok()?,
        };
        (fields.next().is_none() && mark.valid() && !text.is_empty()).then_some((mark, text))
    })();
    Some(parsed.ok_or(()))
}

/// The limits of [`Reassembly`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Texts in progress per sender.
    pub(super) per_peer: usize,
    /// Bytes held, all senders together.
    pub(super) bytes: usize,
}

/// What [`Reassembly::add`] made of a part.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Added {
    /// Kept; more parts are missing.
    Pending,
    /// This part was here already.
    Duplicate,
    /// The last missing part: the whole text and every part's id, in order.
    Complete { text: String, ids: Vec<u64> },
    /// Dropped: the buffers are full, or the part contradicts the ones before it.
    Refused,
}

#[derive(Debug)]
struct Partial {
    count: u32,
    parts: BTreeMap<u32, String>,
    bytes: usize,
    started_ms: u64,
}

/// Incoming texts whose parts are arriving, per `(sender, text id)`, bounded per sender
/// and in bytes overall.
#[derive(Debug, Default)]
pub(super) struct Reassembly {
    partial: BTreeMap<(String, u64), Partial>,
    bytes: usize,
}

impl Reassembly {
    /// One part of `sender`'s text, verified and opened.
    pub(super) fn add(
        &mut self,
        now_ms: u64,
        sender: &str,
        mark: Mark,
        text: &str,
        limits: Limits,
    ) -> Added {
        let key = (sender.to_owned(), mark.of);
        if !self.partial.contains_key(&key) {
            let of_sender = self
                .partial
                .range((sender.to_owned(), 0)..=(sender.to_owned(), u64::MAX))
                .count();
            if of_sender >= limits.per_peer {
                return Added::Refused;
            }
            self.partial.insert(
                key.clone(),
                Partial {
                    count: mark.count,
                    parts: BTreeMap::new(),
                    bytes: 0,
                    started_ms: now_ms,
                },
            );
        }
        let Some(p) = self.partial.get_mut(&key) else {
            return Added::Refused;
        };
        if p.count != mark.count {
            return Added::Refused;
        }
        if p.parts.contains_key(&mark.index) {
            return Added::Duplicate;
        }
        if p.bytes + text.len() > MAX_TEXT_BYTES || self.bytes + text.len() > limits.bytes {
            if p.parts.is_empty() {
                self.partial.remove(&key);
            }
            return Added::Refused;
        }
        p.parts.insert(mark.index, text.to_owned());
        p.bytes += text.len();
        self.bytes += text.len();
        if p.parts.len() < p.count as usize {
            return Added::Pending;
        }
        let Some(done) = self.partial.remove(&key) else {
            return Added::Refused;
        };
        self.bytes -= done.bytes;
        let ids = (0..u64::from(done.count))
            .map(|i| mark.of.saturating_add(i))
            .collect();
        Added::Complete {
            text: done.parts.into_values().collect(),
            ids,
        }
    }

    /// Drops the texts whose time ran out: `(sender, text id, parts received, parts)`.
    pub(super) fn expire(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<(String, u64, u32, u32)> {
        let expired: Vec<(String, u64)> = self
            .partial
            .iter()
            .filter(|(_, p)| p.started_ms.saturating_add(timeout_ms) <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in expired {
            if let Some(p) = self.partial.remove(&key) {
                self.bytes -= p.bytes;
                let received = u32::try_from(p.parts.len()).unwrap_or(u32::MAX);
                out.push((key.0, key.1, received, p.count));
            }
        }
        out
    }

    /// When the oldest text in progress runs out of time.
    pub(super) fn deadline(&self, timeout_ms: u64) -> Option<u64> {
        self.partial
            .values()
            .map(|p| p.started_ms.saturating_add(timeout_ms))
            .min()
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Texts in progress.
    pub(super) fn len(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_peer: 2,
        bytes: 100,
    };

    fn mark(of: u64, index: u32, count: u32) -> Mark {
        Mark { of, index, count }
    }

    #[test]
    fn marks_round_trip_and_bad_ones_are_refused() {
        let m = mark(u64::MAX - 2, 2, 3);
        let text = marked(m, "héllo\nworld");
        assert_eq!(unmark(&text), Some(Ok((m, "héllo\nworld"))));
        assert_eq!(unmark("hello"), None);
        assert_eq!(unmark("flock-part 1 0 2\nx"), None);
        for bad in [
            "\0flock-part 1 0 1\nx",
            "\0flock-part 1 2 2\nx",
            "\0flock-part 1 0 65\nx",
            "\0flock-part 1 0 2\n",
            "\0flock-part 1 0 2 9\nx",
            "\0flock-part x 0 2\nx",
            "\0flock-part 1 0 2",
        ] {
            assert_eq!(unmark(bad), Some(Err(())), "{bad:?}");
        }
        assert_eq!(unmark(&marked(mark(u64::MAX, 1, 2), "x")), Some(Err(())));
    }

    #[test]
    fn parts_in_any_order_make_the_text_once() {
        let mut r = Reassembly::default();
        assert_eq!(r.add(0, "a", mark(10, 2, 3), "c", LIMITS), Added::Pending);
        assert_eq!(r.add(0, "a", mark(10, 0, 3), "a", LIMITS), Added::Pending);
        assert_eq!(r.add(0, "a", mark(10, 0, 3), "a", LIMITS), Added::Duplicate);
        assert_eq!(r.bytes(), 2);
        assert_eq!(
            r.add(0, "a", mark(10, 1, 3), "b", LIMITS),
            Added::Complete {
                text: "abc".into(),
                ids: vec![10, 11, 12]
            }
        );
        assert_eq!((r.len(), r.bytes()), (0, 0));
        // A part saying another count than its text's first part: refused.
        assert_eq!(r.add(0, "a", mark(20, 0, 3), "a", LIMITS), Added::Pending);
        assert_eq!(r.add(0, "a", mark(20, 1, 4), "b", LIMITS), Added::Refused);
    }

    #[test]
    fn buffers_are_bounded_per_sender_and_in_bytes() {
        let mut r = Reassembly::default();
        assert_eq!(r.add(0, "a", mark(1, 0, 2), "x", LIMITS), Added::Pending);
        assert_eq!(r.add(0, "a", mark(5, 0, 2), "x", LIMITS), Added::Pending);
        assert_eq!(r.add(0, "a", mark(9, 0, 2), "x", LIMITS), Added::Refused);
        assert_eq!(r.add(0, "b", mark(9, 0, 2), "x", LIMITS), Added::Pending);
        let big = "y".repeat(98);
        assert_eq!(r.add(0, "c", mark(1, 0, 2), &big, LIMITS), Added::Refused);
        assert_eq!((r.len(), r.bytes()), (3, 3));
        // Time runs out for what started first.
        assert_eq!(r.add(5, "c", mark(1, 0, 2), "z", LIMITS), Added::Pending);
        assert_eq!(r.deadline(10), Some(10));
        let mut gone = r.expire(10, 10);
        gone.sort();
        assert_eq!(
            gone,
            vec![
                ("a".to_owned(), 1, 1, 2),
                ("a".to_owned(), 5, 1, 2),
                ("b".to_owned(), 9, 1, 2)
            ]
        );
        assert_eq!((r.len(), r.bytes(), r.deadline(10)), (1, 1, Some(15)));
    }
}
