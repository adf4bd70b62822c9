//! The sans-IO Flock client: registration, lookup, key pinning and reliable encrypted
//! delivery, as a state machine with time, randomness and datagrams as inputs.
//!
//! [`Client`] never touches a socket, a clock, a database or the OS RNG. Feed it what
//! happened ([`Client::handle_datagram`], [`Client::handle_timeout`], commands such as
//! [`Client::connect`] and [`Client::send`]), then drain [`Client::poll_action`] until it
//! returns `None`, doing each [`Action`] in order:
//!
//! - [`Action::Send`]: send the datagram from the client's one UDP socket;
//! - [`Action::Store`]: apply the [`StoreOp`] to the client database *before* the next
//!   action (an outbox entry is stored before its first send; an incoming message is
//!   stored before its acknowledgement, which travels inside [`StoreOp::Incoming`]);
//! - [`Action::Event`]: tell the application.
//!
//! Then sleep until [`Client::poll_timeout`] (Unix milliseconds) or the next datagram.
//!
//! ```no_run
//! use flock_proto::client::{Action, Client, ClientConfig};
//! use std::net::{Ipv4Addr, SocketAddrV4};
//! # fn demo<R: flock_crypto::CryptoRng>(key: flock_crypto::PrivateKey, rng: R,
//! #     now_ms: impl Fn() -> u64, recv: impl Fn() -> (SocketAddrV4, Vec<u8>),
//! #     send: impl Fn(SocketAddrV4, &[u8])) {
//! let cfg = ClientConfig::new("alice", Ipv4Addr::LOCALHOST, 40000);
//! let mut client = Client::new(cfg, key, rng).expect("valid username");
//! client.connect(now_ms(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 12345));
//! client.send(now_ms(), "bob", "hi bob").expect("sendable");
//! loop {
//!     while let Some(action) = client.poll_action() {
//!         match action {
//!             Action::Send(t) => send(t.to, &t.datagram),
//!             Action::Store(op) => { /* apply to ClientDb, then continue */ }
//!             Action::Event(event) => println!("{event:?}"),
//!         }
//!     }
//!     // Wait for a datagram or until client.poll_timeout(), then:
//!     let (from, datagram) = recv();
//!     client.handle_datagram(now_ms(), from, &datagram);
//! }
//! # }
//! ```
//!
//! # Protocol
//! With the ring (one request in flight at a time, because an original server's answers
//! name neither the request nor the user, and may come from any address):
//! `REGISTER <user> <ip> <port> <version> <pubkey_b64> <sig_b64>` with `version` the wall
//! clock in nanoseconds (kept strictly increasing), sent again after every
//! [`Client::connect`] and [`Client::set_local_addr`]; `RESOLVE <user>` on first contact,
//! and again when a peer stops answering; `PING` to the server when idle. After
//! [`ClientConfig::server_failures`] unanswered requests the server counts as lost
//! ([`ConnectionState::Lost`]): the driver finds another and calls [`Client::connect`].
//!
//! Keys are pinned on first use, from `RESOLVE` or from a `PUBKEY_RES` answering our own
//! `PUBKEY_REQ`. A different key later, from either, is kept pending and reported as
//! [`Event::KeyChanged`]; sending to that contact fails with [`SendError::KeyChanged`]
//! and their signed messages are refused until [`Client::accept_key`].
//!
//! With peers, on first contact: `HELLO <me> ack1`, `PUBKEY_REQ <me>` and `PING`.
//! - A peer that answers `HELLO <peer> ack1` gets the **extension**:
//!   `SMESSAGE <me> <id> <payload_b64> <sig_b64>`, signed (RSA-PSS) over
//!   [`smessage_signed_text`] `SMESSAGE|sender|recipient|id|payload_b64`; the recipient
//!   checks the signature with the sender's *pinned* key (resolving it first if needed)
//!   before decrypting anything, stores the message once per `(sender, id)`, and answers
//!   `ACK <recipient> <id> <sig_b64>` signed over [`ack_signed_text`]
//!   `ACK|recipient|sender|id`. Unacknowledged messages are resent with backoff, with a
//!   fresh lookup each round. Statuses: queued, sent, delivered.
//! - A peer that answers `PONG` but no `HELLO` within [`ClientConfig::hello_grace_ms`] is
//!   an **original** client: `MESSAGE <me> <payload_b64>`, once, after each `PONG`
//!   (queued, sent). No answer to `PING` within [`ClientConfig::ping_timeout_ms`]: the
//!   message stays in the outbox and is retried with backoff.
//!
//! Every `PING` is answered with `PONG`; every `PUBKEY_REQ` with `PUBKEY_RES` (rate
//! limited per source: the answer is 30 times larger). Incoming payloads that do not
//! open, or are not UTF-8, are dropped with [`Event::Warning`] and never answered.
//! Unsigned `MESSAGE`s are opened only within [`ClientConfig::open_rate`] per source
//! (RSA decryption of attacker-chosen bytes, RUSTSEC-2023-0071), and refused outright
//! when they claim to come from a contact that signs its messages. A signed message is
//! decrypted only after its signature verified with the sender's pinned key, so nobody
//! without that key can make us decrypt chosen bytes on that path.
//!
//! Text is limited so that `MESSAGE <me> <payload_b64>` fits an original client's
//! 8191-byte datagram ([`max_text_len`]); longer text is refused with
//! [`SendError::TooLong`], never cut.

