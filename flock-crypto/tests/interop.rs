//! Interoperability with the original Python client: every case of `interop.json`
//! (made with Python `cryptography` / OpenSSL) must load, open and verify, and what we
//! produce must match byte for byte where the format is deterministic.

use flock_crypto::{
    Error, PrivateKey, PublicKey, max_salt_len, open, open_b64, seal, seal_b64, sign, sign_b64,
    verify, verify_b64,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;

const VECTORS: &str = include_str!("data/interop.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("interop.json parses")
}

fn key_field(v: &Value, name: &str) -> String {
    v["keys"][name].as_str().expect(name).to_owned()
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[test]
fn plain_private_key_loads_and_matches_public_key() {
    let v = vectors();
    let key = PrivateKey::from_pem(&key_field(&v, "private_pkcs8_pem")).unwrap();
    let public = PublicKey::from_pem(&key_field(&v, "public_spki_pem")).unwrap();
    assert_eq!(key.public_key(), &public);
    assert_eq!(public.bits(), 2048);
    assert_eq!(max_salt_len(public.bits()), 222);
}

#[test]
fn encrypted_private_key_loads_with_password() {
    let v = vectors();
    let plain = PrivateKey::from_pem(&key_field(&v, "private_pkcs8_pem")).unwrap();
    let enc = key_field(&v, "private_pkcs8_pem_encrypted");
    let key = PrivateKey::from_encrypted_pem(&enc, &key_field(&v, "password")).unwrap();
    assert_eq!(key.public_key(), plain.public_key());
    assert_eq!(
        key.to_pem().unwrap().as_str(),
        plain.to_pem().unwrap().as_str()
    );
}

#[test]
fn encrypted_private_key_wrong_password_and_missing_password() {
    let v = vectors();
    let enc = key_field(&v, "private_pkcs8_pem_encrypted");
    assert_eq!(
        PrivateKey::from_encrypted_pem(&enc, "not-the-password").unwrap_err(),
        Error::WrongPassword
    );
    assert_eq!(
        PrivateKey::from_encrypted_pem(&enc, "").unwrap_err(),
        Error::WrongPassword
    );
    assert_eq!(
        PrivateKey::from_pem(&enc).unwrap_err(),
        Error::PasswordRequired
    );
}

#[test]
fn public_pem_and_b64_are_byte_identical_to_openssl() {
    let v = vectors();
    let pem = key_field(&v, "public_spki_pem");
    let b64 = key_field(&v, "public_b64");
    let key = PrivateKey::from_pem(&key_field(&v, "private_pkcs8_pem")).unwrap();
    let public = key.public_key();
    assert_eq!(public.to_pem(), pem);
    assert_eq!(public.to_b64(), b64);
    assert_eq!(b64.len(), 604);
    assert_eq!(&PublicKey::from_b64(&b64).unwrap(), public);
}

#[test]
fn private_pem_round_trips_byte_identical() {
    let v = vectors();
    let pem = key_field(&v, "private_pkcs8_pem");
    let key = PrivateKey::from_pem(&pem).unwrap();
    assert_eq!(key.to_pem().unwrap().as_str(), pem);
}

#[test]
fn every_sealed_vector_opens() {
    let v = vectors();
    let key = PrivateKey::from_pem(&key_field(&v, "private_pkcs8_pem")).unwrap();
    let cases = v["sealed"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut rng = rng(1);
    for case in cases {
        let plaintext = case["plaintext"].as_str().unwrap();
        let payload_b64 = case["payload_b64"].as_str().unwrap();
        let opened = open_b64(&mut rng, &key, payload_b64).unwrap();
        assert_eq!(opened, plaintext.as_bytes(), "case {plaintext:?}");
    }
}

#[test]
fn every_signature_vector_verifies() {
    let v = vectors();
    let public = PublicKey::from_b64(&key_field(&v, "public_b64")).unwrap();
    let cases = v["signatures"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let sig = case["signature_b64"].as_str().unwrap();
        verify_b64(&public, text.as_bytes(), sig).unwrap();
        // ... and not for any other text.
        let other = format!("{text}!");
        assert_eq!(
            verify_b64(&public, other.as_bytes(), sig).unwrap_err(),
            Error::BadSignature
        );
    }
}

#[test]
fn our_payloads_and_signatures_check_out() {
    let v = vectors();
    let key = PrivateKey::from_pem(&key_field(&v, "private_pkcs8_pem")).unwrap();
    let public = key.public_key();
    let mut rng = rng(2);
    for case in v["sealed"].as_array().unwrap() {
        let plaintext = case["plaintext"].as_str().unwrap().as_bytes();
        let payload = seal(&mut rng, public, plaintext).unwrap();
        assert_eq!(payload.len(), 2 + 256 + 12 + plaintext.len() + 16);
        assert_eq!(&payload[..2], &[0x01, 0x00]);
        assert_eq!(open(&mut rng, &key, &payload).unwrap(), plaintext);
        let b64 = seal_b64(&mut rng, public, plaintext).unwrap();
        assert_eq!(open_b64(&mut rng, &key, &b64).unwrap(), plaintext);
    }
    for case in v["signatures"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap().as_bytes();
        let sig = sign(&mut rng, &key, text).unwrap();
        assert_eq!(sig.len(), 256);
        verify(public, text, &sig).unwrap();
        let sig_b64 = sign_b64(&mut rng, &key, text).unwrap();
        verify_b64(public, text, &sig_b64).unwrap();
    }
}
