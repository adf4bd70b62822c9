//! A user record as the ring stores it.

use std::net::Ipv4Addr;

/// username -> where the user is, and the key that owns the name.
///
/// A signed record carries the owner's public key, a version and the RSA-PSS signature
/// over `user|ip|port|version|pubkey_b64`. An unsigned record (the design document's
/// 3-field REGISTER) has an empty `pubkey_b64` and `sig_b64` and version 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// Username.
    pub user: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Version (client clock in ns); 0 for unsigned records.
    pub version: u64,
    /// Base64 of the SPKI PEM public key; empty for unsigned records.
    pub pubkey_b64: String,
    /// Base64 of the signature; empty for unsigned records.
    pub sig_b64: String,
}

impl Record {
    /// Whether the record carries an owner key and signature.
    pub fn is_signed(&self) -> bool {
        !self.pubkey_b64.is_empty()
    }
}
