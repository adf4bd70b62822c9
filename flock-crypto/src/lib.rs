//! flock-crypto
#![warn(missing_docs)]
