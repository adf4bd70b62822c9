//! The verb tables: every verb of the client grammar ([`Verb`]) and of the ring grammar
//! ([`RingVerb`](crate::ring::RingVerb)), each spelled exactly once.
//!
//! Decoding dispatches on `from_text`, encoding writes `as_str`, and
//! [`Frame::verb`](crate::Frame::verb) / [`RingFrame::verb`](crate::ring::RingFrame::verb)
//! read the same table, so a verb cannot be spelled two ways.

use crate::DecodeError;

/// Declares a verb table: the enum, `ALL`, `as_str`, `from_text`, `FromStr` and `Display`.
macro_rules! verbs {
    (
        $(#[$meta:meta])*
        $name:ident { $($variant:ident = $text:literal,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`.")]
                $variant,
            )*
        }

        impl $name {
            /// Every verb, in table order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The verb as it is sent.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The verb spelled exactly `text` (case-sensitive), if there is one.
            pub fn from_text(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = DecodeError;

            /// [`Self::from_text`]; an unknown word is [`DecodeError::UnknownVerb`].
            fn from_str(text: &str) -> Result<Self, DecodeError> {
                Self::from_text(text).ok_or(DecodeError::UnknownVerb)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

verbs! {
    /// The first word of a datagram ([`Frame::verb`](crate::Frame::verb) is its text).
    ///
    /// `DISCOVER_SERVER` also has a proxied form, `DISCOVER_SERVER:<ip>:<port>`, written as
    /// this verb immediately followed by `:`.
    Verb {
        Discover = "DISCOVER",
        DiscoverServer = "DISCOVER_SERVER",
        Ping = "PING",
        Pong = "PONG",
        Range = "RANGE",
        Register = "REGISTER",
        Resolve = "RESOLVE",
        Status = "STATUS",
        Snapshot = "SNAPSHOT",
        Checksum = "CHECKSUM",
        Ok = "OK",
        Error = "ERROR",
        Join = "JOIN",
        PredChange = "PRED_CHANGE",
        Succ = "SUCC",
        Fix = "FIX",
        Replic = "REPLIC",
        Takeover = "TAKEOVER",
        DropReplics = "DROP_REPLICS",
        Kill = "KILL",
        Ring = "RING",
        Message = "MESSAGE",
        PubkeyReq = "PUBKEY_REQ",
        PubkeyRes = "PUBKEY_RES",
        Hello = "HELLO",
        SecureMessage = "SMESSAGE",
        Ack = "ACK",
        Lookup = "LOOKUP",
        Found = "FOUND",
        NotFound = "NOTFOUND",
    }
}

verbs! {
    /// The word after `RING ` ([`RingFrame::verb`](crate::ring::RingFrame::verb) is its
    /// text). See [`crate::ring`] for each verb's fields.
    RingVerb {
        Discover = "DISCOVER",
        Here = "HERE",
        Cookie = "COOKIE",
        Join = "JOIN",
        Welcome = "WELCOME",
        Refuse = "REFUSE",
        Records = "RECORDS",
        Ack = "ACK",
        GetState = "GET_STATE",
        State = "STATE",
        Rectify = "RECTIFY",
        Ping = "PING",
        Find = "FIND",
        Refer = "REFER",
        Found = "FOUND",
        Busy = "BUSY",
        Replicate = "REPLICATE",
        Sync = "SYNC",
        Synced = "SYNCED",
        Fetch = "FETCH",
        Fix = "FIX",
        Leave = "LEAVE",
        Drop = "DROP",
    }
}
