//! The real record verifier: RSA-PSS through `flock-crypto`, with caches.
//!
//! A registration is verified by the entry node and again by the owner (often the same
//! node), and by every replica holder; an RSA-2048 verification costs tens of
//! microseconds. Two bounded caches remove the repeats: parsed public keys by their
//! `pubkey_b64`, and the SHA-256 of every (signed text, signature) pair that verified.
//! Only successes are cached, keyed by a cryptographic hash, so the cache can never make
//! a bad signature pass.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use flock_chord::{RecordVerifier, signed_text};
use flock_crypto::PublicKey;
use flock_proto::Record;
use sha2::{Digest, Sha256};

/// Most parsed public keys kept.
const MAX_KEYS: usize = 4096;
/// Most verified (text, signature) digests kept per generation.
const MAX_VERIFIED: usize = 1 << 16;

/// RSA-PSS record verifier with bounded caches (see the module docs).
#[derive(Default)]
pub struct RsaVerifier {
    cache: RefCell<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Option<PublicKey>>,
    /// Two generations: lookups check both, inserts go to `young`; when `young` is full
    /// it becomes `old` and the previous `old` is forgotten.
    young: HashSet<[u8; 32]>,
    old: HashSet<[u8; 32]>,
    hits: u64,
    verifications: u64,
}

impl std::fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.cache.borrow();
        f.debug_struct("RsaVerifier")
            .field("keys", &c.keys.len())
            .field("verified", &(c.young.len() + c.old.len()))
            .finish()
    }
}

impl RsaVerifier {
    /// An empty verifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// (cache hits, RSA verifications performed).
    pub fn stats(&self) -> (u64, u64) {
        let c = self.cache.borrow();
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

impl RecordVerifier for RsaVerifier {
    fn verify(&self, record: &Record) -> bool {
        if !record.is_signed() || record.sig_b64.is_empty() {
            return false;
        }
        let text = signed_text(record);
        let d = digest(&text, &record.sig_b64);
        let mut c = self.cache.borrow_mut();
        if c.young.contains(&d) || c.old.contains(&d) {
            c.hits += 1;
            return true;
        }
        if !c.keys.contains_key(&record.pubkey_b64) {
            if c.keys.len() >= MAX_KEYS {
                c.keys.clear();
            }
            let key = PublicKey::from_b64(&record.pubkey_b64).ok();
            c.keys.insert(record.pubkey_b64.clone(), key);
        }
        c.verifications += 1;
        let ok = match c.keys.get(&record.pubkey_b64) {
            Some(Some(key)) => {
                flock_crypto::verify_b64(key, text.as_bytes(), &record.sig_b64).is_ok()
            }
            _ => false,
        };
        if ok {
            if c.young.len() >= MAX_VERIFIED {
                c.old = std::mem::take(&mut c.young);
            }
            c.young.insert(d);
        }
        ok
    }
}
