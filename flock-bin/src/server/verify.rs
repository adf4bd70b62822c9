//! The real record verifier: RSA-PSS through `flock-crypto`, with caches, and a pool of
//! threads that verifies incoming registrations before the ring machine sees them.
//!
//! A registration is verified by the entry node and again by the owner (often the same
//! node), and by every replica holder; one RSA-2048 verification costs around 0.1 ms,
//! which would cap a single-threaded node near 10,000 registrations per second. So:
//!
//! - bounded caches of parsed public keys and of the SHA-256 of every (signed text,
//!   signature) pair already checked, good and bad. The key is a cryptographic hash of
//!   exactly what was checked, so a cached answer is the answer RSA would give;
//! - a [`VerifyPool`] of worker threads: the event loop hands it the decoded frames that
//!   carry signed records, the workers verify (filling the cache) and hand the frames
//!   back, and the machine's own check is then a cache hit. A datagram is decoded once,
//!   on the event loop. The queues are bounded; when full, the frame is dropped (the
//!   client retries), never queued without limit.
//!
//! The RSA check itself is flock-chord's ([`flock_chord::RsaVerifier::verify_with_key`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, MutexGuard};

use flock_chord::{RecordVerifier, RsaVerifier};
use flock_crypto::PublicKey;
use flock_proto::Frame;
use flock_proto::Record;
use flock_proto::ring::{FindOp, RingFrame};
use sha2::{Digest, Sha256};

/// Most parsed public keys kept.
const MAX_KEYS: usize = 4096;
/// Most verified (text, signature) digests kept per generation.
const MAX_VERIFIED: usize = 1 << 16;
/// Most users in the `recent` map.
const MAX_RECENT: usize = 1 << 16;
/// Most known-bad digests kept.
const MAX_BAD: usize = 1 << 14;

/// flock-chord's [`RsaVerifier`] behind shared, bounded caches (see the module docs).
/// Clones share the caches.
#[derive(Clone, Default)]
pub struct CachingVerifier {
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Option<Arc<PublicKey>>>,
    /// The last record verified per user: the cheap hit on the RESOLVE path, where the
    /// entry node re-checks every record it hands out (a full comparison, no hashing of
    /// the kilobyte of key and signature).
    recent: HashMap<String, Record>,
    /// Two generations: lookups check both, inserts go to `young`; when `young` is full
    /// it becomes `old` and the previous `old` is forgotten.
    young: HashSet<[u8; 32]>,
    old: HashSet<[u8; 32]>,
    bad: HashSet<[u8; 32]>,
    hits: u64,
    verifications: u64,
}

impl std::fmt::Debug for CachingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (hits, verifications) = self.stats();
        f.debug_struct("CachingVerifier")
            .field("hits", &hits)
            .field("verifications", &verifications)
            .finish()
    }
}

impl CachingVerifier {
    /// An empty verifier.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the cache inconsistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (cache hits, RSA verifications performed).
    pub fn stats(&self) -> (u64, u64) {
        let c = self.lock();
        (c.hits, c.verifications)
    }
}

fn digest(text: &str, sig: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update([0u8]);
    h.update(sig.as_bytes());
    h.finalize().into()
}

impl RecordVerifier for CachingVerifier {
    fn verify(&self, record: &Record) -> bool {
        if !record.is_signed() || record.sig_b64.is_empty() {
            return false;
        }
        {
            let mut c = self.lock();
            if c.recent.get(&record.user) == Some(record) {
                c.hits += 1;
                return true;
            }
        }
        let text = record.signed_text();
        let d = digest(&text, &record.sig_b64);
        let key = {
            let mut c = self.lock();
            if c.young.contains(&d) || c.old.contains(&d) {
                if c.recent.len() >= MAX_RECENT {
                    c.recent.clear();
                }
                c.recent.insert(record.user.clone(), record.clone());
                c.hits += 1;
                return true;
            }
            if c.bad.contains(&d) {
                c.hits += 1;
                return false;
            }
            if let Some(k) = c.keys.get(&record.pubkey_b64) {
                k.clone()
            } else {
                drop(c);
                // Parse outside the lock (it is not free either).
                let k = PublicKey::from_b64(&record.pubkey_b64).ok().map(Arc::new);
                let mut c = self.lock();
                if c.keys.len() >= MAX_KEYS {
                    c.keys.clear();
                }
                c.keys.insert(record.pubkey_b64.clone(), k.clone());
                k
            }
        };
        // The RSA operation runs without the lock, so pool workers verify in parallel.
        let ok = key.is_some_and(|k| RsaVerifier::verify_with_key(&k, record));
        let mut c = self.lock();
        c.verifications += 1;
        if ok {
            if c.young.len() >= MAX_VERIFIED {
                c.old = std::mem::take(&mut c.young);
            }
            c.young.insert(d);
            if c.recent.len() >= MAX_RECENT {
                c.recent.clear();
            }
            c.recent.insert(record.user.clone(), record.clone());
        } else {
            if c.bad.len() >= MAX_BAD {
                c.bad.clear();
            }
            c.bad.insert(d);
        }
        ok
    }
}

/// Whether a datagram carries signed records worth verifying off the event loop: a
/// client `REGISTER`, a ring `FIND ... REGISTER` or a `REPLICATE`.
pub(crate) fn carries_records(frame: &Frame<'_>) -> bool {
    match frame {
        Frame::Register(_) => true,
        Frame::Ring(RingFrame::Find {
            op: FindOp::Register { record },
            ..
        }) => record.is_signed(),
        Frame::Ring(RingFrame::Replicate { .. }) => true,
        _ => false,
    }
}

