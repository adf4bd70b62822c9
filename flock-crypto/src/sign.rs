//! RSA-PSS signatures (SHA-256, MGF1-SHA-256, maximum salt length).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::CryptoRng;
use rsa::pss::Pss;
use sha2::{Digest as _, Sha256};

use crate::keys::{MAX_KEY_BITS, check_len};
use crate::{Error, PrivateKey, PublicKey};

/// Longest text [`sign`] and [`verify`] accept, in bytes (a datagram's worth).
pub const MAX_SIGNED_TEXT_LEN: usize = 65_507;

const HASH_LEN: usize = 32;
const MAX_SIGNATURE_B64_LEN: usize = (MAX_KEY_BITS / 8).div_ceil(3) * 4;

/// The maximum PSS salt length for a key of `bits` bits with SHA-256, as OpenSSL computes
/// it (`RSA_PSS_SALTLEN_MAX`, Python's `PSS.MAX_LENGTH`): `emLen - hLen - 2` with
/// `emLen = ceil((bits - 1) / 8)`. 222 for RSA-2048.
#[must_use]
pub fn max_salt_len(bits: usize) -> usize {
    bits.saturating_sub(1)
        .div_ceil(8)
        .saturating_sub(HASH_LEN + 2)
}

/// Signs `text` with RSA-PSS (SHA-256, MGF1-SHA-256, maximum salt length: 222 bytes for
/// RSA-2048), as the original does. The salt and the blinding come from `rng`.
///
/// # Errors
/// [`Error::TooLarge`] beyond [`MAX_SIGNED_TEXT_LEN`]; [`Error::Internal`] if the RSA
/// operation fails (it does not for a loaded key).
pub fn sign<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    text: &[u8],
) -> Result<Vec<u8>, Error> {
    check_len(text.len(), MAX_SIGNED_TEXT_LEN)?;
    let padding = Pss::<Sha256>::new_with_salt(max_salt_len(key.public_key().bits()));
    key.inner
        .sign_with_rng(rng, padding, &Sha256::digest(text))
        .map_err(|_| Error::Internal)
}

/// [`sign`], then standard base64 with padding: the `sig_b64` of a `REGISTER`.
///
/// # Errors
/// As [`sign`].
pub fn sign_b64<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    text: &[u8],
) -> Result<String, Error> {
    sign(rng, key, text).map(|sig| BASE64.encode(sig))
}

/// Verifies an RSA-PSS signature (SHA-256, MGF1-SHA-256) of `text` by `key`.
///
/// Any salt length is accepted (it is recovered from the signature), exactly as the
/// original verifies: OpenSSL, asked to verify with `PSS.MAX_LENGTH`, auto-detects the
/// salt length, so original nodes accept a 32-byte or empty salt as readily as the 222-byte
/// salt original clients and [`sign`] produce. Matching that keeps a mixed ring consistent.
/// (`rsa`'s own `pss_verify` would instead demand a 32-byte salt and reject every signature
/// of the original.)
///
/// # Errors
/// [`Error::TooLarge`] beyond [`MAX_SIGNED_TEXT_LEN`]; [`Error::BadSignature`] for
/// anything else that is not a valid signature, including a signature of the wrong length.
pub fn verify(key: &PublicKey, text: &[u8], signature: &[u8]) -> Result<(), Error> {
    check_len(text.len(), MAX_SIGNED_TEXT_LEN)?;
    if signature.len() != key.size() {
        return Err(Error::BadSignature);
    }
    let padding = Pss {
        blinded: false,
        digest: Sha256::new(),
        salt_len: None,
    };
    key.inner
        .verify(padding, &Sha256::digest(text), signature)
        .map_err(|_| Error::BadSignature)
}

/// Decodes a standard base64 signature (with padding), then [`verify`]s it.
///
/// # Errors
/// [`Error::Base64`] if `signature_b64` is not base64, [`Error::BadSignature`] if it is
/// far too long to be a signature, or as [`verify`].
pub fn verify_b64(key: &PublicKey, text: &[u8], signature_b64: &str) -> Result<(), Error> {
    if signature_b64.len() > MAX_SIGNATURE_B64_LEN {
        return Err(Error::BadSignature);
    }
    let signature = BASE64.decode(signature_b64).map_err(|_| Error::Base64)?;
    verify(key, text, &signature)
}
