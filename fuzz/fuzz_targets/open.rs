//! Opening arbitrary payloads never panics, with a fixed RSA-2048 key from the vectors.
//!
//! Each input is tried three ways: as raw payload bytes, behind a valid `u16` length
//! prefix (so it reaches the RSA unwrap and AES-GCM), and as `payload_b64` text.
#![no_main]

use std::sync::OnceLock;

use flock_crypto::rand_core::{TryCryptoRng, TryRng};
use flock_crypto::{PrivateKey, open, open_b64};
use libfuzzer_sys::fuzz_target;

static KEY: OnceLock<PrivateKey> = OnceLock::new();

/// A deterministic, non-cryptographic RNG (splitmix64): good enough for blinding in a
/// fuzzer, and it keeps runs reproducible.
struct FuzzRng(u64);

impl TryRng for FuzzRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for FuzzRng {}

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| {
        PrivateKey::from_pem(include_str!("../../flock-crypto/tests/data/private.pem"))
            .expect("vector key loads")
    });
    let mut rng = FuzzRng(data.len() as u64);

    let _ = open(&mut rng, key, data);

    let mut framed = Vec::with_capacity(data.len() + 2);
    framed.extend_from_slice(&[0x01, 0x00]);
    framed.extend_from_slice(data);
    // A random payload cannot carry a valid GCM tag under a key only the sealer knew.
    assert!(open(&mut rng, key, &framed).is_err());

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = open_b64(&mut rng, key, text);
    }
});
