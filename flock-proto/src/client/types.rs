//! The machine's inputs and outputs as data: configuration, actions, storage effects,
//! events and errors.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The extension feature token this machine advertises in `HELLO` (signed messages with
/// ids and acknowledgements).
pub const FEATURE_ACK1: &str = "ack1";

/// The feature token of reassembly ([`ClientConfig::parts`]): the peer takes the parts
/// of a long text with part markers inside the sealed payload, reassembles them and
/// acknowledges them only once the whole text is there.
pub const FEATURE_PARTS1: &str = "parts1";

/// Settings of a [`Client`](super::Client). Every duration is in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The local username (3-20 letters, digits or `_`).
    pub user: String,
    /// The IPv4 address peers reach us on (registered with the ring).
    pub ip: Ipv4Addr,
    /// The UDP port peers reach us on (registered with the ring).
    pub port: u16,
    /// How long to wait for a server's answer (the original waits 3 s).
    pub request_timeout_ms: u64,
    /// Consecutive unanswered server requests after which the server counts as lost.
    pub server_failures: u32,
    /// How often an idle connection checks that the server is alive (`PING`).
    pub keepalive_ms: u64,
    /// How long to wait for a peer's `PONG` (the original waits 0.5 s).
    pub ping_timeout_ms: u64,
    /// After a `PONG` from a peer whose features are unknown, how long to wait for its
    /// `HELLO` before treating it as an original client.
    pub hello_grace_ms: u64,
    /// First retry delay of an undelivered message; doubles per attempt.
    pub retry_base_ms: u64,
    /// Largest retry delay.
    pub retry_max_ms: u64,
    /// Give up on a message (status failed) after this many attempts; `None`: never.
    pub max_attempts: Option<u32>,
    /// Advertise and use the `ack1` extension with peers that advertise it too.
    pub extension: bool,
    /// Look users up with the lookup extension (`LOOKUP <user> <rid>`, answered with the
    /// signed record and the id echoed) first; `RESOLVE` once the server lets a `LOOKUP`
    /// go unanswered (an original server). Off: `RESOLVE` only.
    pub lookup_extension: bool,
    /// Per source address: unsigned `MESSAGE` payloads opened per second (RSA
    /// decryption of attacker-chosen bytes, see RUSTSEC-2023-0071), and the burst.
    pub open_rate: (f64, f64),
    /// All sources together: unsigned `MESSAGE` payloads opened per second, and the
    /// burst (beside the per-source [`ClientConfig::open_rate`], so that many sources
    /// together cannot make us decrypt chosen bytes at will either).
    pub open_rate_global: (f64, f64),
    /// All sources together: lookups that incoming datagrams may start per second (a
    /// signed message from a sender whose key we must learn), and the burst. Lookups
    /// the user asks for (sending, `lookup`) are not limited.
    pub lookup_rate: (f64, f64),
    /// Most peers the machine keeps state for. When full, a peer with nothing pinned,
    /// queued or held is forgotten to make room; pinned contacts never are, and a new
    /// name from the network is refused if nothing can be forgotten.
    pub max_peers: usize,
    /// Per source address: signed `SMESSAGE`s processed per second, and the burst (their
    /// signature is checked against the pinned key before anything is decrypted).
    pub signed_rate: (f64, f64),
    /// Per source address: replies that are larger than the request (`PUBKEY_RES`,
    /// `HELLO`) per second, and the burst.
    pub reply_rate: (f64, f64),
    /// How long a signed message from a sender whose key is not yet known waits for the
    /// key to be resolved.
    pub verify_wait_ms: u64,
    /// Advertise and use reassembly ([`FEATURE_PARTS1`], needs
    /// [`ClientConfig::extension`]): the parts of a long text reach such a peer as one
    /// message. Off: parts are sent and received as separate messages (as an `ack1`-only
    /// peer does).
    pub parts: bool,
    /// How long the parts of an incoming text may take to arrive, from the first one;
    /// then what came is dropped and reported ([`Warning::Incomplete`]), never shown cut.
    pub reassembly_timeout_ms: u64,
    /// Incoming texts being reassembled at once per sender; parts of more are dropped
    /// unacknowledged (the sender sends them again) and counted
    /// ([`Counters::parts_refused`]).
    pub reassembly_per_peer: usize,
    /// Bytes of incoming parts held for reassembly, all senders together (the same).
    pub reassembly_bytes: usize,
}

