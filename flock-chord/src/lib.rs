//! flock-chord
#![warn(missing_docs)]

mod store;
pub use store::{StoreOp, Table};
