//! Messages per second end to end between two Flock clients on loopback, with the time
//! split between RSA, AES and the rest.
//!
//! Two tokio [`Client`]s (alice and bob) and an in-process server; alice sends 100-byte
//! messages, pipelined; a message counts when bob has stored it and alice has stored
//! bob's acknowledgement. Per message that is: seal (RSA-OAEP encrypt + AES-GCM), sign
//! the `SMESSAGE` (RSA-PSS), the datagram, verify the signature, open (RSA-OAEP decrypt +
//! AES-GCM), store (SQLite, `synchronous=FULL`), sign the `ACK`, verify it, and the
//! sender's outbox bookkeeping (SQLite).
//!
//! - `client_e2e/one_thread`: everything on one tokio thread, so wall time per message is
//!   the whole cost of a message; the `client_split` line printed at the end divides that
//!   time into RSA, AES and the rest using the parts measured in the same run.
//! - `client_e2e/two_threads`: alice's and bob's drivers on a 2-worker runtime.
//! - `client_parts/*`: the cryptographic steps alone.
//!
//! Run: `cargo bench -p flock-benches --bench client`.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flock_bin::client::{Client, ClientEvent, ClientOptions, ConnectionState, Event, Status};
use flock_crypto::{PrivateKey, open, seal, sign, verify};
use flock_proto::client::{ack_signed_text, smessage_signed_text};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const TEXT_LEN: usize = 100;
const KEY_PEM: &str = include_str!("../flock-crypto/tests/data/private.pem");

struct Pair {
    rt: tokio::runtime::Runtime,
    alice: Client,
    bob: Client,
    _server: flock_bin::server::Running,
    _dir: tempfile::TempDir,
}

fn options(user: &str, dir: &std::path::Path, server: SocketAddrV4) -> ClientOptions {
    let mut o = ClientOptions::new(user, "Bench-Pass-1", dir.join(user));
    o.servers = vec![server];
    o.discovery = false;
    o.bind = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    // Everything comes from 127.0.0.1: lift the per-source limits, and do not resend
    // while a long pipeline drains.
    o.config.signed_rate = (1e9, 1e9);
    o.config.retry_base_ms = 120_000;
    o.config.retry_max_ms = 120_000;
    o
}

async fn wait_registered(c: &mut Client) {
    while let Some(e) = c.next_event().await {
        if matches!(
            e,
            ClientEvent::Protocol(Event::Connection(ConnectionState::Registered { .. }))
        ) {
            return;
        }
    }
}

impl Pair {
    fn new(threads: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = flock_bin::server::ServerArgs::new("bench");
        args.bind = Ipv4Addr::LOCALHOST;
        args.port = 0;
        args.ping_port = Some(0);
        args.data_dir = Some(dir.path().join("server"));
        args.no_broadcast = true;
        args.no_multicast = true;
        let server = flock_bin::server::start(args).expect("server");
        let rt = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        }
        .enable_all()
        .build()
        .expect("runtime");
        let (mut alice, mut bob) = rt.block_on(async {
            let alice = Client::login(options("alice", dir.path(), server.addr))
                .await
                .expect("alice");
            let bob = Client::login(options("bob", dir.path(), server.addr))
                .await
                .expect("bob");
            (alice, bob)
        });
        rt.block_on(async {
            wait_registered(&mut alice).await;
            wait_registered(&mut bob).await;
        });
        let mut pair = Self {
            rt,
            alice,
            bob,
            _server: server,
            _dir: dir,
        };
        // Handshake (lookup, HELLO, key pinning) outside the measurement.
        pair.run(2);
        pair
    }

    /// Sends `n` messages at once; returns when all are stored by bob and acknowledged.
    fn run(&mut self, n: u64) -> Duration {
        let Self { rt, alice, bob, .. } = self;
        rt.block_on(async {
            let text = "m".repeat(TEXT_LEN);
            let start = Instant::now();
            for _ in 0..n {
                alice.send("bob", &text).await.expect("send");
            }
            let (mut received, mut delivered) = (0u64, 0u64);
            while received < n || delivered < n {
                tokio::select! {
                    Some(e) = bob.next_event(), if received < n => {
                        if matches!(e, ClientEvent::Message { .. }) {
                            received += 1;
                        }
                    }
                    Some(e) = alice.next_event(), if delivered < n => {
                        if matches!(e, ClientEvent::Protocol(Event::Status { status: Status::Delivered, .. })) {
                            delivered += 1;
                        }
                    }
                }
            }
            start.elapsed()
        })
    }
}

fn e2e(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_e2e");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    for (name, threads) in [("one_thread", 1), ("two_threads", 2)] {
        let mut pair = Pair::new(threads);
        group.bench_function(name, |b| b.iter_custom(|iters| pair.run(iters)));
    }
    group.finish();
}

