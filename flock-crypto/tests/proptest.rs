//! Property tests: arbitrary input never panics; seal/open and sign/verify round-trip.
//! Case counts are small because every case does an RSA private-key operation.

mod common;

use common::{PUBLIC_PEM, key, rng};
use flock_crypto::{PrivateKey, PublicKey, open, open_b64, seal, sign, verify, verify_b64};
use proptest::prelude::*;

fn shared_key() -> &'static PrivateKey {
    static KEY: std::sync::OnceLock<PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(key)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn open_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = open(&mut rng(0), shared_key(), &bytes);
    }

    #[test]
    fn open_well_framed_garbage_fails_cleanly(body in proptest::collection::vec(any::<u8>(), 284..700)) {
        // Right length prefix and enough bytes: reaches the RSA unwrap and AES-GCM.
        let mut payload = vec![0x01, 0x00];
        payload.extend_from_slice(&body);
        prop_assert!(open(&mut rng(0), shared_key(), &payload).is_err());
    }

    #[test]
    fn open_b64_arbitrary_text_never_panics(text in ".{0,500}") {
        let _ = open_b64(&mut rng(0), shared_key(), &text);
    }

    #[test]
    fn seal_open_round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), seed in any::<u64>()) {
        let mut rng = rng(seed);
        let key = shared_key();
        let payload = seal(&mut rng, key.public_key(), &plaintext).unwrap();
        prop_assert_eq!(payload.len(), 2 + 256 + 12 + plaintext.len() + 16);
        prop_assert_eq!(open(&mut rng, key, &payload).unwrap(), plaintext);
    }

    #[test]
    fn sign_verify_round_trip(text in proptest::collection::vec(any::<u8>(), 0..1024), seed in any::<u64>()) {
        let mut rng = rng(seed);
        let key = shared_key();
        let sig = sign(&mut rng, key, &text).unwrap();
        prop_assert!(verify(key.public_key(), &text, &sig).is_ok());
        let mut other = text.clone();
        other.push(0);
        prop_assert!(verify(key.public_key(), &other, &sig).is_err());
    }

    #[test]
    fn verify_arbitrary_never_panics(text in proptest::collection::vec(any::<u8>(), 0..64),
                                     sig in proptest::collection::vec(any::<u8>(), 0..300),
                                     sig_b64 in ".{0,400}") {
        let public = shared_key().public_key();
        prop_assert!(verify(public, &text, &sig).is_err());
        let _ = verify_b64(public, &text, &sig_b64);
    }

    #[test]
    fn key_parsers_never_panic(text in ".{0,600}", bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = PublicKey::from_pem(&text);
        let _ = PublicKey::from_b64(&text);
        let _ = PublicKey::from_der(&bytes);
        let _ = PrivateKey::from_pem(&text);
        let _ = PrivateKey::from_der(&bytes);
        let _ = PrivateKey::from_encrypted_pem(&text, "pw");
    }

    #[test]
    fn mangled_public_pem_never_panics(pos in 0usize..451, byte in any::<u8>()) {
        let mut pem = PUBLIC_PEM.as_bytes().to_vec();
        let pos = pos % pem.len();
        pem[pos] = byte;
        if let Ok(text) = std::str::from_utf8(&pem) {
            let _ = PublicKey::from_pem(text);
        }
    }
}
