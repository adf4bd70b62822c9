//! The ring hash against the vectors made with the original (`testdata/interop.json`).
//!
//! The file lives in the workspace, outside this crate, so a `cargo package` tarball of
//! flock-proto does not contain it; these tests run from the workspace only.

use flock_proto::hash::{HASH_BASE, HASH_MAX, split_range};
use flock_proto::{HASH_MOD, ring_hash};

const INTEROP: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/interop.json"
));

#[test]
fn interop_hash_cases() {
    let json: serde_json::Value = serde_json::from_str(INTEROP).expect("valid JSON");
    let hash = &json["hash"];
    assert_eq!(hash["mod"].as_str(), Some(HASH_MOD.to_string().as_str()));
    assert_eq!(hash["base"].as_u64(), Some(HASH_BASE));
    let cases = hash["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "expected the full vector set");
    for case in cases {
        let name = case["username"].as_str().expect("username");
        let want: u64 = case["hash"]
            .as_str()
            .expect("hash as a decimal string")
            .parse()
            .expect("decimal");
        assert_eq!(ring_hash(name), want, "ring_hash({name:?})");
    }
}

#[test]
fn three_node_split_from_the_notes() {
    // Node 2 joins node 1 (which owns everything); node 3 joins the widest range.
    let a = split_range(0, HASH_MAX).expect("splits");
    let b = split_range(*a.joiner.start(), *a.joiner.end()).expect("splits");
    let ranges = [a.old.clone(), b.old.clone(), b.joiner.clone()];
    assert_eq!(
        ranges,
        [
            0..=499_999_999_999_999_999,
            500_000_000_000_000_000..=749_999_999_999_999_999,
            750_000_000_000_000_000..=1_000_000_000_000_000_002,
        ]
    );
}

mod properties {
    use flock_proto::hash::{HASH_MAX, split_mid, split_range};
    use flock_proto::space::inclusive_width as range_width;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn split_partitions_the_range(a in 0..=HASH_MAX, b in 0..=HASH_MAX) {
            let (lo, hi) = (a.min(b), a.max(b));
            match split_range(lo, hi) {
                Some(s) => {
                    prop_assert_eq!(*s.old.start(), lo);
                    prop_assert_eq!(*s.joiner.end(), hi);
                    prop_assert_eq!(*s.old.end() + 1, *s.joiner.start());
                    prop_assert_eq!(*s.joiner.start(), split_mid(lo, hi));
                    prop_assert_eq!(
                        range_width(*s.old.start(), *s.old.end())
                            + range_width(*s.joiner.start(), *s.joiner.end()),
                        range_width(lo, hi)
                    );
                }
                None => {
                    let mid = split_mid(lo, hi);
                    prop_assert!(mid <= lo || mid > hi);
                }
            }
        }

        #[test]
        fn wide_ranges_always_split(lo in 0..=HASH_MAX / 2, width in 1_000u64..=HASH_MAX / 2) {
            // Float rounding near 10^18 is at most 128: any range wider than that splits.
            prop_assert!(split_range(lo, lo + width).is_some());
        }
    }
}
