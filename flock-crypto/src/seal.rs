//! Hybrid encryption of MESSAGE payloads: RSA-OAEP-wrapped AES-256-GCM.

use aes_gcm::aead::{Aead as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::check_len;
use crate::{Error, PrivateKey, PublicKey};

/// Longest sealed payload accepted or produced, in bytes: the largest UDP datagram payload
/// over IPv4. (Original receivers read at most 8191 bytes of a whole datagram, so a MESSAGE
/// meant for them must stay far below this: about 5.8 KB of text.)
pub const MAX_PAYLOAD_LEN: usize = 65_507;

/// Longest base64 payload text accepted by [`open_b64`]: the base64 length of
/// [`MAX_PAYLOAD_LEN`] bytes.
pub const MAX_PAYLOAD_B64_LEN: usize = MAX_PAYLOAD_LEN.div_ceil(3) * 4;

const AES_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const LEN_PREFIX: usize = 2;

/// Seals `plaintext` for `recipient` in the original's payload layout.
///
/// A fresh AES-256-GCM key and 12-byte nonce are drawn from `rng`; the plaintext is
/// encrypted with no associated data (16-byte tag appended) and the AES key is wrapped with
/// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label). The bytes are
/// `u16 BE wrapped-key length (256)` ‖ wrapped key ‖ nonce ‖ ciphertext ‖ tag.
///
/// Nothing in the payload identifies or authenticates the sender.
///
/// # Errors
/// [`Error::TooLarge`] if the payload would exceed [`MAX_PAYLOAD_LEN`].
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &PublicKey,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let wrapped_len = recipient.size();
    let overhead = LEN_PREFIX + wrapped_len + NONCE_LEN + TAG_LEN;
    check_len(plaintext.len(), MAX_PAYLOAD_LEN.saturating_sub(overhead))?;
    let prefix = u16::try_from(wrapped_len).map_err(|_| Error::Internal)?;

    let mut aes_key = Zeroizing::new([0u8; AES_KEY_LEN]);
    rng.fill_bytes(aes_key.as_mut_slice());
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);

    let cipher = Aes256Gcm::new_from_slice(aes_key.as_slice()).map_err(|_| Error::Internal)?;
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), plaintext)
        .map_err(|_| Error::Internal)?;
    let wrapped = recipient
        .inner
        .oaep_encrypt_with_rng::<Sha256, _>(rng, aes_key.as_slice())
        .map_err(|_| Error::Internal)?;
    if wrapped.len() != wrapped_len {
        return Err(Error::Internal);
    }

    let mut out = Vec::with_capacity(overhead + plaintext.len());
    out.extend_from_slice(&prefix.to_be_bytes());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// [`seal`], then standard base64 with padding: the `payload_b64` of a `MESSAGE`.
///
/// # Errors
/// As [`seal`].
pub fn seal_b64<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &PublicKey,
    plaintext: &[u8],
) -> Result<String, Error> {
    seal(rng, recipient, plaintext).map(|payload| BASE64.encode(payload))
}

/// Opens a payload made by [`seal`] (or by the original) with the recipient's private key.
///
/// `rng` blinds the RSA private-key operation. **The payload is attacker-controlled**: read
/// the crate docs on RUSTSEC-2023-0071 before calling this on network input. Whatever went
/// wrong cryptographically, the error is the same [`Error::OpenFailed`], and a failed key
/// unwrap still runs the AES-GCM step with a random key, so both failure paths do the same
/// work after the RSA operation.
///
/// # Errors
/// [`Error::TooLarge`] beyond [`MAX_PAYLOAD_LEN`], [`Error::MalformedPayload`] if the
/// layout is wrong (too short, or a wrapped-key length other than this key's size), and
/// [`Error::OpenFailed`] if the payload was not sealed for this key or was modified.
pub fn open<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    check_len(payload.len(), MAX_PAYLOAD_LEN)?;
    let wrapped_len = key.public_key().size();
    let Some((prefix, rest)) = payload.split_first_chunk::<LEN_PREFIX>() else {
        return Err(Error::MalformedPayload);
    };
    if usize::from(u16::from_be_bytes(*prefix)) != wrapped_len
        || rest.len() < wrapped_len + NONCE_LEN + TAG_LEN
    {
        return Err(Error::MalformedPayload);
    }
    let (wrapped, rest) = rest.split_at(wrapped_len);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::MalformedPayload)?;

    // Drawn before the RSA step so that success and failure consume the RNG alike.
    let mut decoy = Zeroizing::new([0u8; AES_KEY_LEN]);
    rng.fill_bytes(decoy.as_mut_slice());

    let unwrapped = key
        .inner
        .oaep_decrypt_with_rng::<Sha256, _>(rng, wrapped)
        .ok()
        .map(Zeroizing::new)
        .filter(|k| k.len() == AES_KEY_LEN);
    let unwrap_ok = unwrapped.is_some();
    let aes_key: &[u8] = match &unwrapped {
        Some(k) => k.as_slice(),
        None => decoy.as_slice(),
    };

    let cipher = Aes256Gcm::new_from_slice(aes_key).map_err(|_| Error::Internal)?;
    let opened = cipher.decrypt(&Nonce::from(nonce), ciphertext);
    match opened {
        Ok(plaintext) if unwrap_ok => Ok(plaintext),
        _ => Err(Error::OpenFailed),
    }
}

/// Decodes standard base64 (with padding), then [`open`]s.
///
/// # Errors
/// [`Error::TooLarge`] beyond [`MAX_PAYLOAD_B64_LEN`], [`Error::Base64`], or as [`open`].
pub fn open_b64<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    payload_b64: &str,
) -> Result<Vec<u8>, Error> {
    check_len(payload_b64.len(), MAX_PAYLOAD_B64_LEN)?;
    let payload = BASE64.decode(payload_b64).map_err(|_| Error::Base64)?;
    open(rng, key, &payload)
}
