//! RSA key pairs and their text forms (PKCS#8, SPKI, `pubkey_b64`).

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::CryptoRng;
use rsa::pkcs8::der::SecretDocument;
use rsa::pkcs8::pkcs5::pbes2;
use rsa::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
    EncryptedPrivateKeyInfoRef, LineEnding, PrivateKeyInfoRef,
};
use rsa::traits::PublicKeyParts as _;
use zeroize::Zeroizing;

use crate::{Error, Fingerprint};

/// Size of the keys [`PrivateKey::generate`] makes, in bits (the original's size).
pub const KEY_BITS: usize = 2048;
/// Smallest RSA modulus accepted when loading a key, in bits.
pub const MIN_KEY_BITS: usize = 2048;
/// Largest RSA modulus accepted when loading a key, in bits (bounds the cost of every
/// operation on an attacker-chosen key).
pub const MAX_KEY_BITS: usize = 4096;

/// Longest PEM text accepted by the loaders, in bytes (a 4096-bit encrypted key is ~3.4 KB).
pub const MAX_PEM_LEN: usize = 16 * 1024;

/// PBKDF2-HMAC-SHA256 iterations used by [`PrivateKey::to_encrypted_pem`]
/// (the OWASP recommendation; the original writes 2048, and reads any count).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";
const PLAIN_LABEL: &str = "PRIVATE KEY";

/// An RSA public key (SPKI), as registered and resolved on the ring.
///
/// Two keys are equal when they are the same RSA key. `Debug` shows the fingerprint.
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) inner: rsa::PublicKey,
    der: Box<[u8]>,
    pem: String,
    fingerprint: Fingerprint,
}

impl PublicKey {
    fn from_rsa(inner: rsa::PublicKey) -> Result<Self, Error> {
        let bits = inner.n().bit_width_vartime() as usize;
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(Error::UnsupportedKeySize { bits });
        }
        let der: Box<[u8]> = inner
            .to_public_key_der()
            .map_err(|_| Error::Internal)?
            .as_bytes()
            .into();
        let pem = inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| Error::Internal)?;
        let fingerprint = Fingerprint::of_der(&der);
        Ok(Self {
            inner,
            der,
            pem,
            fingerprint,
        })
    }

    /// Parses an SPKI public key in PEM form (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::InvalidKey`] or [`Error::UnsupportedKeySize`].
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        check_len(pem.len(), MAX_PEM_LEN)?;
        let inner = rsa::PublicKey::from_public_key_pem(pem).map_err(|_| Error::InvalidKey)?;
        Self::from_rsa(inner)
    }

    /// Parses an SPKI public key in DER form.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::InvalidKey`] or [`Error::UnsupportedKeySize`].
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        check_len(der.len(), MAX_PEM_LEN)?;
        let inner = rsa::PublicKey::from_public_key_der(der).map_err(|_| Error::InvalidKey)?;
        Self::from_rsa(inner)
    }

    /// Parses the `pubkey_b64` wire form: standard base64 of the SPKI PEM text.
    ///
    /// Only the canonical form is accepted (the one [`to_b64`](Self::to_b64) produces and
    /// OpenSSL writes), so that one key has exactly one wire string: the original compares
    /// keys as strings, and signatures cover the string.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::Base64`], [`Error::InvalidKey`] (including a
    /// non-canonical text form) or [`Error::UnsupportedKeySize`].
    pub fn from_b64(pubkey_b64: &str) -> Result<Self, Error> {
        check_len(pubkey_b64.len(), MAX_PEM_LEN)?;
        let pem = BASE64.decode(pubkey_b64).map_err(|_| Error::Base64)?;
        let pem = core::str::from_utf8(&pem).map_err(|_| Error::InvalidKey)?;
        let key = Self::from_pem(pem)?;
        if key.pem != pem {
            return Err(Error::InvalidKey);
        }
        Ok(key)
    }

    /// The SPKI PEM text: 64-character lines, LF line endings, trailing newline
    /// (byte-identical to OpenSSL's output).
    #[must_use]
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// The SPKI DER bytes.
    #[must_use]
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// The `pubkey_b64` wire form: standard base64 (with padding) of [`to_pem`](Self::to_pem).
    /// 604 characters for an RSA-2048 key.
    #[must_use]
    pub fn to_b64(&self) -> String {
        BASE64.encode(self.pem.as_bytes())
    }

    /// SHA-256 of the SPKI DER, for pinning.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The modulus size in bits (2048 for Flock's keys).
    #[must_use]
    pub fn bits(&self) -> usize {
        self.inner.n().bit_width_vartime() as usize
    }

    /// The modulus size in bytes: the length of a signature and of a wrapped key.
    pub(crate) fn size(&self) -> usize {
        self.inner.size()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for PublicKey {}

impl core::hash::Hash for PublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.der.hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .field("fingerprint", &format_args!("{}", self.fingerprint))
            .finish()
    }
}

