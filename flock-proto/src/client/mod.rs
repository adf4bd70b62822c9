//! The sans-IO Flock client: registration, lookup, key pinning and reliable encrypted
//! delivery, as a state machine with time, randomness and datagrams as inputs.
//!
//! [`Client`] never touches a socket, a clock, a database or the OS RNG. Feed it what
//! happened ([`Client::handle_frame`] with each datagram decoded once, or
//! [`Client::handle_datagram`] with its bytes; [`Client::handle_timeout`]; commands such
//! as [`Client::connect`] and [`Client::send`]), then drain [`Client::poll_action`] until
//! it returns `None`, doing each [`Action`] in order:
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
//!     if let Ok(frame) = flock_proto::Frame::decode(&datagram) {
//!         client.handle_frame(now_ms(), from, frame);
//!     }
//! }
//! # }
//! ```
//!
//! # Protocol
//! With the ring (one request in flight at a time, because an original server's answers
//! name neither the request nor the user; they are taken only from the server asked,
//! see [below](#whose-key-only-the-rings)):
//! `REGISTER <user> <ip> <port> <version> <pubkey_b64> <sig_b64>` with `version` the wall
//! clock in nanoseconds (kept strictly increasing), sent again after every
//! [`Client::connect`] and [`Client::set_local_addr`]; a lookup on first contact, and
//! again when a peer stops answering; a lookup of ourselves when idle (the keepalive:
//! register again if the ring lost or changed our record). A lookup is
//! `LOOKUP <user> <rid>` (the lookup extension, see below) or, with an original server,
//! `RESOLVE <user>`. The same identity (name and key) registered from another address
//! no earlier than our last registration means another client of ours runs there: the
//! newest registration wins, this client stops re-registering ([`Event::Displaced`],
//! once) and tells that one ([`Event::AlsoRunning`] there) with an `SMESSAGE` from us to
//! us that only our key can sign; a registration of ours (a new server) takes the
//! record back. After
//! [`ClientConfig::server_failures`] unanswered requests the server counts as lost
//! ([`ConnectionState::Lost`]): the driver finds another and calls [`Client::connect`].
//!
//! # Whose key: only the ring's
//! A contact's key comes only from a lookup the client trusts, never from the contact's
//! own word or an unsolicited datagram:
//! - an answer counts only if it comes from the server the request went to, while that
//!   request is outstanding (anything else is dropped and counted in
//!   [`Counters::stray_answers`]);
//! - **the lookup extension** (our servers): the request is `LOOKUP <user> <rid>` with an
//!   unpredictable 64-bit `rid` from the machine's RNG, answered
//!   `FOUND <rid> <user> <ip> <port> <version> <pubkey_b64> <sig_b64>` or `NOTFOUND <rid>`.
//!   The answer must echo `rid`, name the user asked about, and carry that record's
//!   signature over `user|ip|port|version|pubkey_b64` ([`crate::signed_text`]) made with
//!   the key in it ([`Counters::bad_records`] otherwise; the request stays outstanding).
//!   A server that registered us but lets a `LOOKUP` go unanswered is an original one:
//!   it is asked with `RESOLVE` from then on ([`Counters::lookup_fallbacks`],
//!   [`ClientConfig::lookup_extension`]), and `OK`/`ERROR` answers count only while a
//!   `RESOLVE` is outstanding;
//! - a name's first key is pinned only from such an answer. `PUBKEY_RES` may confirm the
//!   pinned key; a different key in it is reported ([`Warning::KeyNotConfirmed`]) and
//!   checked with a fresh lookup, never believed; an incoming `PUBKEY_REQ` is answered
//!   but asks nothing back;
//! - no lookup starts because a datagram names someone: a `HELLO` from an unknown name
//!   is answered and forgotten, one from a contact at a new address is believed once a
//!   lookup made for our own reasons confirms the address. The one lookup an incoming
//!   datagram may cause is for the sender of a signed message, whose key is needed to
//!   verify it: limited for all sources together ([`ClientConfig::lookup_rate`]).
//!
//! A different key from a trusted lookup is kept pending and reported as
//! [`Event::KeyChanged`]; sending to that contact fails with [`SendError::KeyChanged`]
//! and their signed messages are refused until [`Client::accept_key`].
//!
//! People check keys themselves with the [`SafetyNumber`] of their conversation
//! ([`Client::safety_number`]), the same on both sides, and mark a contact verified
//! ([`Client::set_verified`], stored as [`StoreOp::Verified`]). A key change on a
//! verified contact says so ([`Event::KeyChanged`]'s `verified`: the interfaces make it
//! loud) and accepting the new key clears the mark.
//!
//! **What the original's servers leave open.** Their answers carry no request id and no
//! signature, so the source and outstanding checks are all there is: an attacker who can
//! send from the server's address (IP spoofing, or a position on the path) can still
//! answer a lookup, and an answer cannot be told from a late answer to an earlier
//! request (one request is in flight at a time, which keeps that window small). An
//! attacker who can make a `LOOKUP` go unanswered (drop it on the path) makes the client
//! fall back to `RESOLVE` for that server. With either kind of server, a ring node that
//! lies about a name nobody has pinned yet is believed (the signature only proves that
//! the key in the record signed it): that is what safety numbers are for. And with the
//! original's multi-node ring, whose owning node may answer from a fresh port of its
//! own, such answers are refused as stray: the lookup times out and counts against the
//! server (the server the client uses must answer through its own socket, as ours do).
//!
//! # With peers
//! On first contact: `HELLO <me> ack1,parts1` (`ack1` alone with [`ClientConfig::parts`]
//! off), `PUBKEY_REQ <me>` and `PING`.
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
//! # Each peer's handshake
//! Per contact the machine keeps three explicit states; every transition below is one
//! method of the internal `peer` module, tested on its own.
//!
//! **The key** (`PeerKey`): `Unknown` (nothing known, nothing asked), `Requested` (our
//! `PUBKEY_REQ` is out, no key yet), `Pinned` (trusted on first use or accepted),
//! `Changed` (a different key seen; the pinned one stays until the user decides). At
//! most one `PUBKEY_REQ` goes to a peer per session; a `PUBKEY_RES` counts only if it
//! comes from the address the request went to, within 10 s of it, and then only to
//! confirm the pinned key.
//!
//! | State | Input | New state | Effects |
//! |---|---|---|---|
//! | `Unknown` | a probe starts | `Requested` | send `PUBKEY_REQ` |
//! | `Requested` | a probe starts | `Requested` | none |
//! | `Pinned`, `Changed`, no request yet | a probe starts | same, request noted | send `PUBKEY_REQ` (checks the pinned key) |
//! | any | the peer sends `PUBKEY_REQ` | same | answer `PUBKEY_RES` only |
//! | `Pinned`, `Changed` | a probe after our request | same | none |
//! | `Unknown`, `Requested` | a key from a trusted lookup | `Pinned` | [`StoreOp::PinKey`], [`Event::KeyPinned`] |
//! | `Unknown`, `Requested` | any `PUBKEY_RES` | same | none (counted) |
//! | `Pinned`, `Changed` | a solicited `PUBKEY_RES` with the pinned key | same | none |
//! | `Pinned`, `Changed` | a solicited `PUBKEY_RES` with another key | same | [`Warning::KeyNotConfirmed`], a lookup |
//! | `Pinned` | the pinned key from a trusted lookup | `Pinned` | none |
//! | `Pinned` | another key from a trusted lookup | `Changed` | [`StoreOp::PendingKey`], [`Event::KeyChanged`]; sending blocked |
//! | `Changed` | the pinned or the pending key from a trusted lookup | `Changed` | none |
//! | `Changed` | a third key from a trusted lookup | `Changed`, the third key pending | [`StoreOp::PendingKey`], [`Event::KeyChanged`] |
//! | `Changed` | [`Client::accept_key`] | `Pinned`, the new key | [`StoreOp::AcceptKey`], [`Event::KeyAccepted`]; dialect unknown again; outbox entries sealed for the old key fail |
//! | `Changed` | [`Client::reject_key`] | `Pinned`, the old key | [`StoreOp::RejectKey`] |
//! | `Unknown`, `Requested`, `Pinned` | accept or reject | same | none (`false`) |
//! | any | [`Client::restore_contact`] | `Pinned` or `Changed` | none |
//!
//! After any key input from the ring, messages written before the key was
//! known are sealed ([`StoreOp::Enqueue`]) and signed messages held for it are verified,
//! unless a changed key is pending.
//!
//! **The dialect** (`Unknown`, `Extension`, `Original`) becomes known from a `HELLO`
//! from the peer's cached address (`ack1` or not), a verified `SMESSAGE`, a contact's
//! `HELLO` from another address once `RESOLVE` confirms that address, and the probe's
//! outcomes; it is
//! unknown again when `RESOLVE` gives a new address or a new key is accepted. Each
//! change is reported as [`Event::PeerFeatures`].
//!
//! **The probe** (`Idle`, `Ping`, `Grace`): before sending to a peer whose dialect is
//! not `Extension`, the machine checks that it is there.
//!
//! | State | Input | New state | Effects |
//! |---|---|---|---|
//! | any | messages due, dialect not `Extension` | `Ping` | send `HELLO <me> ack1,parts1` (dialect unknown only), `PUBKEY_REQ` (see above), `PING` |
//! | `Ping` | `PONG`, dialect unknown, extension on | `Grace` | none: wait [`ClientConfig::hello_grace_ms`] for `HELLO` |
//! | `Ping` | `PONG`, dialect original (or unknown with the extension off) | `Idle` | dialect original; due messages sent once as `MESSAGE` |
//! | `Ping` | `PONG`, dialect extension | `Idle` | due messages sent as `SMESSAGE` |
//! | `Idle`, `Grace` | `PONG` | same | none |
//! | `Ping` | [`ClientConfig::ping_timeout_ms`] passes | `Idle` | address stale; each due message counts a failed attempt (backoff) |
//! | `Grace` | the grace passes | `Idle` | dialect original; due messages sent once as `MESSAGE` |
//! | `Ping`, `Grace` | `HELLO … ack1` from the cached address, or a verified `SMESSAGE` from it | `Idle` | dialect extension; due messages sent as `SMESSAGE` |
//! | `Idle` | the same | `Idle` | dialect extension |
//! | any | `RESOLVE` gives a new address | `Idle` | dialect unknown |
//!
//! While a probe runs, a changed key is pending, or a lookup is under way, the peer's
//! outbox waits. A contact's `HELLO` is answered unless it answers our own probe, at most
//! once a second per address; an unknown name's `HELLO` is answered within
//! [`ClientConfig::reply_rate`] and leaves no state.
//!
//! Every `PING` is answered with `PONG`; every `PUBKEY_REQ` with `PUBKEY_RES` (rate
//! limited per source: the answer is 30 times larger). Incoming payloads that do not
//! open, or are not UTF-8, are dropped with [`Event::Warning`] and never answered.
//! Unsigned `MESSAGE`s are opened only within [`ClientConfig::open_rate`] per source and
//! [`ClientConfig::open_rate_global`] for all sources together (RSA decryption of
//! attacker-chosen bytes, RUSTSEC-2023-0071; both counted in [`Counters`]), and refused outright
//! when they claim to come from a contact that signs its messages (learnt from their
//! first verified signed message or acknowledgement, stored as [`StoreOp::Signs`] and
//! given back after a restart with [`Client::restore_signer`]). A signed message is
//! decrypted only after its signature verified with the sender's pinned key, so nobody
//! without that key can make us decrypt chosen bytes on that path.
//!
//! No reply depends on whether a payload opened: a failed open is never answered, and
//! the machine answers `PING` the moment it is handed one. A driver that hands it
//! datagrams one at a time must still not let a `PONG` wait behind an opening (a `PING`
//! right after a `MESSAGE` would be answered later when the payload opened and was
//! stored): answer `PING` on the receive path, before the machine works on what came
//! before it, as `flock-bin`'s client does on a receive thread of its own (see
//! `flock_crypto`'s notes on RUSTSEC-2023-0071).
//!
//! Text is limited to [`MAX_TEXT_BYTES`] (64 KiB of UTF-8); longer text is refused with
//! [`SendError::TooLong`] and nothing is sent. Each message must fit an original
//! client's 8191-byte datagram as `MESSAGE <me> <payload_b64>` ([`max_text_len`]): a
//! longer text is split on character boundaries into parts with consecutive ids, sent
//! in order ([`Client::send_parts`]). Nothing is ever cut.
//!
//! # Long texts: parts and reassembly
//! The sender shows one message (the whole text, the first part's id) and stores one
//! outbox entry per part ([`StoreOp::Enqueue`] with its [`Part`]); every part is sealed
//! twice, plainly and with a part marker inside (`"\0flock-part <of> <index> <count>\n"`
//! before the text, so signed with it). Who gets what:
//! - a peer whose `HELLO` said `ack1,parts1` ([`FEATURE_PARTS1`], on with
//!   [`ClientConfig::parts`]) gets the marked parts as `SMESSAGE`s. It keeps them (in
//!   any order, duplicates ignored) until the text is whole, stores it as one message
//!   under the first part's id and only then acknowledges every part. Buffers are bounded
//!   per sender ([`ClientConfig::reassembly_per_peer`]) and in bytes overall
//!   ([`ClientConfig::reassembly_bytes`]): a part beyond them is dropped unacknowledged
//!   (the sender sends it again) and counted ([`Counters::parts_refused`]). A text whose
//!   parts do not all come within [`ClientConfig::reassembly_timeout_ms`] is dropped and
//!   reported ([`Warning::Incomplete`]), never shown cut; the sender, which got no
//!   acknowledgement, keeps sending its parts;
//! - an `ack1`-only peer gets the plain parts as `SMESSAGE`s and acknowledges each; an
//!   original client gets them as `MESSAGE`s; both show them as separate messages.
//!
//! The sender's message is sent with its first part, delivered once every part is
//! acknowledged (or sent, to an original client), failed if any part fails
//! ([`StoreOp::PartDone`] removes each finished part's outbox entry).

mod limiter;
mod machine;
mod parts;
mod peer;
mod safety;
mod types;

pub use machine::Client;
pub use safety::{SAFETY_NUMBER_ITERATIONS, SafetyNumber};
pub use types::{
    Action, ClientConfig, ConnectionState, Counters, Event, FEATURE_ACK1, FEATURE_PARTS1,
    KeySource, MessageStatus, Part, SendError, Status, StoreOp, Transmit, UnknownStatus, Warning,
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

/// Most bytes of UTF-8 text one [`Client::send`] accepts (64 KiB); longer text is
/// refused with [`SendError::TooLong`].
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

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
