//! Cost of a MESSAGE payload (seal/open of 1 KiB) next to the AES-256-GCM part alone, and of
//! a REGISTER signature (sign/verify) next to hashing the same text.
//!
//! Run: `cargo bench -p flock-benches --bench crypto`. The RSA step dominates: compare the
//! ratios within one run (the machines are noisy).

use std::hint::black_box;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flock_crypto::{PrivateKey, open, seal, sign, verify};
use flock_proto::signed_text as registration_text;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const KEY_PEM: &str = include_str!("../flock-crypto/tests/data/private.pem");
const MESSAGE_LEN: usize = 1024;

fn key() -> PrivateKey {
    PrivateKey::from_pem(KEY_PEM).expect("vector key loads")
}

fn fresh_aes(rng: &mut ChaCha20Rng) -> (Aes256Gcm, Nonce<aes_gcm::aead::consts::U12>) {
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut key);
    rng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(&key).expect("32-byte key");
    (cipher, Nonce::from(nonce))
}

fn seal_group(c: &mut Criterion) {
    let key = key();
    let public = key.public_key().clone();
    let message = vec![0x61u8; MESSAGE_LEN];
    let mut rng = ChaCha20Rng::seed_from_u64(1);

    let mut group = c.benchmark_group("seal_1KiB");
    group.throughput(Throughput::Bytes(MESSAGE_LEN as u64));
    group.bench_function("baseline_aes256gcm_encrypt_fresh_key", |b| {
        b.iter(|| {
            let (cipher, nonce) = fresh_aes(&mut rng);
            cipher
                .encrypt(&nonce, black_box(message.as_slice()))
                .expect("encrypt")
        })
    });
    group.bench_function("flock_seal", |b| {
        b.iter(|| seal(&mut rng, &public, black_box(&message)).expect("seal"))
    });
    group.finish();
}

fn open_group(c: &mut Criterion) {
    let key = key();
    let message = vec![0x61u8; MESSAGE_LEN];
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let payload = seal(&mut rng, key.public_key(), &message).expect("seal");

    let mut aes_key = [0u8; 32];
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut aes_key);
    rng.fill_bytes(&mut nonce);
    let nonce = Nonce::from(nonce);
    let ciphertext = Aes256Gcm::new_from_slice(&aes_key)
        .expect("32-byte key")
        .encrypt(&nonce, message.as_slice())
        .expect("encrypt");

    let mut group = c.benchmark_group("open_1KiB");
    group.throughput(Throughput::Bytes(MESSAGE_LEN as u64));
    group.bench_function("baseline_aes256gcm_decrypt_fresh_key", |b| {
        b.iter(|| {
            let cipher = Aes256Gcm::new_from_slice(black_box(&aes_key)).expect("32-byte key");
            cipher
                .decrypt(&nonce, black_box(ciphertext.as_slice()))
                .expect("decrypt")
        })
    });
    group.bench_function("flock_open", |b| {
        b.iter(|| open(&mut rng, &key, black_box(&payload)).expect("open"))
    });
    group.finish();
}

fn signature_group(c: &mut Criterion) {
    let key = key();
    let public = key.public_key().clone();
    let text = registration_text(
        "alice",
        "10.0.0.1".parse().expect("ip"),
        5000,
        1_700_000_000_000_000_000,
        &public.to_b64(),
    );
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let signature = sign(&mut rng, &key, text.as_bytes()).expect("sign");

    let mut group = c.benchmark_group("registration_signature");
    group.bench_function("baseline_sha256_of_text", |b| {
        b.iter(|| Sha256::digest(black_box(text.as_bytes())))
    });
    group.bench_function("flock_sign", |b| {
        b.iter(|| sign(&mut rng, &key, black_box(text.as_bytes())).expect("sign"))
    });
    group.bench_function("flock_verify", |b| {
        b.iter(|| {
            verify(&public, black_box(text.as_bytes()), black_box(&signature)).expect("verify")
        })
    });
    group.finish();
}

criterion_group!(benches, seal_group, open_group, signature_group);
criterion_main!(benches);
