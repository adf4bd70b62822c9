//! The ring hash and the original's range split.
//!
//! The hash space is `0..HASH_MOD`. The hash is a polynomial over the username's Unicode
//! code points; it is **not** collision resistant (anyone can choose names that land on
//! a chosen node), so nothing may rely on it for security.

use std::ops::RangeInclusive;

/// Size of the hash space: `10^18 + 3` (a prime). Hashes are `0..HASH_MOD`.
pub const HASH_MOD: u64 = 1_000_000_000_000_000_003;

/// Multiplier of the polynomial hash.
pub const HASH_BASE: u64 = 911_382_629;

/// The largest hash value, `HASH_MOD - 1`: the last node's range ends here.
pub const HASH_MAX: u64 = HASH_MOD - 1;

/// The original's ring hash of a username.
///
/// `h = 0; for each code point c: h = (h * 911382629 + c) mod (10^18 + 3)`, over Unicode
/// code points (not UTF-8 bytes), computed in `u128` so nothing overflows.
///
/// ```
/// assert_eq!(flock_proto::ring_hash("a"), 97);
/// assert_eq!(flock_proto::ring_hash("alice"), 925_327_817_065_485_399);
/// ```
pub fn ring_hash(name: &str) -> u64 {
    let modulus = u128::from(HASH_MOD);
    let base = u128::from(HASH_BASE);
    let mut h: u128 = 0;
    for c in name.chars() {
        // h < 2^60 and base < 2^30, so h * base + c < 2^91: no overflow in u128.
        h = (h * base + u128::from(u32::from(c))) % modulus;
    }
    // h < HASH_MOD < 2^60 fits u64.
    h as u64
}

/// The two halves of a range split on join.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeSplit {
    /// What the old node keeps: `[lo, mid - 1]`.
    pub old: RangeInclusive<u64>,
    /// What the joining node takes: `[mid, hi]`.
    pub joiner: RangeInclusive<u64>,
}

/// The midpoint the original computes: `int((lo + hi) / 2)` with float division, in Rust
/// exactly `((lo + hi) as f64 / 2.0) as u64`.
///
/// Near `10^18` an `f64` is exact only to within 64..128, so `mid` can differ slightly
/// from the integer midpoint (and for tiny ranges can even fall outside `[lo, hi]`).
pub fn split_mid(lo: u64, hi: u64) -> u64 {
    // Saturating: the sum of two hashes (< 2^61) never overflows, other inputs are
    // clamped rather than panicking.
    (lo.saturating_add(hi) as f64 / 2.0) as u64
}

/// Splits `[lo, hi]` as the original does on `JOIN`: the joiner takes `[mid, hi]`, the
/// old node keeps `[lo, mid - 1]`, with `mid` from [`split_mid`].
///
/// Returns `None` when the split would leave either side empty (`mid <= lo` or
/// `mid > hi`): the range is too small to split.
///
/// ```
/// use flock_proto::hash::{split_range, HASH_MAX};
/// let s = split_range(0, HASH_MAX).unwrap();
/// assert_eq!(s.old, 0..=499_999_999_999_999_999);
/// assert_eq!(s.joiner, 500_000_000_000_000_000..=HASH_MAX);
/// ```
pub fn split_range(lo: u64, hi: u64) -> Option<RangeSplit> {
    if lo > hi {
        return None;
    }
    let mid = split_mid(lo, hi);
    if mid <= lo || mid > hi {
        return None;
    }
    Some(RangeSplit {
        old: lo..=mid - 1,
        joiner: mid..=hi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_as_in_the_notes() {
        // Node 1 owns everything; node 2 joins and splits it; node 3 joins and splits
        // the widest range, node 2's (wider than node 1's by 3).
        let first = split_range(0, HASH_MAX).expect("splittable");
        assert_eq!(first.old, 0..=499_999_999_999_999_999);
        assert_eq!(
            first.joiner,
            500_000_000_000_000_000..=1_000_000_000_000_000_002
        );
        let second = split_range(*first.joiner.start(), *first.joiner.end()).expect("ok");
        assert_eq!(
            second.old,
            500_000_000_000_000_000..=749_999_999_999_999_999
        );
        assert_eq!(
            second.joiner,
            750_000_000_000_000_000..=1_000_000_000_000_000_002
        );
    }

    #[test]
    fn tiny_ranges_do_not_split() {
        assert_eq!(split_range(5, 5), None);
        assert_eq!(split_range(6, 5), None);
        // int(9 / 2) = 4 = lo: the old node would keep nothing.
        assert_eq!(split_range(4, 5), None);
        assert_eq!(
            split_range(4, 6),
            Some(RangeSplit {
                old: 4..=4,
                joiner: 5..=6
            })
        );
        assert_eq!(split_range(u64::MAX, u64::MAX), None);
    }

    #[test]
    fn in_inclusive_wraps() {
        use crate::space::{in_inclusive, inclusive_width};
        assert!(in_inclusive(5, 1, 10));
        assert!(!in_inclusive(11, 1, 10));
        assert!(in_inclusive(HASH_MAX, 10, 1));
        assert!(in_inclusive(0, 10, 1));
        assert!(!in_inclusive(5, 10, 1));
        assert_eq!(inclusive_width(0, HASH_MAX), HASH_MOD);
        assert_eq!(inclusive_width(HASH_MAX, 0), 2);
    }

    #[test]
    fn small_hashes() {
        assert_eq!(ring_hash(""), 0);
        assert_eq!(ring_hash("a"), 97);
        assert_eq!(ring_hash("zz"), 122 * HASH_BASE + 122);
    }
}
