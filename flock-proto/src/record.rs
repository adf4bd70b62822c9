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

/// The text a registration's signature covers: `user|ip|port|version|pubkey_b64`, with
/// canonical decimals and a dotted-quad IP. The one definition every signer and verifier
/// uses.
///
/// ```
/// # use std::net::Ipv4Addr;
/// let text = flock_proto::signed_text("alice", Ipv4Addr::new(10, 0, 0, 7), 5001, 42, "LS0t");
/// assert_eq!(text, "alice|10.0.0.7|5001|42|LS0t");
/// ```
#[must_use]
pub fn signed_text(user: &str, ip: Ipv4Addr, port: u16, version: u64, pubkey_b64: &str) -> String {
    format!("{user}|{ip}|{port}|{version}|{pubkey_b64}")
}

impl Record {
    /// The text this record's signature covers ([`signed_text`]).
    pub fn signed_text(&self) -> String {
        signed_text(
            &self.user,
            self.ip,
            self.port,
            self.version,
            &self.pubkey_b64,
        )
    }

    /// Whether the record carries an owner key and signature.
    pub fn is_signed(&self) -> bool {
        !self.pubkey_b64.is_empty()
    }
}
