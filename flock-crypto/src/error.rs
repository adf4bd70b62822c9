//! The crate's error type.

/// Everything that can go wrong in `flock-crypto`.
///
/// One variant per thing a caller can act on. None of them carries secret material, and
/// [`Error::OpenFailed`] deliberately does not say *why* a payload failed to open (see the
/// crate docs on RUSTSEC-2023-0071).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key text or DER is not a well-formed key of the expected kind (PKCS#8 private key,
    /// SPKI public key, RSA), or a `pubkey_b64` is not in the canonical wire form.
    #[error("invalid key encoding")]
    InvalidKey,

    /// The key is RSA but its modulus size is outside what Flock accepts
    /// ([`MIN_KEY_BITS`](crate::MIN_KEY_BITS) to [`MAX_KEY_BITS`](crate::MAX_KEY_BITS)).
    #[error("unsupported RSA key size: {bits} bits")]
    UnsupportedKeySize {
        /// The key's modulus size in bits.
        bits: usize,
    },

    /// The private key is password-encrypted; load it with
    /// [`PrivateKey::from_encrypted_pem`](crate::PrivateKey::from_encrypted_pem).
    #[error("the private key is encrypted: a password is needed")]
    PasswordRequired,

    /// The encrypted private key could not be decrypted: wrong password, or a corrupted file.
    #[error("could not decrypt the private key: wrong password or corrupted key")]
    WrongPassword,

    /// The text is not a fingerprint (64 hex digits).
    #[error("invalid fingerprint: expected 64 hex digits")]
    InvalidFingerprint,

    /// The input is not valid standard base64 (with padding).
    #[error("invalid base64")]
    Base64,

    /// The input is longer than this crate accepts.
    #[error("input too large: {len} bytes, at most {max} accepted")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The largest accepted length in bytes.
        max: usize,
    },

    /// The sealed payload does not have the payload layout (too short, or a wrapped-key
    /// length that does not match the recipient's key).
    #[error("malformed sealed payload")]
    MalformedPayload,

    /// The sealed payload did not open: it was not sealed for this key, or it was modified.
    #[error("the payload could not be opened with this key")]
    OpenFailed,

    /// The signature is not a valid signature of this text by this key (including a
    /// signature of the wrong length).
    #[error("invalid signature")]
    BadSignature,

    /// An operation that should not fail did (for example encoding a valid key). A bug.
    #[error("internal cryptography error")]
    Internal,
}
