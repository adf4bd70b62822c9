//! Username validation shared by the key directory and the client database.

use crate::error::{Result, StoreError};

/// Checks the protocol's username rule, which also makes a name a safe single path
/// component: 3 to 20 characters, each a letter or digit (Unicode) or `_`. No `.`, `/`,
/// `\`, `-`, whitespace or control characters can pass, so `..` and `a/b` are refused.
pub fn validate_username(user: &str) -> Result<()> {
    flock_proto::validate_username(user).map_err(|_| StoreError::InvalidUsername(user.to_owned()))
}
