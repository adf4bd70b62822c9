//! The public decode error.

/// Why a datagram did not decode. nom's types never appear in the public API.
///
/// Non-exhaustive: new grammar rules may bring new reasons; match the ones you count and
/// use [`DecodeError::verb`] for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is empty.
    #[error("empty datagram")]
    Empty,
    /// The datagram is longer than [`crate::limits::MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is too long")]
    TooLong(usize),
    /// The datagram is not valid UTF-8.
    #[error("datagram is not valid UTF-8")]
    NotUtf8,
    /// The first word is not a verb we know.
    #[error("unknown verb")]
    UnknownVerb,
    /// A field the verb needs is missing, or there are extra fields.
    #[error("{verb}: wrong number of fields")]
    Fields {
        /// The verb whose fields were wrong.
        verb: &'static str,
    },
    /// A field is present but malformed.
    #[error("{verb}: bad {field}")]
    BadField {
        /// The verb.
        verb: &'static str,
        /// Which field.
        field: &'static str,
    },
}

impl DecodeError {
    /// The verb whose fields were wrong, when the verb was recognised.
    ///
    /// A server answers `ERROR Invalid registration payload` when this is
    /// `Some("REGISTER")`, as the original does; other errors are dropped silently.
    pub fn verb(&self) -> Option<&'static str> {
        match self {
            Self::Fields { verb } | Self::BadField { verb, .. } => Some(verb),
            Self::Empty | Self::TooLong(_) | Self::NotUtf8 | Self::UnknownVerb => None,
        }
    }
}
