//! Record validation and the owner rules, with signature checks behind a trait.

use flock_proto::Record;
use flock_proto::ring::FindError;

/// Checks a record's signature (RSA-PSS over `user|ip|port|version|pubkey_b64`).
///
/// The ring calls this on every signed record it receives, from clients and from peers
/// alike, so nothing unauthenticated is ever stored.
pub trait RecordVerifier {
    /// Whether `record.sig_b64` is a valid signature by `record.pubkey_b64` over
    /// [`Record::signed_text`].
    fn verify(&self, record: &Record) -> bool;
}

/// A cheap deterministic stand-in for RSA, for simulations: the "signature" is a keyed
/// hash of the signed text, where the key is the public key string itself. Anyone can forge
/// it, so it proves only that the ring *checks*, and is for tests and simulations only.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeVerifier;

impl FakeVerifier {
    /// The signature [`FakeVerifier`] accepts for `record`.
    pub fn sign(record: &Record) -> String {
        format!("fake{:016x}", fnv64(record.signed_text().as_bytes()))
    }
}

impl RecordVerifier for FakeVerifier {
    fn verify(&self, record: &Record) -> bool {
        record.sig_b64 == Self::sign(record)
    }
}

/// The real check: RSA-PSS (SHA-256, MGF1-SHA-256) by the record's own key over
/// `user|ip|port|version|pubkey_b64`, via `flock-crypto`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RsaVerifier;

impl RsaVerifier {
    /// The RSA check alone, with `key` already parsed from `r.pubkey_b64` (a driver that
    /// caches parsed keys calls this).
    pub fn verify_with_key(key: &flock_crypto::PublicKey, r: &Record) -> bool {
        let text = r.signed_text();
        flock_crypto::verify_b64(key, text.as_bytes(), &r.sig_b64).is_ok()
    }
}

impl RecordVerifier for RsaVerifier {
    fn verify(&self, r: &Record) -> bool {
        flock_crypto::PublicKey::from_b64(&r.pubkey_b64)
            .is_ok_and(|key| Self::verify_with_key(&key, r))
    }
}

/// 64-bit FNV-1a.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Payload checks shared by every path that stores a record.
pub(crate) fn valid_payload(r: &Record) -> bool {
    if flock_proto::validate_username(&r.user).is_err() || r.port == 0 {
        return false;
    }
    if r.is_signed() {
        r.version > 0
            && r.version <= i64::MAX as u64
            && !r.sig_b64.is_empty()
            && !r.pubkey_b64.contains(' ')
            && !r.sig_b64.contains(' ')
    } else {
        r.sig_b64.is_empty() && r.version == 0
    }
}

/// What storing `new` over `old` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// Store it (new or newer).
    Store,
    /// Already stored (equal version, same content): accept without writing.
    Same,
}

/// The owner rules. The first key pins a name; an update must carry the pinned key, a valid
/// signature, and a version not below the stored one (equal is idempotent: the same record
/// is a no-op; a different record of the same version is resolved deterministically so
/// replicas converge). The unsigned 3-field form only applies to names with no signed owner.
pub(crate) fn check(
    old: Option<&Record>,
    new: &Record,
    verifier: &dyn RecordVerifier,
) -> Result<Apply, FindError> {
    if !valid_payload(new) {
        return Err(FindError::InvalidPayload);
    }
    if !new.is_signed() {
        return match old {
            Some(o) if o.is_signed() => Err(FindError::DifferentKey),
            Some(o) if o == new => Ok(Apply::Same),
            _ => Ok(Apply::Store),
        };
    }
    if let Some(o) = old {
        if o.is_signed() && o.pubkey_b64 != new.pubkey_b64 {
            return Err(FindError::DifferentKey);
        }
    }
    if !verifier.verify(new) {
        return Err(FindError::InvalidSignature);
    }
    match old {
        Some(o) if o.is_signed() => {
            if new.version < o.version {
                Err(FindError::StaleVersion)
            } else if new == o {
                Ok(Apply::Same)
            } else if new.version == o.version && new < o {
                // Same key, same version, different content: keep the larger one everywhere.
                Ok(Apply::Same)
            } else {
                Ok(Apply::Store)
            }
        }
        _ => Ok(Apply::Store),
    }
}
