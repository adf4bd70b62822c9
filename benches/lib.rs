//! Benchmarks live in the bench targets of this package; see `cargo bench -p flock-benches`.