struct Parts {
    key: PrivateKey,
    rng: ChaCha20Rng,
    text: Vec<u8>,
    sealed: Vec<u8>,
    smessage: String,
    sig: Vec<u8>,
}

impl Parts {
    fn new() -> Self {
        let key = PrivateKey::from_pem(KEY_PEM).expect("key");
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let text = vec![b'm'; TEXT_LEN];
        let sealed = seal(&mut rng, key.public_key(), &text).expect("seal");
        let smessage = smessage_signed_text("alice", "bob", u64::MAX, &"A".repeat(532));
        let sig = sign(&mut rng, &key, smessage.as_bytes()).expect("sign");
        Self {
            key,
            rng,
            text,
            sealed,
            smessage,
            sig,
        }
    }
    fn seal(&mut self) {
        black_box(seal(&mut self.rng, self.key.public_key(), &self.text).expect("seal"));
    }
    fn open(&mut self) {
        black_box(open(&mut self.rng, &self.key, &self.sealed).expect("open"));
    }
    fn sign(&mut self) {
        black_box(sign(&mut self.rng, &self.key, self.smessage.as_bytes()).expect("sign"));
    }
    fn verify(&mut self) {
        verify(self.key.public_key(), self.smessage.as_bytes(), &self.sig).expect("verify");
    }
    /// The AES-GCM part of one seal and one open: fresh key, encrypt, decrypt.
    fn aes(&mut self) {
        let mut k = [0u8; 32];
        let mut n = [0u8; 12];
        self.rng.fill_bytes(&mut k);
        self.rng.fill_bytes(&mut n);
        let cipher = Aes256Gcm::new_from_slice(&k).expect("key");
        let ct = cipher
            .encrypt(&Nonce::from(n), self.text.as_slice())
            .expect("encrypt");
        let cipher = Aes256Gcm::new_from_slice(&k).expect("key");
        black_box(
            cipher
                .decrypt(&Nonce::from(n), ct.as_slice())
                .expect("decrypt"),
        );
    }
}

fn parts(c: &mut Criterion) {
    let mut p = Parts::new();
    let _ = ack_signed_text("bob", "alice", 1);
    let mut group = c.benchmark_group("client_parts");
    group.bench_function("seal_100B", |b| b.iter(|| p.seal()));
    group.bench_function("open_100B", |b| b.iter(|| p.open()));
    group.bench_function("sign_pss", |b| b.iter(|| p.sign()));
    group.bench_function("verify_pss", |b| b.iter(|| p.verify()));
    group.bench_function("aes_gcm_100B_enc_dec", |b| b.iter(|| p.aes()));
    group.finish();
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (Linux;
/// 10 ms resolution): unlike wall time, it does not count time other processes on a
/// shared machine take.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

/// Mean CPU time of `f` over `n` calls.
fn time_per(n: u32, mut f: impl FnMut()) -> Duration {
    let start = cpu_time();
    for _ in 0..n {
        f();
    }
    cpu_time().saturating_sub(start) / n
}

/// One-line split, measured here in one go (same run, same machine state).
fn split(_c: &mut Criterion) {
    let mut pair = Pair::new(1);
    let n = 300;
    let cpu0 = cpu_time();
    let wall = pair.run(n) / n as u32;
    let per_msg = cpu_time().saturating_sub(cpu0) / n as u32;
    let mut p = Parts::new();
    let reps = 200;
    let seal_t = time_per(reps, || p.seal());
    let open_t = time_per(reps, || p.open());
    let sign_t = time_per(reps, || p.sign());
    let verify_t = time_per(reps, || p.verify());
    let aes_t = time_per(reps * 1_000, || p.aes());
    let rsa = (seal_t + open_t + 2 * sign_t + 2 * verify_t).saturating_sub(aes_t);
    let rest = per_msg.saturating_sub(rsa + aes_t);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / per_msg.as_secs_f64();
    println!(
        "client_split: one thread, {n} messages of {TEXT_LEN} B: {:.0} msg/s ({:.3} ms wall/msg); \
         CPU {:.3} ms/msg = \
         RSA {:.3} ms ({:.1}%: seal-wrap, unwrap, 2 PSS signs, 2 verifies) + AES-GCM {:.4} ms \
         ({:.2}%) + rest {:.3} ms ({:.1}%: SQLite, UDP syscalls, tokio, codec). Parts: seal {:?}, open \
         {:?}, sign {:?}, verify {:?}, aes {:?}",
        1.0 / wall.as_secs_f64(),
        wall.as_secs_f64() * 1e3,
        per_msg.as_secs_f64() * 1e3,
        rsa.as_secs_f64() * 1e3,
        pct(rsa),
        aes_t.as_secs_f64() * 1e3,
        pct(aes_t),
        rest.as_secs_f64() * 1e3,
        pct(rest),
        seal_t,
        open_t,
        sign_t,
        verify_t,
        aes_t,
    );
}

criterion_group!(benches, parts, e2e, split);
criterion_main!(benches);