/// How many records a frame carries (each costs a rate-limit token before any
/// signature is checked).
pub(crate) fn records_in(frame: &Frame<'_>) -> usize {
    match frame {
        Frame::Ring(RingFrame::Replicate { records, .. } | RingFrame::Records { records, .. }) => {
            records.len()
        }
        Frame::Ring(RingFrame::Find {
            op: FindOp::Register { .. },
            ..
        }) => 1,
        _ => 0,
    }
}

/// Verifies every signed record of a frame (results land in the cache).
fn verify_frame(verifier: &CachingVerifier, frame: &Frame<'_>) {
    match frame {
        Frame::Register(r) => {
            verifier.verify(&r.to_record());
        }
        Frame::Ring(RingFrame::Find {
            op: FindOp::Register { record },
            ..
        }) => {
            verifier.verify(record);
        }
        Frame::Ring(RingFrame::Replicate { records, .. }) => {
            for r in records.iter().filter(|r| r.is_signed()) {
                verifier.verify(r);
            }
        }
        _ => {}
    }
}

/// A decoded datagram travelling through the pool, with its source.
pub(crate) type Job = (SocketAddrV4, Frame<'static>);

/// Worker threads that verify frames' records ahead of the event loop.
pub(crate) struct VerifyPool {
    tx: Option<std::sync::mpsc::SyncSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl VerifyPool {
    /// `n` workers sharing `verifier`'s caches; verified frames come back on the
    /// returned receiver. Both queues hold at most `capacity` frames.
    pub(crate) fn new(
        n: usize,
        verifier: &CachingVerifier,
        capacity: usize,
    ) -> std::io::Result<(Self, tokio::sync::mpsc::Receiver<Job>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Job>(capacity);
        let mut threads = Vec::new();
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let done = done_tx.clone();
            let v = verifier.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("flock-verify-{i}"))
                    .spawn(move || {
                        loop {
                            let job = {
                                let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                                guard.recv()
                            };
                            let Ok(job) = job else { break };
                            verify_frame(&v, &job.1);
                            if done.blocking_send(job).is_err() {
                                break;
                            }
                        }
                    })?,
            );
        }
        Ok((
            Self {
                tx: Some(tx),
                threads,
            },
            done_rx,
        ))
    }

    /// Queues a frame; `false` if the queue is full (drop it).
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.try_send(job).is_ok())
    }
}

impl Drop for VerifyPool {
    fn drop(&mut self) {
        self.tx.take();
        // Workers blocked on a full result queue exit once the receiver is gone; the
        // event loop drops its receiver before the pool, so joining cannot hang.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flock_crypto::PrivateKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn signed(key: &PrivateKey, user: &str, version: u64) -> Record {
        let mut r = Record {
            user: user.into(),
            ip: "10.0.0.1".parse().expect("ip"),
            port: 5000,
            version,
            pubkey_b64: key.public_key().to_b64(),
            sig_b64: String::new(),
        };
        let mut rng = ChaCha20Rng::seed_from_u64(version);
        r.sig_b64 =
            flock_crypto::sign_b64(&mut rng, key, r.signed_text().as_bytes()).expect("sign");
        r
    }

    #[test]
    fn accepts_valid_rejects_tampered_and_caches_both() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = PrivateKey::generate(&mut rng).expect("key");
        let v = CachingVerifier::new();
        let good = signed(&key, "alice", 7);
        assert!(v.verify(&good));
        assert!(v.verify(&good), "second time from the cache");
        assert_eq!(v.stats(), (1, 1));
        let mut bad = good.clone();
        bad.port = 5001;
        assert!(!v.verify(&bad));
        assert!(!v.verify(&bad));
        assert_eq!(v.stats(), (2, 2));
        let mut wrong_key = good.clone();
        wrong_key.pubkey_b64 = "bm90IGEga2V5".into();
        assert!(!v.verify(&wrong_key));
        let unsigned = Record {
            pubkey_b64: String::new(),
            sig_b64: String::new(),
            version: 0,
            ..good.clone()
        };
        assert!(!v.verify(&unsigned));
        // Clones share the cache.
        let v2 = v.clone();
        assert!(v2.verify(&good));
        assert_eq!(v2.stats().0, 3);
    }

    #[test]
    fn pool_verifies_ahead_and_returns_every_datagram() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = PrivateKey::generate(&mut rng).expect("key");
        let v = CachingVerifier::new();
        let (pool, mut rx) = VerifyPool::new(2, &v, 16).expect("pool");
        let from: SocketAddrV4 = "127.0.0.1:9".parse().expect("addr");
        let recs: Vec<Record> = (1..=4).map(|i| signed(&key, "bob", i)).collect();
        for r in &recs {
            let f = Frame::Register(r.into()).into_owned();
            assert!(carries_records(&f));
            assert!(pool.submit((from, f)));
        }
        for _ in 0..4 {
            assert!(rx.blocking_recv().is_some());
        }
        // Every record is now a cache hit.
        let (_, verifications) = v.stats();
        assert_eq!(verifications, 4);
        for r in &recs {
            assert!(v.verify(r));
        }
        assert_eq!(v.stats(), (4, 4));
        drop(rx);
        drop(pool);
    }
}
