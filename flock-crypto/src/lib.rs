//! Cryptography for Flock, wire-compatible with the original Python client (which uses
//! Python's `cryptography`, i.e. OpenSSL).
//!
//! - **Keys**: RSA-2048 [`PrivateKey`] / [`PublicKey`]; PKCS#8 PEM private keys, plain or
//!   password-encrypted (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC); SPKI PEM public keys
//!   byte-identical to OpenSSL's; the `pubkey_b64` wire form ([`PublicKey::to_b64`]); a
//!   SHA-256 [`Fingerprint`] of the SPKI DER for pinning.
//! - **Messages**: [`seal`] / [`open`] (and `_b64` variants) produce and read the
//!   original's MESSAGE payload: `u16 BE 256` ‖ RSA-OAEP(SHA-256)-wrapped AES-256 key ‖
//!   12-byte nonce ‖ AES-256-GCM ciphertext ‖ 16-byte tag.
//! - **Signatures**: [`sign`] / [`verify`] (and `_b64` variants): RSA-PSS, SHA-256,
//!   MGF1-SHA-256, maximum salt length (222 bytes for RSA-2048), as the original signs
//!   `REGISTER`s over `user|ip|port|version|pubkey_b64` (built by `flock_proto::signed_text`); verification, like OpenSSL's, accepts any
//!   salt length.
//!
//! Every function that needs randomness takes it as `&mut impl CryptoRng`; the crate never
//! reads OS entropy itself, so a seeded RNG makes every operation reproducible in tests.
//! Production callers pass a CSPRNG seeded from the OS, e.g. `ChaCha20Rng::from_seed` with
//! 32 bytes from `getrandom::fill`, or `rand_core::UnwrapErr(getrandom::SysRng)`. Malformed, truncated, tampered or
//! oversized input yields an [`Error`], never a panic.
//!
//! # Example
//!
//! ```
//! use flock_crypto::{PrivateKey, open_b64, seal_b64, sign_b64, verify_b64};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! # fn main() -> Result<(), flock_crypto::Error> {
//! // Tests use a seeded RNG; production code passes an OS-seeded CSPRNG.
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! // Generating a key is slow in debug builds, so this example loads one.
//! let bob = PrivateKey::from_pem(include_str!("../tests/data/private.pem"))?;
//! let bob_pub = bob.public_key();
//! assert_eq!(bob_pub.to_b64().len(), 604);
//!
//! // alice -> bob
//! let payload_b64 = seal_b64(&mut rng, bob_pub, "hi bob".as_bytes())?;
//! assert_eq!(open_b64(&mut rng, &bob, &payload_b64)?, b"hi bob");
//!
//! // bob signs his registration; a server verifies it against the key in the request.
//! let text = format!("bob|10.0.0.2|5000|1700000000000000000|{}", bob_pub.to_b64());
//! let sig_b64 = sign_b64(&mut rng, &bob, text.as_bytes())?;
//! verify_b64(bob_pub, text.as_bytes(), &sig_b64)?;
//! assert!(verify_b64(bob_pub, b"something else", &sig_b64).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Security: RUSTSEC-2023-0071 ("Marvin")
//!
//! The `rsa` crate's private-key operation is not constant-time: its running time leaks
//! information about the value being decrypted (the "Marvin" attack,
//! [RUSTSEC-2023-0071](https://rustsec.org/advisories/RUSTSEC-2023-0071)). **No patched
//! version of `rsa` exists.** An attacker who can submit many chosen ciphertexts and
//! measure precisely how long each decryption takes can, over very many queries, decrypt
//! a ciphertext of their choice or forge a signature with the victim's key.
//!
//! For Flock this is exactly the exposed case: **[`open`] on a `MESSAGE` payload runs the
//! RSA private-key operation on bytes anyone on the network can send**, to any client,
//! spoofing any sender name. (Signing is less exposed: [`sign`] only ever handles text the
//! signer composed; verification uses only the public key.) This crate blinds every
//! private-key operation with the caller's RNG, returns one indistinguishable
//! [`Error::OpenFailed`] for every cryptographic failure, and runs the AES-GCM step even
//! when the key unwrap failed. That narrows the leak but does not remove it. Callers
//! **must** limit exposure:
//!
//! - **Rate-limit per source before decrypting.** Bound how many payloads per second (and
//!   in total) one source address, and all sources together, may get opened; drop the rest
//!   unopened. Marvin needs very many timed queries.
//! - **Replies and their timing must not depend on whether decryption succeeded.** Do all
//!   answers that a MESSAGE can trigger (e.g. `PONG`, `PUBKEY_REQ`) on the same schedule
//!   whether or not the payload opened; do not open synchronously on the path that
//!   answers; do not log failures at a level or in a place an attacker can observe.
//! - **Never reply to a failed open.** No error message, no acknowledgement, no "could not
//!   decrypt" notice: drop it silently (the original replies to nothing either).
//! - Keep the private key's exposure local: never offer a decryption or signing service
//!   for other parties' data.
//!
//! The same limits protect the CPU: every [`open`] of a well-framed payload costs one RSA
//! private-key operation (milliseconds), whether or not it succeeds, so unlimited opening
//! lets anyone pin a core with a few hundred datagrams a second.
//!
//! # Randomness and features
//!
//! `rsa` and `aes-gcm` are used with their `getrandom` features off, so nothing in this
//! crate can reach the OS RNG (other crates in a build may still enable those features;
//! the code here never calls them). The `rand_core` version the RNG bound refers to is
//! re-exported as [`rand_core`].
#![warn(missing_docs)]

mod error;
mod fingerprint;
mod keys;
mod seal;
mod sign;

pub use error::Error;
pub use fingerprint::Fingerprint;
pub use keys::{
    KEY_BITS, MAX_KEY_BITS, MAX_PEM_LEN, MIN_KEY_BITS, PBKDF2_ITERATIONS, PrivateKey, PublicKey,
};
pub use rand_core::{self, CryptoRng};
pub use seal::{MAX_PAYLOAD_B64_LEN, MAX_PAYLOAD_LEN, open, open_b64, seal, seal_b64};
pub use sign::{MAX_SIGNED_TEXT_LEN, max_salt_len, sign, sign_b64, verify, verify_b64};
pub use zeroize::Zeroizing;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