mod limiter;
mod machine;
mod peer;
mod types;

pub use machine::Client;
pub use types::{
    Action, ClientConfig, ConnectionState, Event, FEATURE_ACK1, KeySource, MessageStatus,
    SendError, Status, StoreOp, Transmit, UnknownStatus, Warning,
};

use crate::limits::ORIGINAL_CLIENT_MAX_DATAGRAM;

/// The text a `SMESSAGE` signature covers: `SMESSAGE|sender|recipient|id|payload_b64`.
///
/// ```
/// assert_eq!(
///     flock_proto::client::smessage_signed_text("alice", "bob", 7, "AQB="),
///     "SMESSAGE|alice|bob|7|AQB="
/// );
/// ```
pub fn smessage_signed_text(sender: &str, recipient: &str, id: u64, payload_b64: &str) -> String {
    format!("SMESSAGE|{sender}|{recipient}|{id}|{payload_b64}")
}

/// The text an `ACK` signature covers: `ACK|from|to|id`, `from` being the acknowledging
/// recipient and `to` the message's sender.
///
/// ```
/// assert_eq!(flock_proto::client::ack_signed_text("bob", "alice", 7), "ACK|bob|alice|7");
/// ```
pub fn ack_signed_text(from: &str, to: &str, id: u64) -> String {
    format!("ACK|{from}|{to}|{id}")
}

/// Most bytes of UTF-8 text `sender` can send in one message so that
/// `MESSAGE <sender> <payload_b64>` fits [`ORIGINAL_CLIENT_MAX_DATAGRAM`] (8191 bytes),
/// for a recipient key whose wrapped AES key is `wrapped_len` bytes (256 for RSA-2048).
///
/// ```
/// // 5846 bytes of text for "alice" and an RSA-2048 recipient.
/// assert_eq!(flock_proto::client::max_text_len("alice", 256), 5846);
/// ```
pub fn max_text_len(sender: &str, wrapped_len: usize) -> usize {
    // "MESSAGE " + sender + " " + base64(2 + wrapped + 12 + text + 16)
    let b64_room = ORIGINAL_CLIENT_MAX_DATAGRAM.saturating_sub(8 + sender.len() + 1);
    let raw_room = b64_room / 4 * 3;
    raw_room.saturating_sub(2 + wrapped_len + 12 + 16)
}
