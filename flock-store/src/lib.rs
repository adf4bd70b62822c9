//! flock-store
#![warn(missing_docs)]
