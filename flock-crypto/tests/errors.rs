//! Tampered, truncated, wrong-key, wrong-length and oversized inputs give typed errors.

mod common;

use common::{key, rng};
use flock_crypto::{
    Error, MAX_PAYLOAD_B64_LEN, MAX_PAYLOAD_LEN, PrivateKey, PublicKey, open, open_b64, seal, sign,
    verify, verify_b64,
};

/// A second key, generated once (slow in debug builds) and shared by the tests here.
fn other_key() -> &'static PrivateKey {
    static KEY: std::sync::OnceLock<PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(&mut rng(99)).expect("keygen"))
}

#[test]
fn flipping_any_byte_of_a_payload_fails() {
    let key = key();
    let mut rng = rng(10);
    let payload = seal(&mut rng, key.public_key(), b"attack at dawn").unwrap();
    for i in 0..payload.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = payload.clone();
            bad[i] ^= mask;
            let err = open(&mut rng, &key, &bad).unwrap_err();
            if i < 2 {
                assert_eq!(err, Error::MalformedPayload, "byte {i}");
            } else {
                assert_eq!(err, Error::OpenFailed, "byte {i} mask {mask:#x}");
            }
        }
    }
}

#[test]
fn truncated_and_extended_payloads_fail() {
    let key = key();
    let mut rng = rng(11);
    let payload = seal(&mut rng, key.public_key(), b"hello").unwrap();
    for len in 0..payload.len() {
        let err = open(&mut rng, &key, &payload[..len]).unwrap_err();
        // The shortest well-formed payload is 2 + 256 + 12 + 16 bytes (empty plaintext).
        let expected = if len < 2 + 256 + 12 + 16 {
            Error::MalformedPayload
        } else {
            Error::OpenFailed
        };
        assert_eq!(err, expected, "length {len}");
    }
    let mut longer = payload.clone();
    longer.push(0);
    assert_eq!(
        open(&mut rng, &key, &longer).unwrap_err(),
        Error::OpenFailed
    );
}

#[test]
fn wrong_wrapped_key_length_is_malformed() {
    let key = key();
    let mut rng = rng(12);
    let mut payload = seal(&mut rng, key.public_key(), b"hello").unwrap();
    for prefix in [[0x00, 0x00], [0x00, 0xff], [0x02, 0x00], [0xff, 0xff]] {
        payload[..2].copy_from_slice(&prefix);
        assert_eq!(
            open(&mut rng, &key, &payload).unwrap_err(),
            Error::MalformedPayload
        );
    }
}

#[test]
fn wrong_key_fails() {
    let key = key();
    let other = other_key();
    let mut rng = rng(13);
    let payload = seal(&mut rng, key.public_key(), b"for key one only").unwrap();
    assert_eq!(
        open(&mut rng, other, &payload).unwrap_err(),
        Error::OpenFailed
    );
    let sig = sign(&mut rng, &key, b"text").unwrap();
    assert_eq!(
        verify(other.public_key(), b"text", &sig).unwrap_err(),
        Error::BadSignature
    );
    assert_ne!(other.public_key(), key.public_key());
    assert_ne!(
        other.public_key().fingerprint(),
        key.public_key().fingerprint()
    );
}

#[test]
fn oversized_payloads_are_rejected_before_work() {
    let key = key();
    let mut rng = rng(14);
    let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert_eq!(
        open(&mut rng, &key, &big).unwrap_err(),
        Error::TooLarge {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        }
    );
    let big_b64 = "A".repeat(MAX_PAYLOAD_B64_LEN + 4);
    assert!(matches!(
        open_b64(&mut rng, &key, &big_b64).unwrap_err(),
        Error::TooLarge { .. }
    ));
    let too_long_plaintext = vec![0u8; MAX_PAYLOAD_LEN];
    assert!(matches!(
        seal(&mut rng, key.public_key(), &too_long_plaintext).unwrap_err(),
        Error::TooLarge { .. }
    ));
    // The largest plaintext that fits still round-trips.
    let fits = vec![7u8; MAX_PAYLOAD_LEN - (2 + 256 + 12 + 16)];
    let payload = seal(&mut rng, key.public_key(), &fits).unwrap();
    assert_eq!(payload.len(), MAX_PAYLOAD_LEN);
    assert_eq!(open(&mut rng, &key, &payload).unwrap(), fits);
}

