//! The original's registration field rules, as typed checks.
//!
//! The codec applies them to `REGISTER` (a frame that breaks them does not decode: the
//! error is [`crate::DecodeError::BadField`] with verb `REGISTER`, to which a server
//! answers `ERROR Invalid registration payload`). Servers and clients can call them
//! directly on values they build.

use std::net::Ipv4Addr;

use crate::limits::{MAX_VERSION, USERNAME_MAX_CHARS, USERNAME_MIN_CHARS};

/// Why a registration field breaks the original's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The username has fewer than 3 or more than 20 characters (code points).
    #[error("username must have 3 to 20 characters, not {0}")]
    UsernameLength(usize),
    /// The username contains a character that is not a letter, a digit or `_`.
    #[error("username contains {0:?}: only letters, digits and '_' are allowed")]
    UsernameChar(char),
    /// The address is not a dotted-quad IPv4 address.
    #[error("not an IPv4 address")]
    Ip,
    /// The port is 0 (ports are 1 to 65535).
    #[error("port must be 1 to 65535")]
    Port,
    /// The version is 0 or does not fit a signed 64-bit integer.
    #[error("version must be 1 to 9223372036854775807")]
    Version,
}

/// Whether `c` may appear in a username: a Unicode letter or digit, or `_`.
///
/// The original uses Python's `str.isalnum()`. Rust's `char::is_alphabetic` also admits
/// the few combining marks with the `Other_Alphabetic` property (e.g. Devanagari vowel
/// signs), which Python rejects; every ASCII and Latin/Greek/Cyrillic/CJK name is judged
/// the same way by both.
pub fn is_username_char(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// Checks the username rules: 3 to 20 characters, each a letter, a digit or `_`.
///
/// ```
/// use flock_proto::validate::{validate_username, ValidationError};
/// assert_eq!(validate_username("mañana_42"), Ok(()));
/// assert_eq!(validate_username("al"), Err(ValidationError::UsernameLength(2)));
/// assert_eq!(validate_username("al-ice"), Err(ValidationError::UsernameChar('-')));
/// ```
pub fn validate_username(user: &str) -> Result<(), ValidationError> {
    let mut count = 0usize;
    for c in user.chars() {
        if !is_username_char(c) {
            return Err(ValidationError::UsernameChar(c));
        }
        count += 1;
    }
    if (USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&count) {
        Ok(())
    } else {
        Err(ValidationError::UsernameLength(count))
    }
}

/// Parses a dotted-quad IPv4 address (`a.b.c.d`, decimal octets without leading zeros).
pub fn parse_ipv4(text: &str) -> Result<Ipv4Addr, ValidationError> {
    text.parse().map_err(|_| ValidationError::Ip)
}

/// Checks that a port is 1 to 65535.
pub fn validate_port(port: u16) -> Result<u16, ValidationError> {
    if port == 0 {
        Err(ValidationError::Port)
    } else {
        Ok(port)
    }
}

/// Checks that a version is positive and fits a signed 64-bit integer.
pub fn validate_version(version: u64) -> Result<u64, ValidationError> {
    if version == 0 || version > MAX_VERSION {
        Err(ValidationError::Version)
    } else {
        Ok(version)
    }
}

/// Checks every rule the original applies to a registration's plain fields.
pub fn validate_registration(user: &str, port: u16, version: u64) -> Result<(), ValidationError> {
    validate_username(user)?;
    validate_port(port)?;
    validate_version(version)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in [
            "abc",
            "user_42",
            "Ωmega",
            "mañana",
            "___",
            "12345678901234567890",
        ] {
            assert_eq!(validate_username(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_username("123456789012345678901"),
            Err(ValidationError::UsernameLength(21))
        );
        assert_eq!(
            validate_username(""),
            Err(ValidationError::UsernameLength(0))
        );
        assert_eq!(
            validate_username("a b"),
            Err(ValidationError::UsernameChar(' '))
        );
        assert_eq!(
            validate_username("😀smile"),
            Err(ValidationError::UsernameChar('😀'))
        );
        // Three code points, six bytes: the limit counts characters, not bytes.
        assert_eq!(validate_username("ΩΩΩ"), Ok(()));
    }

    #[test]
    fn numbers() {
        assert_eq!(validate_port(0), Err(ValidationError::Port));
        assert_eq!(validate_port(65535), Ok(65535));
        assert_eq!(validate_version(0), Err(ValidationError::Version));
        assert_eq!(validate_version(MAX_VERSION), Ok(MAX_VERSION));
        assert_eq!(
            validate_version(MAX_VERSION + 1),
            Err(ValidationError::Version)
        );
        assert_eq!(parse_ipv4("10.0.0.1"), Ok(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse_ipv4("010.0.0.1"), Err(ValidationError::Ip));
        assert_eq!(parse_ipv4("1.2.3"), Err(ValidationError::Ip));
    }
}