/// An RSA private key with its public half.
///
/// `Debug` shows only the public key's fingerprint. The secret parts are zeroized on drop
/// (by the `rsa` crate).
#[derive(Clone)]
pub struct PrivateKey {
    pub(crate) inner: rsa::PrivateKey,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a fresh RSA-2048 key ([`KEY_BITS`]) with public exponent 65537.
    ///
    /// Slow: tens of milliseconds in release builds, seconds in unoptimised ones.
    ///
    /// # Errors
    /// [`Error::Internal`] if generation fails (it does not with a working RNG).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<Self, Error> {
        let inner = rsa::PrivateKey::new(rng, KEY_BITS).map_err(|_| Error::Internal)?;
        Self::from_rsa(inner)
    }

    fn from_rsa(inner: rsa::PrivateKey) -> Result<Self, Error> {
        let public = PublicKey::from_rsa(inner.to_public_key())?;
        Ok(Self { inner, public })
    }

    /// Parses an unencrypted PKCS#8 private key in PEM form (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`Error::PasswordRequired`] for an `ENCRYPTED PRIVATE KEY` (use
    /// [`from_encrypted_pem`](Self::from_encrypted_pem)); otherwise [`Error::TooLarge`],
    /// [`Error::InvalidKey`] or [`Error::UnsupportedKeySize`].
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        check_len(pem.len(), MAX_PEM_LEN)?;
        let (label, doc) = SecretDocument::from_pem(pem).map_err(|_| Error::InvalidKey)?;
        match label {
            PLAIN_LABEL => Self::from_der(doc.as_bytes()),
            ENCRYPTED_LABEL => Err(Error::PasswordRequired),
            _ => Err(Error::InvalidKey),
        }
    }

    /// Parses a password-encrypted PKCS#8 private key in PEM form
    /// (`-----BEGIN ENCRYPTED PRIVATE KEY-----`), as the original writes them (PBES2 with
    /// PBKDF2-HMAC-SHA256 and AES-256-CBC; other PBES2 schemes are read too).
    ///
    /// # Errors
    /// [`Error::WrongPassword`] if the key does not decrypt with `password`; otherwise
    /// [`Error::TooLarge`], [`Error::InvalidKey`] or [`Error::UnsupportedKeySize`].
    pub fn from_encrypted_pem(pem: &str, password: &str) -> Result<Self, Error> {
        check_len(pem.len(), MAX_PEM_LEN)?;
        let (label, doc) =
            rsa::pkcs8::der::Document::from_pem(pem).map_err(|_| Error::InvalidKey)?;
        if label != ENCRYPTED_LABEL {
            return Err(Error::InvalidKey);
        }
        let info =
            EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes()).map_err(|_| Error::InvalidKey)?;
        // A wrong password almost always fails the CBC padding check; when the padding
        // happens to pass, the garbage fails to parse as a PKCS#8 structure.
        let plain = info.decrypt(password).map_err(|_| Error::WrongPassword)?;
        PrivateKeyInfoRef::try_from(plain.as_bytes()).map_err(|_| Error::WrongPassword)?;
        Self::from_der(plain.as_bytes())
    }

    /// Parses an unencrypted PKCS#8 private key in DER form.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::InvalidKey`] or [`Error::UnsupportedKeySize`].
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        check_len(der.len(), MAX_PEM_LEN)?;
        let inner = rsa::PrivateKey::from_pkcs8_der(der).map_err(|_| Error::InvalidKey)?;
        Self::from_rsa(inner)
    }

    /// The unencrypted PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`, 64-character lines,
    /// LF, trailing newline). Zeroized on drop.
    ///
    /// # Errors
    /// [`Error::Internal`] if encoding fails (it does not for a loaded key).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Internal)
    }

    /// The PKCS#8 PEM text encrypted with `password`
    /// (`-----BEGIN ENCRYPTED PRIVATE KEY-----`): PBES2 with PBKDF2-HMAC-SHA256
    /// ([`PBKDF2_ITERATIONS`] iterations, 16-byte salt) and AES-256-CBC, the scheme the
    /// original writes and reads. The salt and IV come from `rng`.
    ///
    /// # Errors
    /// [`Error::Internal`] if encoding fails (it does not for a loaded key).
    pub fn to_encrypted_pem<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        password: &str,
    ) -> Result<String, Error> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut iv);
        let params =
            pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, iv)
                .map_err(|_| Error::Internal)?;
        let plain = self.inner.to_pkcs8_der().map_err(|_| Error::Internal)?;
        let info = PrivateKeyInfoRef::try_from(plain.as_bytes()).map_err(|_| Error::Internal)?;
        let encrypted = info
            .encrypt_with_params(params, password)
            .map_err(|_| Error::Internal)?;
        let pem = encrypted
            .to_pem(ENCRYPTED_LABEL, LineEnding::LF)
            .map_err(|_| Error::Internal)?;
        Ok(pem.to_string())
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Rejects inputs longer than `max` before any parsing.
pub(crate) fn check_len(len: usize, max: usize) -> Result<(), Error> {
    if len > max {
        Err(Error::TooLarge { len, max })
    } else {
        Ok(())
    }
}
