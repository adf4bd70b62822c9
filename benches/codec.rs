//! Cost of decoding and encoding typical frames (a signed REGISTER with an RSA-2048 key,
//! a RESOLVE, a 1 KiB-payload MESSAGE, a ring `RING RECORDS` chunk of 16 signed records),
//! each next to a baseline over the same datagram:
//! `str::split(' ')` collecting the fields (decode) and joining them back with spaces
//! (encode). Both sides of a pair start from the same bytes; decode includes the UTF-8
//! check on both sides.
//!
//! Run: `cargo bench -p flock-benches --bench codec`. Compare ratios within one run (the
//! machines are noisy).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use flock_proto::Frame;

/// Base64-alphabet filler of exactly `len` characters.
fn b64(len: usize, seed: u8) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len)
        .map(|i| char::from(ALPHABET[(i * 7 + usize::from(seed)) % 64]))
        .collect()
}

fn register_datagram() -> Vec<u8> {
    let key = b64(flock_proto::limits::PUBKEY_B64_LEN_RSA2048, 1);
    let sig = b64(flock_proto::limits::SIG_B64_LEN, 2);
    format!("REGISTER alice 192.168.1.20 40001 1732550400123456789 {key} {sig}").into_bytes()
}

fn resolve_datagram() -> Vec<u8> {
    b"RESOLVE alice".to_vec()
}

fn message_datagram() -> Vec<u8> {
    // A sealed 1 KiB text: 2 + 256 + 12 + 1024 + 16 bytes, base64.
    let payload = b64((2 + 256 + 12 + 1024 + 16_usize).div_ceil(3) * 4, 3);
    format!("MESSAGE alice {payload}").into_bytes()
}

/// A ring record transfer chunk: 16 signed records with RSA-2048-sized keys and signatures.
fn ring_records_datagram() -> Vec<u8> {
    let key = b64(flock_proto::limits::PUBKEY_B64_LEN_RSA2048, 4);
    let sig = b64(flock_proto::limits::SIG_B64_LEN, 5);
    let mut text = String::from("RING RECORDS 7243991 0 1 16");
    for i in 0..16 {
        text.push_str(&format!(
            " user{i} 10.0.{i}.7 {} 17325504001234567{i:02} {key} {sig}",
            40000 + i
        ));
    }
    text.into_bytes()
}

fn split_fields(datagram: &[u8]) -> Vec<&str> {
    std::str::from_utf8(datagram)
        .expect("utf-8")
        .split(' ')
        .collect()
}

fn join_fields(fields: &[&str], out: &mut Vec<u8>) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(field.as_bytes());
    }
}

fn pair(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, datagram: &[u8]) {
    group.throughput(Throughput::Bytes(datagram.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| Frame::decode(black_box(datagram)).expect("decodes"))
    });
    group.bench_function("decode_baseline_split", |b| {
        b.iter(|| split_fields(black_box(datagram)))
    });

    let frame = Frame::decode(datagram).expect("decodes");
    let fields = split_fields(datagram);
    let mut out = Vec::with_capacity(datagram.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("encode_baseline_join", |b| {
        b.iter(|| {
            out.clear();
            join_fields(black_box(&fields), &mut out);
            black_box(out.len())
        })
    });
}

fn codec(c: &mut Criterion) {
    for (name, datagram) in [
        ("register", register_datagram()),
        ("resolve", resolve_datagram()),
        ("message", message_datagram()),
        ("ring_records", ring_records_datagram()),
    ] {
        let mut group = c.benchmark_group(format!("codec/{name}"));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        pair(&mut group, &datagram);
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