impl ClientConfig {
    /// Defaults for `user` reachable on `ip:port`.
    pub fn new(user: impl Into<String>, ip: Ipv4Addr, port: u16) -> Self {
        Self {
            user: user.into(),
            ip,
            port,
            request_timeout_ms: 3_000,
            server_failures: 2,
            keepalive_ms: 3_000,
            ping_timeout_ms: 500,
            hello_grace_ms: 100,
            retry_base_ms: 1_000,
            retry_max_ms: 30_000,
            max_attempts: None,
            extension: true,
            lookup_extension: true,
            open_rate: (20.0, 50.0),
            open_rate_global: (50.0, 100.0),
            lookup_rate: (5.0, 20.0),
            max_peers: 1_024,
            signed_rate: (500.0, 1_000.0),
            reply_rate: (20.0, 50.0),
            verify_wait_ms: 10_000,
            parts: true,
            reassembly_timeout_ms: 300_000,
            reassembly_per_peer: 4,
            reassembly_bytes: 16 * super::MAX_TEXT_BYTES,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddrV4,
    /// The whole datagram (an encoded [`Frame`](crate::Frame)).
    pub datagram: Vec<u8>,
}

/// What the driver must do, in order. Drain with [`Client::poll_action`](super::Client::poll_action)
/// after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a datagram from the client's socket.
    Send(Transmit),
    /// Apply a change to the client database before acting on anything that follows.
    Store(StoreOp),
    /// Tell the application.
    Event(Event),
}

/// Delivery state of an outgoing message ([`MessageStatus`] minus `received`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting in the outbox.
    Queued,
    /// On the wire; no acknowledgement (yet, or ever: original peers send none).
    Sent,
    /// Acknowledged by the recipient (extension peers only).
    Delivered,
    /// Given up on (unknown user, key changed, too many attempts); the user may resend.
    Failed,
}

impl Status {
    /// The status's name, as the client database stores it and the interfaces show it.
    ///
    /// ```
    /// assert_eq!(flock_proto::client::Status::Delivered.as_str(), "delivered");
    /// ```
    pub fn as_str(self) -> &'static str {
        MessageStatus::from(self).as_str()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message of the local history stands: received, or one of the outgoing
/// [`Status`]es. `flock_store::ClientDb` stores [`MessageStatus::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// An incoming message (stored when it arrived).
    Received,
    /// Outgoing, waiting in the outbox for the peer.
    Queued,
    /// Outgoing, sent on the wire; no delivery acknowledgement yet.
    Sent,
    /// Outgoing, acknowledged by the peer.
    Delivered,
    /// Outgoing, given up on; shown to the user, never silently dropped.
    Failed,
}

impl MessageStatus {
    /// Every status, in the order of the names' table.
    pub const ALL: [Self; 5] = [
        Self::Received,
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Failed,
    ];

    /// The status's name: `received`, `queued`, `sent`, `delivered` or `failed` (the
    /// client database's `status` column; the one table of these names).
    ///
    /// ```
    /// use flock_proto::client::MessageStatus;
    /// assert_eq!(MessageStatus::Received.as_str(), "received");
    /// assert_eq!("failed".parse(), Ok(MessageStatus::Failed));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`MessageStatus::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message status {0:?}")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for MessageStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl From<Status> for MessageStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Queued => Self::Queued,
            Status::Sent => Self::Sent,
            Status::Delivered => Self::Delivered,
            Status::Failed => Self::Failed,
        }
    }
}

