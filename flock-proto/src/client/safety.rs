//! Safety numbers: what two people compare (aloud, in person) to know that each one's
//! client pinned the other's real key.
//!
//! Signal's numeric fingerprint (libsignal's `NumericFingerprintGenerator`, version 0):
//! for each party, `SHA-512(version ‖ key ‖ name)` and then 5,200 times
//! `SHA-512(hash ‖ key)`; the first 30 bytes, as six 5-byte big-endian numbers modulo
//! 100,000, make 30 digits. The two halves are ordered (smaller first), so both people
//! see the same 60 digits. `key` is the public key's SPKI DER, `name` the username.

use flock_crypto::PublicKey;
use sha2::{Digest, Sha512};

/// SHA-512 rounds per half: over 112 bits of work against a targeted collision (Signal's
/// figure).
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5_200;

/// The version that starts every hash.
const VERSION: [u8; 2] = [0, 0];

/// 60 digits that two users compare to check each other's keys. Shown as 12 groups of 5
/// (its [`Display`](std::fmt::Display)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The safety number of the conversation between `a` with key `a_key` and `b` with
    /// key `b_key`; the same whichever party is `a`.
    ///
    /// ```
    /// # use flock_crypto::PrivateKey;
    /// # use flock_proto::client::SafetyNumber;
    /// # fn demo(alice: &PrivateKey, bob: &PrivateKey) {
    /// let n = SafetyNumber::new("alice", alice.public_key(), "bob", bob.public_key());
    /// assert_eq!(n, SafetyNumber::new("bob", bob.public_key(), "alice", alice.public_key()));
    /// assert_eq!(n.digits().len(), 60);
    /// # }
    /// ```
    pub fn new(a: &str, a_key: &PublicKey, b: &str, b_key: &PublicKey) -> Self {
        let (x, y) = (half(a, a_key), half(b, b_key));
        Self(if x <= y { x + &y } else { y + &x })
    }

    /// The 60 digits without spaces.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, group) in self.0.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            // Digits only: always UTF-8.
            f.write_str(std::str::from_utf8(group).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

/// One party's 30 digits.
fn half(name: &str, key: &PublicKey) -> String {
    let der = key.to_der();
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(der)
        .chain_update(name.as_bytes())
        .finalize();
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(der)
            .finalize();
    }
    hash[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}
