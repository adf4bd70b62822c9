//! Requests to the ring: `REGISTER`, `RESOLVE`, the keepalive, one at a time.

use std::borrow::Cow;
use std::net::SocketAddrV4;

use flock_crypto::{CryptoRng, PublicKey, seal_b64, sign_b64, verify_b64};

use super::{Client, InFlight, Request};
use crate::client::peer::Dialect;
use crate::client::smessage_signed_text;
use crate::client::types::{Action, ConnectionState, Event, Transmit, Warning};
use crate::frame::{ErrorReply, Frame, OkReply, Register};
use crate::limits::MAX_VERSION;

/// The plaintext of the notice to another client of our identity ([`Event::Displaced`]).
const ELSEWHERE: &str = "\0flock-elsewhere";

impl<R: CryptoRng> Client<R> {
    pub(super) fn server_usable(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.lost)
    }

    pub(super) fn request_resolve(&mut self, user: &str) {
        let peer = self.peers.entry(user.to_owned()).or_default();
        if peer.resolving {
            return;
        }
        peer.resolving = true;
        self.requests.push_back(Request::Resolve(user.to_owned()));
    }

    pub(super) fn pump_server(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || !self.server_usable() {
            return;
        }
        let Some(request) = self.requests.pop_front() else {
            return;
        };
        let (datagram, rid) = match &request {
            Request::Register => match self.register_frame(now_ms) {
                Some(d) => (d, None),
                None => return,
            },
            Request::Resolve(_) | Request::Check => self.lookup_datagram(&request),
        };
        self.start_request(now_ms, request, rid, datagram);
    }

    /// The lookup for `request` (of a user, or of ourselves as the keepalive): `LOOKUP`
    /// with a fresh unpredictable request id unless the server is known not to answer
    /// it, `RESOLVE` then.
    fn lookup_datagram(&mut self, request: &Request) -> (Vec<u8>, Option<u64>) {
        let user = match request {
            Request::Resolve(user) => user.as_str(),
            Request::Check | Request::Register => self.cfg.user.as_str(),
        };
        let extension = self
            .server
            .as_ref()
            .is_some_and(|s| s.lookup_ext != Some(false));
        if extension {
            let rid = self.rng.next_u64();
            let frame = Frame::Lookup {
                user: Cow::Borrowed(user),
                rid,
            };
            (frame.encode_to_vec(), Some(rid))
        } else {
            let frame = Frame::Resolve {
                user: Cow::Borrowed(user),
            };
            (frame.encode_to_vec(), None)
        }
    }

    pub(super) fn start_request(
        &mut self,
        now_ms: u64,
        request: Request,
        rid: Option<u64>,
        datagram: Vec<u8>,
    ) {
        let Some(server) = self.server.as_ref().map(|s| s.addr) else {
            return;
        };
        self.actions.push_back(Action::Send(Transmit {
            to: server,
            datagram: datagram.clone(),
        }));
        self.in_flight = Some(InFlight {
            request,
            rid,
            datagram,
            deadline_ms: now_ms.saturating_add(self.cfg.request_timeout_ms),
        });
    }

    pub(super) fn register_frame(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let version = now_ms
            .saturating_mul(1_000_000)
            .max(self.last_version.saturating_add(1))
            .min(MAX_VERSION);
        self.last_version = version;
        let mut register = Register {
            user: Cow::Borrowed(&self.cfg.user),
            ip: self.cfg.ip,
            port: self.cfg.port,
            version,
            pubkey_b64: Cow::Borrowed(&self.pubkey_b64),
            sig_b64: Cow::Borrowed(""),
        };
        let sig = sign_b64(&mut self.rng, &self.key, register.signed_text().as_bytes()).ok()?;
        register.sig_b64 = Cow::Owned(sig);
        Some(Frame::Register(register).encode_to_vec())
    }

    /// A server request or keepalive went unanswered.
    pub(super) fn server_missed(&mut self, now_ms: u64) {
        let Some(server) = self.server.as_mut() else {
            self.in_flight = None;
            return;
        };
        // A server that registered us but lets a LOOKUP go unanswered is an original
        // one: ask it with RESOLVE from now on (the source and outstanding checks are
        // all that protects those answers, see the module docs).
        let unanswered_lookup = self.in_flight.as_ref().is_some_and(|f| f.rid.is_some());
        if unanswered_lookup && server.registered && server.lookup_ext.is_none() {
            server.lookup_ext = Some(false);
            self.counters.lookup_fallbacks = self.counters.lookup_fallbacks.saturating_add(1);
            if let Some(flight) = self.in_flight.take() {
                let (datagram, rid) = self.lookup_datagram(&flight.request);
                self.start_request(now_ms, flight.request, rid, datagram);
            }
            return;
        }
        server.failures += 1;
        if server.failures >= self.cfg.server_failures.max(1) {
            server.lost = true;
            server.registered = false;
            let addr = server.addr;
            if let Some(flight) = self.in_flight.take() {
                if !matches!(flight.request, Request::Register | Request::Check) {
                    self.requests.push_front(flight.request);
                }
            }
            self.event(Event::Connection(ConnectionState::Lost { server: addr }));
        } else if let Some(flight) = self.in_flight.take() {
            // Try the same request once more.
            self.start_request(now_ms, flight.request, flight.rid, flight.datagram);
        }
    }

    /// The ring lost or changed our record (a wiped ring, a server that restarted
    /// empty): register again.
    pub(super) fn reregister(&mut self) {
        if !self.requests.contains(&Request::Register) {
            self.requests.push_front(Request::Register);
        }
    }

    pub(super) fn server_alive(&mut self, now_ms: u64) {
        let keepalive = self.cfg.keepalive_ms;
        if let Some(s) = self.server.as_mut() {
            s.failures = 0;
            s.next_keepalive_ms = now_ms.saturating_add(keepalive);
        }
    }

    /// Whether an answer from `from` may be the answer to the request in flight: it
    /// must come from the server the request went to, while the request is outstanding.
    /// Anything else is dropped and counted ([`Counters::stray_answers`]).
    ///
    /// [`Counters::stray_answers`]: crate::client::Counters::stray_answers
    fn answer_expected(&mut self, from: SocketAddrV4, rid: Option<u64>) -> bool {
        let expected = self.in_flight.as_ref().is_some_and(|f| f.rid == rid)
            && self.server.as_ref().is_some_and(|s| s.addr == from);
        if !expected {
            self.counters.stray_answers = self.counters.stray_answers.saturating_add(1);
        }
        expected
    }

    pub(super) fn on_ok(&mut self, now_ms: u64, from: SocketAddrV4, reply: OkReply<'_>) {
        if !self.answer_expected(from, None) {
            return;
        }
        let Some(flight) = &self.in_flight else {
            return;
        };
        match (&flight.request, reply) {
            (Request::Register, OkReply::Registered { user, .. }) if user == self.cfg.user => {
                self.in_flight = None;
                self.server_alive(now_ms);
                // Registered: the record is ours again, whoever had it.
                self.displaced = None;
                if let Some(s) = self.server.as_mut() {
                    s.registered = true;
                    let server = s.addr;
                    self.event(Event::Connection(ConnectionState::Registered { server }));
                }
            }
            (
                Request::Resolve(_) | Request::Check,
                OkReply::Resolved {
                    ip,
                    port,
                    pubkey_b64,
                    version,
                },
            ) => {
                let Some(flight) = self.in_flight.take() else {
                    return;
                };
                self.server_alive(now_ms);
                let addr = SocketAddrV4::new(ip, port);
                self.lookup_answered(now_ms, flight.request, addr, &pubkey_b64, version);
            }
            _ => {}
        }
    }

    pub(super) fn on_error(&mut self, now_ms: u64, from: SocketAddrV4, reply: ErrorReply<'_>) {
        if !self.answer_expected(from, None) {
            return;
        }
        self.on_error_answer(now_ms, reply);
    }

    /// The server refused the request in flight (`ERROR`, or `NOTFOUND` to a `LOOKUP`).
    fn on_error_answer(&mut self, now_ms: u64, reply: ErrorReply<'_>) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        self.server_alive(now_ms);
        match flight.request {
            Request::Register => self.event(Event::RegistrationRefused {
                reason: reply.text().to_owned(),
            }),
            Request::Check => self.reregister(),
            Request::Resolve(user) => {
                if reply == ErrorReply::NotFound {
                    self.warn(Warning::UserNotFound { user: user.clone() });
                }
                self.not_resolved(now_ms, &user);
            }
        }
    }

    /// `FOUND <rid> <record>`: the answer to our `LOOKUP`, if it echoes its id, comes from
    /// the server asked, names the user asked about and carries that user's signature
    /// over `user|ip|port|version|pubkey` (checked with the key in the record: the
    /// key's holder registered this address).
    pub(super) fn on_found(
        &mut self,
        now_ms: u64,
        from: SocketAddrV4,
        rid: u64,
        record: &Register<'_>,
    ) {
        if !self.answer_expected(from, Some(rid)) {
            return;
        }
        let asked = match self.in_flight.as_ref().map(|f| &f.request) {
            Some(Request::Resolve(user)) => user.clone(),
            Some(Request::Check) => self.cfg.user.clone(),
            Some(Request::Register) | None => return,
        };
        let signed = record.user == asked.as_str()
            && PublicKey::from_b64(&record.pubkey_b64).is_ok_and(|key| {
                verify_b64(&key, record.signed_text().as_bytes(), &record.sig_b64).is_ok()
            });
        if !signed {
            // Left in flight: it times out like an unanswered request.
            self.counters.bad_records = self.counters.bad_records.saturating_add(1);
            self.warn(Warning::BadKey { user: asked });
            return;
        }
        if let Some(s) = self.server.as_mut() {
            s.lookup_ext = Some(true);
        }
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        self.server_alive(now_ms);
        let addr = SocketAddrV4::new(record.ip, record.port);
        self.lookup_answered(
            now_ms,
            flight.request,
            addr,
            &record.pubkey_b64,
            record.version,
        );
    }

    /// `NOTFOUND <rid>`: the answer to our `LOOKUP` if it echoes its id and comes from
    /// the server asked.
    pub(super) fn on_not_found(&mut self, now_ms: u64, from: SocketAddrV4, rid: u64) {
        if !self.answer_expected(from, Some(rid)) {
            return;
        }
        if let Some(s) = self.server.as_mut() {
            s.lookup_ext = Some(true);
        }
        self.on_error_answer(now_ms, ErrorReply::NotFound);
    }

    /// A user's record, from the server asked: for a contact, their address and key;
    /// for our own keepalive, whether the ring still has our record.
    fn lookup_answered(
        &mut self,
        now_ms: u64,
        request: Request,
        addr: SocketAddrV4,
        key: &str,
        version: u64,
    ) {
        match request {
            Request::Resolve(user) => self.resolved(now_ms, &user, addr, key),
            Request::Check => {
                let ours = key == self.pubkey_b64;
                if ours && addr != self.local_addr() && version >= self.last_version {
                    // Our identity registered elsewhere after us (or in the same
                    // nanosecond: one record, so not ours): the newest wins.
                    self.displaced_by(addr);
                } else if addr != self.local_addr() || !ours {
                    self.reregister();
                }
            }
            Request::Register => {}
        }
    }

    /// Another client of our identity registered at `at` after us: stop re-registering,
    /// say so once, and tell that client with a notice signed by our key (an `SMESSAGE`
    /// from us to us, which only our identity can make).
    fn displaced_by(&mut self, at: SocketAddrV4) {
        if self.displaced == Some(at) {
            return;
        }
        self.displaced = Some(at);
        self.event(Event::Displaced { at });
        let me = self.cfg.user.clone();
        let id = self.rng.next_u64();
        let Ok(payload_b64) = seal_b64(&mut self.rng, self.key.public_key(), ELSEWHERE.as_bytes())
        else {
            return;
        };
        let text = smessage_signed_text(&me, &me, id, &payload_b64);
        let Ok(sig_b64) = sign_b64(&mut self.rng, &self.key, text.as_bytes()) else {
            return;
        };
        self.send_frame(
            at,
            &Frame::SecureMessage {
                sender: Cow::Owned(me),
                id,
                payload_b64: Cow::Owned(payload_b64),
                sig_b64: Cow::Owned(sig_b64),
            },
        );
    }

    /// An `SMESSAGE` naming us as its sender, from `from`: if our key signed it, it is
    /// the notice of another client of our identity that stopped re-registering.
    pub(super) fn on_self_notice(
        &mut self,
        from: SocketAddrV4,
        id: u64,
        payload_b64: &str,
        sig_b64: &str,
    ) {
        let me = &self.cfg.user;
        let text = smessage_signed_text(me, me, id, payload_b64);
        if verify_b64(self.key.public_key(), text.as_bytes(), sig_b64).is_err()
            || self.also_running == Some(from)
        {
            return;
        }
        self.also_running = Some(from);
        self.event(Event::AlsoRunning { at: from });
    }

    pub(super) fn resolved(
        &mut self,
        now_ms: u64,
        user: &str,
        addr: SocketAddrV4,
        pubkey_b64: &str,
    ) {
        let peer = self.peers.entry(user.to_owned()).or_default();
        peer.resolving = false;
        peer.stale = false;
        peer.sent_since_resolve = false;
        if peer.addr != Some(addr) {
            peer.addr = Some(addr);
            peer.dialect = Dialect::Unknown;
            peer.parts = false;
            peer.probe.reset();
        }
        if let Some((claimed, ext, parts)) = peer.hello_claim.take() {
            if claimed == addr {
                self.hello_dialect(user, ext, parts);
            }
        }
        self.learn_key(now_ms, user, pubkey_b64);
        self.seal_awaiting(now_ms, user);
        self.release_held(now_ms, user);
    }

    pub(super) fn not_resolved(&mut self, now_ms: u64, user: &str) {
        if let Some(peer) = self.peers.get_mut(user) {
            peer.resolving = false;
        }
        for id in self.awaiting_ids(user) {
            self.give_up_awaiting(user, id);
        }
        if let Some(held) = self.held.remove(user) {
            self.held_count = self.held_count.saturating_sub(held.len());
            self.warn(Warning::UnknownSender {
                claimed: user.to_owned(),
            });
        }
        let due: Vec<u64> = self.due_entries(user, now_ms).collect();
        for id in due {
            self.attempt_failed(now_ms, user, id);
        }
    }
}
