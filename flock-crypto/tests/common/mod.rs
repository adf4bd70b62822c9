//! Shared fixtures: the vector key (generating keys is slow in debug builds).

#![allow(dead_code, unreachable_pub)]

use flock_crypto::PrivateKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The vector's private key (PKCS#8 PEM, as the original writes it).
pub const PRIVATE_PEM: &str = include_str!("../data/private.pem");
/// The vector's public key (SPKI PEM).
pub const PUBLIC_PEM: &str = include_str!("../data/public.pem");

/// The vector's private key.
pub fn key() -> PrivateKey {
    PrivateKey::from_pem(PRIVATE_PEM).expect("vector key loads")
}

/// A deterministic RNG.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}