/// A storage effect, to be applied to the client database (`flock_store::ClientDb`).
///
/// Messages are named by `(peer, msg_id)`; `msg_id` is the machine's id for an outgoing
/// message (also the extension's wire id).
///
/// Exhaustive on purpose (as is [`Action`]): a driver must apply every effect, so a new
/// one is a breaking change that the driver's `match` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// A new outgoing message, already sealed: store it as queued with its sealed payload
    /// in the outbox, due now (`ClientDb::queue_outgoing`). Comes before its first send.
    QueueOutgoing {
        /// Recipient.
        to: String,
        /// Plaintext for the local history.
        text: String,
        /// Message id.
        msg_id: u64,
        /// Sealed payload (the only form the outbox keeps).
        payload_b64: String,
        /// Unix ms.
        at_ms: u64,
    },
    /// A new outgoing message whose recipient's key is not known yet: history only,
    /// status queued (`ClientDb::insert_outgoing`). An [`StoreOp::Enqueue`] follows once
    /// the key is known.
    SaveOutgoing {
        /// Recipient.
        to: String,
        /// Plaintext for the local history.
        text: String,
        /// Message id.
        msg_id: u64,
        /// Unix ms.
        at_ms: u64,
    },
    /// The sealed payload of a message saved by [`StoreOp::SaveOutgoing`] joins the outbox
    /// (`ClientDb::outbox_enqueue`).
    Enqueue {
        /// Recipient.
        to: String,
        /// Message id (a part's own id for a part).
        msg_id: u64,
        /// Sealed payload.
        payload_b64: String,
        /// Unix ms.
        at_ms: u64,
        /// For one part of a long text: which (`ClientDb::outbox_enqueue_part`; the
        /// message row is the one saved with the text's id, [`Part::of`]).
        part: Option<Part>,
    },
    /// One part of a long text needs no more sending (acknowledged, or sent to an
    /// original peer): its outbox entry goes (`ClientDb::outbox_remove`). The message's
    /// own status follows with the text's id once every part is done.
    PartDone {
        /// Recipient.
        to: String,
        /// The part's id.
        msg_id: u64,
        /// The text's id ([`Part::of`]).
        of: u64,
    },
    /// A delivery attempt was made; the next is due at `next_attempt_at_ms`
    /// (`ClientDb::outbox_mark_attempt`).
    Attempt {
        /// Recipient.
        to: String,
        /// Message id.
        msg_id: u64,
        /// Unix ms.
        next_attempt_at_ms: u64,
    },
    /// An extension message went on the wire for the first time: status sent; it stays in
    /// the outbox until acknowledged.
    Sent {
        /// Recipient.
        to: String,
        /// Message id.
        msg_id: u64,
    },
    /// An original-format message went on the wire after the peer answered `PING`: this
    /// is as far as an original peer's delivery goes. Remove it from the outbox, status
    /// sent.
    SentFinal {
        /// Recipient.
        to: String,
        /// Message id.
        msg_id: u64,
    },
    /// The recipient acknowledged the message: delivered, out of the outbox
    /// (`ClientDb::delivered`).
    Delivered {
        /// Recipient.
        to: String,
        /// Message id.
        msg_id: u64,
    },
    /// Give up on the message: out of the outbox, status failed.
    Failed {
        /// Recipient.
        to: String,
        /// Message id.
        msg_id: u64,
    },
    /// A message arrived and opened. Store it (with duplicate suppression by
    /// `(from, msg_id)` when it has an id: `ClientDb::insert_incoming_once`), and only
    /// once that is durable send `ack`, whether or not it was a duplicate.
    Incoming {
        /// Sender (authenticated when `authenticated`).
        from: String,
        /// Plaintext.
        text: String,
        /// The sender's message id (extension messages).
        msg_id: Option<u64>,
        /// Unix ms.
        at_ms: u64,
        /// Signed by the sender's pinned key (an original `MESSAGE` is not).
        authenticated: bool,
        /// The acknowledgements to send after the message is stored: one for an
        /// extension message, one per part for a reassembled text, none for an original
        /// `MESSAGE`.
        acks: Vec<Transmit>,
    },
    /// Trust on first use: pin this key for `user` (`ClientDb::pin_contact`).
    PinKey {
        /// Contact.
        user: String,
        /// Key, wire form.
        pubkey_b64: String,
        /// Its fingerprint (hex SHA-256 of the SPKI DER).
        fingerprint: String,
        /// Unix ms.
        at_ms: u64,
    },
    /// A different key was seen for a pinned contact: keep it pending
    /// (`ClientDb::set_pending_key`).
    PendingKey {
        /// Contact.
        user: String,
        /// The new key, wire form.
        pubkey_b64: String,
        /// Its fingerprint.
        fingerprint: String,
        /// Unix ms.
        at_ms: u64,
    },
    /// The user accepted the pending key (`ClientDb::accept_pending_key`).
    AcceptKey {
        /// Contact.
        user: String,
        /// Unix ms.
        at_ms: u64,
    },
    /// The user rejected the pending key (`ClientDb::reject_pending_key`).
    RejectKey {
        /// Contact.
        user: String,
    },
    /// `user` signs their messages (a signed message or acknowledgement verified with
    /// the pinned key, for the first time): remember it across restarts
    /// (`ClientDb::set_signs`), and give it back with
    /// [`Client::restore_signer`](super::Client::restore_signer).
    Signs {
        /// Contact.
        user: String,
    },
    /// The user marked `user` verified (compared safety numbers) or took the mark back
    /// (`ClientDb::set_verified`); give it back with
    /// [`Client::restore_verified`](super::Client::restore_verified). Accepting a
    /// changed key clears it (the database's `accept_pending_key` does too).
    Verified {
        /// Contact.
        user: String,
        /// Verified or not.
        verified: bool,
    },
}

