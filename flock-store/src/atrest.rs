//! Encryption at rest for the client database: per-value AES-256-GCM under a key derived
//! from the user's password with scrypt, and keyed hashes ("blind indexes") for the
//! usernames the database has to look rows up by.
//!
//! A sealed value is `nonce (12 bytes) || ciphertext || tag (16 bytes)`, stored as a BLOB.
//! The associated data names the kind of value (`"messages.text"`, `"contacts.key"`, ...),
//! so a value moved into another column does not open. A blind index is the first 16
//! bytes of HMAC-SHA-256 of the name under a second derived key: equal names have equal
//! indexes (SQL can select by peer) but the file does not say who the peers are.

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::error::{Result, StoreError, corrupt};

/// Bytes of random salt per database.
pub(crate) const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes of a blind index.
const BLIND_LEN: usize = 16;

/// scrypt cost for new databases: `N = 2^15`, `r = 8`, `p = 1` (32 MiB, about 0.1 s on
/// a laptop). Stored in the file, so it can be raised without breaking old files.
pub(crate) const DEFAULT_KDF: KdfParams = KdfParams {
    log_n: 15,
    r: 8,
    p: 1,
};

/// What the associated data of a sealed value says it is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    /// `messages.text`.
    Text,
    /// A username: `messages.author`, `messages.receiver`, `contacts.name`.
    Name,
    /// A public key: `contacts.pubkey_b64`, `contacts.pending_pubkey_b64`.
    Key,
    /// A fingerprint: `contacts.fingerprint`, `contacts.pending_fingerprint`.
    Fingerprint,
    /// The password check value in `meta`.
    Check,
}

impl Field {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Text => b"flock-store v1 messages.text",
            Self::Name => b"flock-store v1 name",
            Self::Key => b"flock-store v1 contacts.key",
            Self::Fingerprint => b"flock-store v1 contacts.fingerprint",
            Self::Check => b"flock-store v1 meta.check",
        }
    }
}

/// scrypt parameters, as stored in `meta` (`"scrypt:<log_n>:<r>:<p>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KdfParams {
    log_n: u8,
    r: u32,
    p: u32,
}

impl KdfParams {
    pub(crate) fn to_meta(self) -> String {
        format!("scrypt:{}:{}:{}", self.log_n, self.r, self.p)
    }

    pub(crate) fn from_meta(s: &str) -> Result<Self> {
        let bad = || corrupt("meta", format!("kdf {s:?}"));
        let mut parts = s.split(':');
        if parts.next() != Some("scrypt") {
            return Err(bad());
        }
        let mut num = || {
            parts
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(bad)
        };
        let (log_n, r, p) = (num()?, num()?, num()?);
        // Bounded, so a tampered file cannot make the open take hours or all memory.
        if !(10..=20).contains(&log_n) || !(1..=16).contains(&r) || !(1..=4).contains(&p) {
            return Err(bad());
        }
        Ok(Self {
            log_n: u8::try_from(log_n).map_err(|_| bad())?,
            r,
            p,
        })
    }
}

/// The keys that seal values and compute blind indexes.
pub(crate) struct RowCipher {
    aead: Aes256Gcm,
    blind_key: [u8; 32],
}

impl RowCipher {
    /// Derives both keys from `password` and the database's `salt`.
    pub(crate) fn derive(password: &str, salt: &[u8], kdf: KdfParams) -> Result<Self> {
        let params = scrypt::Params::new(kdf.log_n, kdf.r, kdf.p)
            .map_err(|_| corrupt("meta", "unusable scrypt parameters"))?;
        let mut okm = zeroize::Zeroizing::new([0u8; 64]);
        scrypt::scrypt(password.as_bytes(), salt, &params, okm.as_mut_slice())
            .map_err(|_| corrupt("meta", "scrypt output length"))?;
        Self::from_bytes(&okm)
    }

    /// Random keys (an in-memory database: nothing is at rest).
    pub(crate) fn random() -> Result<Self> {
        let mut okm = zeroize::Zeroizing::new([0u8; 64]);
        random_fill(okm.as_mut_slice())?;
        Self::from_bytes(&okm)
    }

