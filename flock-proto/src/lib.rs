//! Flock's wire protocol.
#![warn(missing_docs)]

mod error;
mod frame;
mod record;
pub mod ring;

pub use error::DecodeError;
pub use frame::{AnswerTo, ErrorReply, Frame, LegacyRecord, OkReply, Register};
pub use record::Record;
