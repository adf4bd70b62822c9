//! Ring arithmetic: the hash space, the original's ring hash and range split.

/// Size of the hash space: hashes are in `[0, MODULUS)`, i.e. `[0, 10^18 + 2]`.
pub const MODULUS: u64 = flock_proto::hash::HASH_MOD;

/// The original's ring hash: `h = (h * 911382629 + code_point) mod (10^18 + 3)` over the
/// Unicode code points of the username.
///
/// `flock_proto::ring_hash`; vectors in `testdata/interop.json`.
pub fn ring_hash(user: &str) -> u64 {
    flock_proto::ring_hash(user)
}

/// Clockwise distance from `a` to `b` on the ring.
pub fn dist(a: u64, b: u64) -> u64 {
    if b >= a { b - a } else { MODULUS - a + b }
}

/// Whether `x` lies in the half-open clockwise interval `[lo, hi)`; `lo == hi` means the
/// whole ring.
pub fn in_range(x: u64, lo: u64, hi: u64) -> bool {
    lo == hi || dist(lo, x) < dist(lo, hi)
}

/// Whether `x` lies strictly between `a` and `b` clockwise (`a == b`: anything but `a`).
pub fn between(a: u64, x: u64, b: u64) -> bool {
    if a == b {
        x != a
    } else {
        x != a && dist(a, x) < dist(a, b)
    }
}

/// The original's split of a range `[lo, hi]` (inclusive, wrapping when `hi < lo`):
/// `mid = int((lo + hi) / 2)` with float division. The joiner takes `[mid, hi]`, the old node
/// keeps `[lo, mid - 1]`. `None` when the range has a single hash.
pub fn split(lo: u64, hi: u64) -> Option<u64> {
    let width = dist(lo, hi); // number of hashes minus one
    if width == 0 {
        return None;
    }
    let hi_unwrapped = lo + width; // < 2 * MODULUS < u64::MAX
    let mut mid = ((lo + hi_unwrapped) as f64 / 2.0) as u64;
    // Float rounding may leave the interval on narrow ranges: fall back to exact arithmetic.
    if mid <= lo || mid > hi_unwrapped {
        mid = lo + width.div_ceil(2);
    }
    Some(mid % MODULUS)
}

/// Inclusive range `[lo, hi]` of a node at `id` whose successor is at `succ` (`None`: alone).
pub fn range_of(id: u64, succ: Option<u64>) -> (u64, u64) {
    match succ {
        Some(s) if s != id => (id, (s + MODULUS - 1) % MODULUS),
        _ => (id, (id + MODULUS - 1) % MODULUS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_vectors() {
        assert_eq!(ring_hash("alice"), 925327817065485399);
        assert_eq!(ring_hash("bob"), 400593152572732492);
        assert_eq!(ring_hash("mañana"), 151757044688476620);
        assert_eq!(ring_hash("😀smile"), 84200286795274125);
        assert_eq!(ring_hash("a"), 97);
    }

    #[test]
    fn split_matches_original() {
        let m1 = split(0, MODULUS - 1).unwrap();
        assert_eq!(m1, 500_000_000_000_000_000);
        let m2 = split(m1, MODULUS - 1).unwrap();
        assert_eq!(m2, 750_000_000_000_000_000);
        assert_eq!(split(5, 5), None);
        assert_eq!(split(5, 6), Some(6));
        // wrapping
        let m = split(MODULUS - 10, 9).unwrap();
        assert!(in_range(m, MODULUS - 9, 10), "{m}");
    }

    #[test]
    fn split_agrees_with_flock_proto() {
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
            if let Some(s) = flock_proto::hash::split_range(lo, hi) {
                assert_eq!(split(lo, hi), Some(*s.joiner.start()), "{lo} {hi}");
            }
        }
    }

    #[test]
    fn ranges() {
        assert!(in_range(5, 3, 7));
        assert!(!in_range(7, 3, 7));
        assert!(in_range(1, MODULUS - 2, 3));
        assert!(in_range(123, 9, 9));
        assert!(between(1, 2, 3));
        assert!(!between(1, 1, 3));
        assert!(between(5, 1, 3));
        assert!(!between(5, 4, 3));
        assert!(between(5, 6, 3));
    }
}