    fn from_bytes(okm: &[u8; 64]) -> Result<Self> {
        let (enc, blind) = okm.split_at(32);
        let aead = Aes256Gcm::new_from_slice(enc).map_err(|_| corrupt("meta", "key length"))?;
        let mut blind_key = [0u8; 32];
        blind_key.copy_from_slice(blind);
        Ok(Self { aead, blind_key })
    }

    /// Encrypts `plaintext` with a fresh random nonce.
    pub(crate) fn seal(&self, field: Field, plaintext: &str) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        let ct = self
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: field.aad(),
                },
            )
            .map_err(|_| StoreError::OutOfRange("value too large to encrypt".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value from [`Self::seal`]; a wrong key, a wrong field or any change to
    /// the bytes is [`StoreError::Corrupt`] naming `table`.
    pub(crate) fn open(&self, table: &'static str, field: Field, sealed: &[u8]) -> Result<String> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt(table, "sealed value too short"));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| corrupt(table, "sealed value too short"))?;
        let plain = self
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: field.aad(),
                },
            )
            .map_err(|_| corrupt(table, "a sealed value does not decrypt"))?;
        String::from_utf8(plain).map_err(|_| corrupt(table, "a sealed value is not UTF-8"))
    }

    /// The blind index of a username.
    pub(crate) fn blind(&self, name: &str) -> Vec<u8> {
        // HMAC accepts keys of any length: this cannot fail for a 32-byte key.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.blind_key) else {
            return Vec::new();
        };
        mac.update(name.as_bytes());
        let mut out = mac.finalize().into_bytes().to_vec();
        out.truncate(BLIND_LEN);
        out
    }
}

impl Drop for RowCipher {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.blind_key);
    }
}

/// Fills `buf` from the operating system's generator.
pub(crate) fn random_fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| StoreError::Random(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(password: &str) -> RowCipher {
        let kdf = KdfParams::from_meta("scrypt:10:8:1").unwrap();
        RowCipher::derive(password, b"0123456789abcdef", kdf).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_no_plaintext() {
        let c = cipher("Correct-Horse-1");
        let sealed = c.seal(Field::Text, "attack at dawn").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"attack"));
        assert_eq!(
            c.open("messages", Field::Text, &sealed).unwrap(),
            "attack at dawn"
        );
        // Two seals of the same text differ (fresh nonce).
        assert_ne!(sealed, c.seal(Field::Text, "attack at dawn").unwrap());
    }

    #[test]
    fn wrong_key_field_or_bytes_do_not_open() {
        let c = cipher("Correct-Horse-1");
        let sealed = c.seal(Field::Key, "K").unwrap();
        assert!(
            cipher("Correct-Horse-2")
                .open("t", Field::Key, &sealed)
                .is_err()
        );
        assert!(c.open("t", Field::Fingerprint, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(c.open("t", Field::Key, &flipped).is_err());
        assert!(c.open("t", Field::Key, &sealed[..10]).is_err());
    }

    #[test]
    fn blind_indexes_are_keyed_and_stable() {
        let (a, b) = (cipher("Correct-Horse-1"), cipher("Correct-Horse-2"));
        assert_eq!(a.blind("alice"), a.blind("alice"));
        assert_ne!(a.blind("alice"), a.blind("Alice"));
        assert_ne!(a.blind("alice"), b.blind("alice"));
        assert_eq!(a.blind("alice").len(), BLIND_LEN);
    }

    #[test]
    fn kdf_params_parse_strictly() {
        assert_eq!(
            KdfParams::from_meta(&DEFAULT_KDF.to_meta()).unwrap(),
            DEFAULT_KDF
        );
        for bad in [
            "",
            "scrypt",
            "scrypt:15:8",
            "pbkdf2:15:8:1",
            "scrypt:40:8:1",
            "scrypt:15:0:1",
        ] {
            assert!(KdfParams::from_meta(bad).is_err(), "{bad}");
        }
    }
}
