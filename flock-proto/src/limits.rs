//! Named sizes and bounds of the Flock wire protocol.
//!
//! Every number here is a fact about the original Python implementation or a bound we
//! chose; each constant says which.

/// Largest datagram we send or accept: the IPv4 UDP payload maximum
/// (65535 − 20 bytes IP header − 8 bytes UDP header). [`crate::Frame::decode`] rejects
/// anything longer with [`crate::DecodeError::TooLong`].
pub const MAX_DATAGRAM: usize = 65_507;

/// Largest datagram an original client can receive: it reads with an 8192-byte buffer and
/// keeps at most 8191 bytes. A `MESSAGE` to an original peer must not exceed this, or it
/// is cut and fails to decrypt.
pub const ORIGINAL_CLIENT_MAX_DATAGRAM: usize = 8_191;

/// The original server's receive buffer (bytes). A forwarded signed `REGISTER` (about
/// 1000 bytes with an RSA-2048 key) barely fits or does not; a later version of the
/// original raised it to 65535.
pub const ORIGINAL_SERVER_RECV: usize = 1_024;

/// The original client's receive buffer (bytes).
pub const ORIGINAL_CLIENT_RECV: usize = 8_192;

/// Fewest characters (Unicode code points) in a username.
pub const USERNAME_MIN_CHARS: usize = 3;

/// Most characters (Unicode code points) in a username.
pub const USERNAME_MAX_CHARS: usize = 20;

/// Length of `pubkey_b64` for an RSA-2048 key: standard base64 of the 451-byte SPKI PEM
/// text (64-character lines, LF, trailing newline).
pub const PUBKEY_B64_LEN_RSA2048: usize = 604;

/// Length of `sig_b64`: standard base64 (with padding) of a 256-byte RSA-2048 signature.
pub const SIG_B64_LEN: usize = 344;

/// Largest registration `version`: the original stores it as a signed 64-bit integer.
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// Most fields any fixed-shape frame has after its verb (the forwarded `REGISTER`).
pub const MAX_FIELDS: usize = 8;

/// Most entries a ring frame's peer or record list may announce (our bound: a decoder
/// refuses more, so hostile input cannot make it allocate much).
pub const RING_MAX_LIST: usize = 4_096;

/// Server command port of the original.
pub const SERVER_PORT: u16 = 12_345;

/// Server port that answers `PING` only.
pub const SERVER_PING_PORT: u16 = 12_346;

/// Multicast discovery group (`DISCOVER_SERVER`).
pub const DISCOVERY_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 1);

/// Multicast discovery port.
pub const DISCOVERY_PORT: u16 = 10_003;

/// Multicast TTL for discovery datagrams.
pub const DISCOVERY_TTL: u32 = 1;

/// Default port of the web UI.
pub const WEB_UI_PORT: u16 = 5_000;

// Checked at compile time: the sizes follow from one another.
const _: () = {
    // 4 * ceil(256 / 3) = 344: the signature length follows from the key size.
    assert!(SIG_B64_LEN == 256usize.div_ceil(3) * 4);
    // 4 * ceil(451 / 3) = 604: an RSA-2048 SPKI PEM is 451 bytes.
    assert!(PUBKEY_B64_LEN_RSA2048 == 451usize.div_ceil(3) * 4);
    assert!(MAX_DATAGRAM == 65_535 - 20 - 8);
    assert!(ORIGINAL_CLIENT_MAX_DATAGRAM < ORIGINAL_CLIENT_RECV);
};