/// Where a key came from. A contact's key comes only from the ring: a `PUBKEY_RES`
/// may confirm a pinned key, never introduce or change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A lookup answer from the server the request went to, while it was outstanding.
    Resolve,
}

/// What the machine refused or limited, counted since it started
/// ([`Client::counters`](super::Client::counters)). Nothing here is shown per event:
/// a spray of forged answers would otherwise flood the user with warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// `OK`/`ERROR` answers dropped: not from the server the request went to, or no
    /// request outstanding.
    pub stray_answers: u64,
    /// `PUBKEY_RES` that did not answer our request, or named a key other than the
    /// pinned one (which only a lookup may change).
    pub unconfirmed_keys: u64,
    /// Lookups an unsolicited datagram would have started, refused by the lookup limit.
    pub lookups_limited: u64,
    /// RSA decryptions of unsigned payloads done.
    pub decryptions: u64,
    /// Unsigned payloads refused by the per-source decryption limit.
    pub decrypt_limited_source: u64,
    /// Unsigned payloads refused by the global decryption limit.
    pub decrypt_limited_global: u64,
    /// Peers forgotten to make room in the bounded peer table (never a pinned contact).
    pub peers_evicted: u64,
    /// Datagrams naming a new peer refused because the peer table is full of contacts
    /// that cannot be evicted.
    pub peers_refused: u64,
    /// `FOUND` answers refused: the record's signature does not verify, or it names
    /// another user than the one asked for.
    pub bad_records: u64,
    /// Servers that let a `LOOKUP` go unanswered, asked with `RESOLVE` since.
    pub lookup_fallbacks: u64,
    /// Parts of long texts dropped unacknowledged: malformed markers, or the reassembly
    /// buffers full ([`ClientConfig::reassembly_per_peer`],
    /// [`ClientConfig::reassembly_bytes`]).
    pub parts_refused: u64,
}

