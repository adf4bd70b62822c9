//! Server database: durable REGISTER-style writes and point lookups.
//!
//! Writes are `Put`s of signed-size records (604-character public key, 344-character
//! signature) into a file database in WAL mode with `synchronous=FULL`, where every
//! commit syncs. The baseline applies one record per transaction (what a driver that
//! commits every frame would get); the others batch 64 and 512 records per transaction.
//! Throughput is reported in records per second, so the ratios read directly.
//!
//! Run: `cargo bench -p flock-benches --bench store`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flock_chord::{StoreOp, Table};
use flock_proto::Record;
use flock_store::ServerDb;

/// Records in the database for the lookup benchmark.
const LOOKUP_RECORDS: u32 = 10_000;

fn record(n: u64) -> Record {
    Record {
        user: format!("user{n:010}"),
        ip: [10, (n >> 16) as u8, (n >> 8) as u8, n as u8].into(),
        port: 1024 + (n % 60_000) as u16,
        version: 1_700_000_000_000_000_000 + n,
        pubkey_b64: "K".repeat(604),
        sig_b64: "S".repeat(344),
    }
}

fn put(n: u64) -> StoreOp {
    StoreOp::Put {
        record: record(n),
        table: Table::Owned,
    }
}

fn durable_writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/register_durable");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for per_tx in [1u64, 64, 512] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = ServerDb::open(dir.path().join("node.db")).expect("open");
        assert_eq!(db.journal_mode().expect("journal mode"), "wal");
        let mut next = 0u64;
        group.throughput(Throughput::Elements(per_tx));
        let name = if per_tx == 1 { "autocommit" } else { "batched" };
        group.bench_function(BenchmarkId::new(name, per_tx), |b| {
            b.iter_batched(
                || {
                    let ops: Vec<StoreOp> = (next..next + per_tx).map(put).collect();
                    next += per_tx;
                    ops
                },
                |ops| db.apply(black_box(&ops)).expect("apply"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut db = ServerDb::open(dir.path().join("node.db")).expect("open");
    let ops: Vec<StoreOp> = (0..u64::from(LOOKUP_RECORDS)).map(put).collect();
    db.apply(&ops).expect("populate");
    let users: Vec<String> = (0..u64::from(LOOKUP_RECORDS))
        .map(|n| record(n).user)
        .collect();

    let mut group = c.benchmark_group("store/lookup");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            // Stride through the keys so successive lookups touch different pages.
            i = (i + 7919) % users.len();
            black_box(db.get(black_box(&users[i])).expect("get"))
        });
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| black_box(db.get(black_box("nosuchuser")).expect("get")));
    });
    group.throughput(Throughput::Elements(u64::from(LOOKUP_RECORDS)));
    group.sample_size(10);
    group.bench_function("load_10k", |b| {
        b.iter(|| black_box(db.load().expect("load")).len());
    });
    group.finish();
}

criterion_group!(benches, durable_writes, lookups);
criterion_main!(benches);
