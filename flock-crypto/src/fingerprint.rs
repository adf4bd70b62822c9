//! Key fingerprints for pinning.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256};

use crate::Error;

/// SHA-256 of a public key's SPKI DER encoding.
///
/// Displays (and parses, with [`FromStr`]) as 64 lowercase hex digits. Two keys have the same
/// fingerprint exactly when they are the same key, whatever text form they arrived in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of the given SPKI DER bytes.
    pub(crate) fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Wraps 32 raw digest bytes (for example read back from storage).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw digest bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(Error::InvalidFingerprint);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or(Error::InvalidFingerprint)?;
            let lo = hex_digit(pair[1]).ok_or(Error::InvalidFingerprint)?;
            *byte = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