#[test]
fn bad_base64_is_a_base64_error() {
    let key = key();
    let mut rng = rng(15);
    for bad in ["not base64!", "QUJD", "QUJDRA", "QUJDRA=", "QU JD"] {
        let err = open_b64(&mut rng, &key, bad).unwrap_err();
        assert!(
            matches!(err, Error::Base64 | Error::MalformedPayload),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(
        open_b64(&mut rng, &key, "not base64!").unwrap_err(),
        Error::Base64
    );
    assert_eq!(
        verify_b64(key.public_key(), b"x", "***").unwrap_err(),
        Error::Base64
    );
    assert_eq!(PublicKey::from_b64("***").unwrap_err(), Error::Base64);
}

#[test]
fn signature_tampering_and_wrong_lengths_fail() {
    let key = key();
    let public = key.public_key();
    let mut rng = rng(16);
    let sig = sign(&mut rng, &key, b"alice|10.0.0.1|5000|1|key").unwrap();
    verify(public, b"alice|10.0.0.1|5000|1|key", &sig).unwrap();
    for i in (0..sig.len()).step_by(7) {
        let mut bad = sig.clone();
        bad[i] ^= 0x04;
        assert_eq!(
            verify(public, b"alice|10.0.0.1|5000|1|key", &bad).unwrap_err(),
            Error::BadSignature
        );
    }
    for len in [0, 1, 255, 257, 512] {
        let bad = vec![0x42; len];
        assert_eq!(
            verify(public, b"alice|10.0.0.1|5000|1|key", &bad).unwrap_err(),
            Error::BadSignature,
            "length {len}"
        );
    }
    // An all-0xff "signature" is >= n: rejected, not a panic.
    assert_eq!(
        verify(public, b"x", &[0xff; 256]).unwrap_err(),
        Error::BadSignature
    );
    assert_eq!(
        verify_b64(public, b"x", &"A".repeat(10_000)).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn any_salt_length_verifies_like_openssl() {
    // OpenSSL (the original) verifying with PSS.MAX_LENGTH auto-detects the salt length;
    // so do we. Our own signatures always use the maximum (222 bytes).
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::pss::Pss;
    use sha2::{Digest, Sha256};
    let key = key();
    let raw = rsa::PrivateKey::from_pkcs8_pem(common::PRIVATE_PEM).unwrap();
    let mut rng = rng(17);
    let digest = Sha256::digest(b"text");
    for salt in [0, 1, 32, 221, 222] {
        let sig = raw
            .sign_with_rng(&mut rng, Pss::<Sha256>::new_with_salt(salt), &digest)
            .unwrap();
        verify(key.public_key(), b"text", &sig).unwrap();
        assert_eq!(
            verify(key.public_key(), b"other", &sig).unwrap_err(),
            Error::BadSignature,
            "salt {salt}"
        );
    }
}

#[test]
fn our_signatures_use_the_maximum_salt() {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::pss::Pss;
    use sha2::{Digest, Sha256};
    let key = key();
    let sig = sign(&mut rng(19), &key, b"text").unwrap();
    let raw = rsa::PublicKey::from_public_key_der(key.public_key().to_der()).unwrap();
    let digest = Sha256::digest(b"text");
    // Strict checks with a fixed salt length: only 222 matches.
    raw.verify(Pss::<Sha256>::new_with_salt(222), &digest, &sig)
        .unwrap();
    assert!(
        raw.verify(Pss::<Sha256>::new_with_salt(32), &digest, &sig)
            .is_err()
    );
}

#[test]
fn small_keys_are_refused() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let small = rsa::PrivateKey::new(&mut rng(18), 1024).unwrap();
    let pem = small.to_pkcs8_pem(LineEnding::LF).unwrap();
    assert_eq!(
        PrivateKey::from_pem(&pem).unwrap_err(),
        Error::UnsupportedKeySize { bits: 1024 }
    );
    let public_pem = small
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    assert_eq!(
        PublicKey::from_pem(&public_pem).unwrap_err(),
        Error::UnsupportedKeySize { bits: 1024 }
    );
}

#[test]
fn bad_keys_are_typed_errors() {
    assert_eq!(PublicKey::from_pem("").unwrap_err(), Error::InvalidKey);
    assert_eq!(
        PublicKey::from_pem(common::PRIVATE_PEM).unwrap_err(),
        Error::InvalidKey
    );
    assert_eq!(
        PrivateKey::from_pem(common::PUBLIC_PEM).unwrap_err(),
        Error::InvalidKey
    );
    assert_eq!(
        PrivateKey::from_pem("garbage").unwrap_err(),
        Error::InvalidKey
    );
    assert_eq!(
        PrivateKey::from_encrypted_pem(common::PRIVATE_PEM, "pw").unwrap_err(),
        Error::InvalidKey
    );
    assert_eq!(
        PublicKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x01]).unwrap_err(),
        Error::InvalidKey
    );
    assert!(matches!(
        PublicKey::from_pem(&"A".repeat(100_000)).unwrap_err(),
        Error::TooLarge { .. }
    ));
    // Non-canonical pubkey_b64 (CRLF line endings) of a valid key is refused.
    let crlf = common::PUBLIC_PEM.replace('\n', "\r\n");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(crlf);
    assert_eq!(PublicKey::from_b64(&b64).unwrap_err(), Error::InvalidKey);
}
