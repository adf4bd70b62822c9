//! Our ring protocol: server-to-server frames that start with `RING `.
//!
//! Original peers never see these. Owned by the chord work; see `flock-chord`.

use crate::DecodeError;

/// A frame of our ring protocol (`RING ...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RingFrame {
    /// Placeholder until the ring protocol lands.
    Nop,
}

/// Decodes the text after `RING ` (the dispatcher in the codec strips the prefix).
pub fn decode(rest: &str) -> Result<RingFrame, DecodeError> {
    match rest {
        "NOP" => Ok(RingFrame::Nop),
        _ => Err(DecodeError::UnknownVerb),
    }
}

impl RingFrame {
    /// Appends the whole frame, `RING ` prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Nop => out.extend_from_slice(b"RING NOP"),
        }
    }
}