/// One part of a long outgoing text, in the outbox under its own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The text's id: its first part's id, the id its history row and statuses carry.
    /// Part `index` has id `of + index`.
    pub of: u64,
    /// 0-based.
    pub index: u32,
    /// Parts the text has (at least 2).
    pub count: u32,
    /// The part sealed with its part marker inside, for a peer that reassembles
    /// ([`FEATURE_PARTS1`]); the entry's plain payload goes to everyone else.
    pub ext_payload_b64: String,
}

/// The connection to the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Registering with `server`.
    Connecting {
        /// The server.
        server: SocketAddrV4,
    },
    /// Registered through `server`.
    Registered {
        /// The server.
        server: SocketAddrV4,
    },
    /// `server` stopped answering: the driver should find another one (discovery or its
    /// list) and call [`Client::connect`](super::Client::connect).
    Lost {
        /// The server.
        server: SocketAddrV4,
    },
}

/// Something the application should know about. More kinds may come: match with a
/// wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The connection to the ring changed.
    Connection(ConnectionState),
    /// The server refused our registration (`ERROR ...` text), e.g. the name belongs to a
    /// different key. The machine does not retry on its own.
    RegistrationRefused {
        /// The server's error text.
        reason: String,
    },
    /// Another client of our identity (our name and key) registered at `at` after our
    /// last registration: the ring now sends our messages there. The newest
    /// registration wins: this client stops re-registering (no fight every keepalive)
    /// and tells the other one ([`Event::AlsoRunning`] there). Said once per address;
    /// a registration of ours (a new server, a new address) takes the record back.
    Displaced {
        /// Where the other client is.
        at: SocketAddrV4,
    },
    /// The other client of our identity, at `at`, saw that we registered after it and
    /// stopped re-registering ([`Event::Displaced`] there): messages come here. Its
    /// notice is signed with our own key, so only our identity can send it.
    AlsoRunning {
        /// Where the other client is.
        at: SocketAddrV4,
    },
    /// An outgoing message changed state.
    Status {
        /// Recipient.
        to: String,
        /// Message id.
        msg_id: u64,
        /// New state.
        status: Status,
    },
    /// A key was pinned for a new contact.
    KeyPinned {
        /// Contact.
        user: String,
        /// Fingerprint (hex).
        fingerprint: String,
        /// Where it came from.
        source: KeySource,
    },
    /// **A contact's key changed.** Sending to them is blocked and their signed messages
    /// are refused until the user accepts the new key
    /// ([`Client::accept_key`](super::Client::accept_key)).
    KeyChanged {
        /// Contact.
        user: String,
        /// The pinned key's fingerprint.
        pinned: String,
        /// The new key's fingerprint.
        new: String,
        /// Where the new key came from.
        source: KeySource,
        /// The user had verified the pinned key (compared safety numbers): this is an
        /// alarm, not a routine reinstall, unless they know why.
        verified: bool,
    },
    /// The user accepted a new key for `user`.
    KeyAccepted {
        /// Contact.
        user: String,
        /// The now pinned fingerprint.
        fingerprint: String,
    },
    /// A peer's protocol dialect became known.
    PeerFeatures {
        /// Contact.
        user: String,
        /// `true`: speaks the `ack1` extension; `false`: an original client.
        extension: bool,
    },
    /// Something was dropped; never shown as a message.
    Warning(Warning),
}

