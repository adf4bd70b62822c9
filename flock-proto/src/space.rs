//! The ring's hash space and its intervals: every interval rule of Flock lives here, once.
//!
//! Hashes are `0..MODULUS` ([`crate::HASH_MOD`], `10^18 + 3`) and intervals run clockwise,
//! wrapping past [`HASH_MAX`]. Each function's name says which ends it includes:
//!
//! | function | interval | `lo == hi` means |
//! |---|---|---|
//! | [`in_inclusive`]`(x, lo, hi)` | `[lo, hi]` | the single hash `lo` |
//! | [`in_half_open`]`(x, lo, end)` | `[lo, end)` | the whole ring |
//! | [`strictly_between`]`(a, x, b)` | `(a, b)` | everything but `a` |
//!
//! A node at `id` whose successor is at `s` owns the inclusive range `[id, s - 1]`
//! ([`owned_range`]); ranges on the wire are inclusive, as in the original.

pub use crate::hash::{HASH_MAX, HASH_MOD as MODULUS};

/// Clockwise distance from `a` to `b` (both in `0..MODULUS`).
///
/// ```
/// use flock_proto::space::{dist, MODULUS};
/// assert_eq!(dist(3, 7), 4);
/// assert_eq!(dist(MODULUS - 1, 1), 2);
/// ```
#[must_use]
pub fn dist(a: u64, b: u64) -> u64 {
    if b >= a { b - a } else { MODULUS - a + b }
}

/// Whether `x` lies in the inclusive clockwise interval `[lo, hi]`; when `lo > hi` the
/// interval wraps past [`HASH_MAX`] (`x >= lo || x <= hi`).
///
/// ```
/// use flock_proto::space::{in_inclusive, HASH_MAX};
/// assert!(in_inclusive(7, 3, 7));
/// assert!(in_inclusive(0, HASH_MAX - 1, 2));
/// assert!(!in_inclusive(3, HASH_MAX - 1, 2));
/// ```
#[must_use]
pub fn in_inclusive(x: u64, lo: u64, hi: u64) -> bool {
    if lo <= hi {
        lo <= x && x <= hi
    } else {
        x >= lo || x <= hi
    }
}

/// Whether `x` lies in the half-open clockwise interval `[lo, end)`; `lo == end` is the
/// whole ring.
///
/// ```
/// use flock_proto::space::in_half_open;
/// assert!(in_half_open(5, 3, 7));
/// assert!(!in_half_open(7, 3, 7));
/// assert!(in_half_open(123, 9, 9));
/// ```
#[must_use]
pub fn in_half_open(x: u64, lo: u64, end: u64) -> bool {
    lo == end || dist(lo, x) < dist(lo, end)
}

/// Whether `x` lies strictly between `a` and `b` clockwise (`a == b`: anything but `a`):
/// Chord's `(a, b)`.
///
/// ```
/// use flock_proto::space::strictly_between;
/// assert!(strictly_between(1, 2, 3));
/// assert!(!strictly_between(1, 1, 3));
/// assert!(strictly_between(5, 1, 3));
/// ```
#[must_use]
pub fn strictly_between(a: u64, x: u64, b: u64) -> bool {
    if a == b {
        x != a
    } else {
        x != a && dist(a, x) < dist(a, b)
    }
}

/// How many hashes the inclusive interval `[lo, hi]` holds (wrapping when `lo > hi`);
/// used to pick the widest range on join.
#[must_use]
pub fn inclusive_width(lo: u64, hi: u64) -> u64 {
    if lo <= hi {
        hi - lo + 1
    } else {
        (MODULUS - lo).saturating_add(hi + 1)
    }
}

/// The inclusive range `[id, succ - 1]` a node at `id` owns when its successor is at
/// `succ` (`None` or itself: alone, the whole ring `[id, id - 1]`).
#[must_use]
pub fn owned_range(id: u64, succ: Option<u64>) -> (u64, u64) {
    match succ {
        Some(s) if s != id => (id, (s + MODULUS - 1) % MODULUS),
        _ => (id, (id + MODULUS - 1) % MODULUS),
    }
}

/// The original's split point of an inclusive range `[lo, hi]`, wrapping when `hi < lo`:
/// `mid = int((lo + hi) / 2)` with float division on the unwrapped range
/// ([`crate::hash::split_mid`]). The joiner takes `[mid, hi]`, the old node keeps
/// `[lo, mid - 1]`. `None` when the range holds a single hash.
#[must_use]
pub fn split_point(lo: u64, hi: u64) -> Option<u64> {
    let width = dist(lo, hi); // number of hashes minus one
    if width == 0 {
        return None;
    }
    let hi_unwrapped = lo + width; // < 2 * MODULUS < u64::MAX
    let mut mid = crate::hash::split_mid(lo, hi_unwrapped);
    // Float rounding may leave the interval on narrow ranges: fall back to exact arithmetic.
    if mid <= lo || mid > hi_unwrapped {
        mid = lo + width.div_ceil(2);
    }
    Some(mid % MODULUS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_original() {
        let m1 = split_point(0, MODULUS - 1).unwrap();
        assert_eq!(m1, 500_000_000_000_000_000);
        let m2 = split_point(m1, MODULUS - 1).unwrap();
        assert_eq!(m2, 750_000_000_000_000_000);
        assert_eq!(split_point(5, 5), None);
        assert_eq!(split_point(5, 6), Some(6));
        let m = split_point(MODULUS - 10, 9).unwrap();
        assert!(in_half_open(m, MODULUS - 9, 10), "{m}");
    }

    #[test]
    fn split_point_agrees_with_split_range() {
        let mut x: u64 = 12345;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = (x >> 4) % MODULUS;
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = (x >> 4) % MODULUS;
            let (lo, hi) = (a.min(b), a.max(b));
            if let Some(s) = crate::hash::split_range(lo, hi) {
                assert_eq!(split_point(lo, hi), Some(*s.joiner.start()), "{lo} {hi}");
            }
        }
    }

    #[test]
    fn inclusive_and_half_open_agree() {
        // [lo, hi] == [lo, hi + 1) whenever the half-open form is not the whole ring.
        for (lo, hi) in [(3u64, 7u64), (MODULUS - 2, 3), (0, HASH_MAX - 1), (9, 9)] {
            let end = (hi + 1) % MODULUS;
            for x in [0, 1, 2, 3, 4, 7, 8, 9, 10, MODULUS - 2, MODULUS - 1] {
                assert_eq!(
                    in_inclusive(x, lo, hi),
                    in_half_open(x, lo, end),
                    "{x} {lo} {hi}"
                );
            }
        }
        assert_eq!(inclusive_width(0, HASH_MAX), MODULUS);
        assert_eq!(inclusive_width(HASH_MAX, 0), 2);
        assert_eq!(owned_range(10, Some(20)), (10, 19));
        assert_eq!(owned_range(10, None), (10, 9));
        assert_eq!(owned_range(0, Some(0)), (0, HASH_MAX));
    }
}