/// Inputs that were refused, as [`Event::Warning`]. More kinds may come.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A payload did not open (tampered, or not for our key). Dropped, never answered.
    Undecryptable {
        /// Claimed sender.
        claimed: String,
        /// Source address.
        from: SocketAddrV4,
    },
    /// A signed message's signature does not verify with the claimed sender's pinned key:
    /// a forged sender (or a key change not yet accepted). Dropped.
    ForgedSender {
        /// Claimed sender.
        claimed: String,
        /// Source address.
        from: SocketAddrV4,
        /// The signature matches the sender's pending (not yet accepted) key.
        pending_key: bool,
    },
    /// An unsigned `MESSAGE` claims to be from a contact known to sign its messages.
    /// Dropped.
    Unauthenticated {
        /// Claimed sender.
        claimed: String,
        /// Source address.
        from: SocketAddrV4,
    },
    /// A signed message from someone whose key could not be found. Dropped.
    UnknownSender {
        /// Claimed sender.
        claimed: String,
    },
    /// Too much work asked by one source address; dropped before decrypting.
    RateLimited {
        /// Source address.
        from: SocketAddrV4,
    },
    /// A message opened but is not UTF-8 text. Dropped.
    NotText {
        /// Sender.
        from: String,
    },
    /// A message could not be sent: the recipient is not registered.
    UserNotFound {
        /// Recipient.
        user: String,
    },
    /// A peer's `PUBKEY_RES` named a key other than the pinned one: not believed (only
    /// the ring changes a key); a fresh lookup checks it.
    KeyNotConfirmed {
        /// Whose key.
        user: String,
    },
    /// A key in a `RESOLVE` answer or `PUBKEY_RES` does not parse.
    BadKey {
        /// Whose key.
        user: String,
    },
    /// Some parts of a long text never came ([`ClientConfig::reassembly_timeout_ms`]):
    /// what came is dropped, nothing of it is shown, nothing was acknowledged.
    Incomplete {
        /// Sender.
        from: String,
        /// The text's id.
        msg_id: u64,
        /// Parts that came.
        received: u32,
        /// Parts the text has.
        parts: u32,
    },
}

/// A sentence a person understands, for logs and user interfaces.
impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::Undecryptable { claimed, from } => {
                format!(
                    "dropped a message claiming to be from {claimed} ({from}): it does not decrypt"
                )
            }
            Self::ForgedSender {
                claimed,
                from,
                pending_key,
            } => {
                if *pending_key {
                    format!(
                        "dropped a message from {claimed}: signed with their new key, accept it first"
                    )
                } else {
                    format!("dropped a FORGED message claiming to be from {claimed} ({from})")
                }
            }
            Self::Unauthenticated { claimed, from } => {
                format!("dropped an unsigned message claiming to be from {claimed} ({from})")
            }
            Self::UnknownSender { claimed } => {
                format!("dropped a signed message from unknown user {claimed}")
            }
            Self::RateLimited { from } => format!("too many messages from {from}; dropped"),
            Self::NotText { from } => format!("dropped a message from {from}: not text"),
            Self::UserNotFound { user } => format!("user {user} is not registered"),
            Self::BadKey { user } => format!("unusable key for {user}"),
            Self::KeyNotConfirmed { user } => {
                format!("{user} sent a key that is not the pinned one; checking with the ring")
            }
            Self::Incomplete {
                from,
                received,
                parts,
                ..
            } => format!(
                "a long message from {from} arrived incomplete ({received} of {parts} parts) \
                 and was dropped; nothing of it is shown"
            ),
        };
        f.write_str(&text)
    }
}

/// Why [`Client::send`](super::Client::send) refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The recipient is not a valid username.
    #[error("{0:?} is not a valid username")]
    InvalidRecipient(String),
    /// Messages to oneself are not sent.
    #[error("cannot send a message to yourself")]
    ToSelf,
    /// Empty text.
    #[error("empty message")]
    Empty,
    /// The text is longer than [`MAX_TEXT_BYTES`](super::MAX_TEXT_BYTES); nothing was
    /// sent.
    #[error("message too long: {len} bytes (UTF-8), at most {max} bytes; nothing was sent")]
    TooLong {
        /// Text length in bytes (UTF-8).
        len: usize,
        /// Most bytes accepted.
        max: usize,
    },
    /// The recipient's key changed and the user has not accepted the new key.
    #[error("{user}'s key changed: accept the new key before sending")]
    KeyChanged {
        /// Recipient.
        user: String,
    },
    /// Sealing failed (a bug or an unusable key).
    #[error("could not encrypt: {0}")]
    Crypto(#[from] flock_crypto::Error),
}
