//! Browser sessions: who a request is, and whether it may act.
//!
//! Every browser gets a session the first time it opens a page: a random 256-bit id in
//! a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS) and a CSRF token bound to
//! it (HMAC-SHA256 of the id under a key drawn at start-up), written into the page. The
//! WebSocket, the only way to act, needs both: the cookie and `?csrf=<token>`; whatever
//! the `Origin`, a request without them is refused. Each session has its own
//! [`session`](super::session) task and, once logged in, its own [`Client`]: nothing of one
//! session reaches another.
//!
//! [`Client`]: crate::client::Client
//!
//! Logging out either stops the identity's client, or keeps it running for delivery
//! ("detached"): logging in again as that user, with the password, takes it back. So
//! does logging in from another browser (or after the cookie was lost) while the
//! identity runs in a session: the password checked, the client moves to the new session
//! and the old session's pages close. One identity runs one client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, watch};

use super::session::{self, Handle, Shared};

/// Bytes of a session id (hex in the cookie).
const SID_BYTES: usize = 32;
/// Most WebSockets (open pages) of one session.
pub(crate) const MAX_SESSION_SOCKETS: usize = 8;

/// One browser session.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) handle: Handle,
    /// Set to `true` when the session ends (log-out): its WebSockets close.
    pub(crate) revoked: watch::Sender<bool>,
    /// This session's share of the WebSockets (one session cannot take them all).
    pub(crate) sockets: Arc<Semaphore>,
    last_used: Instant,
}

impl Entry {
    fn new(handle: Handle) -> Self {
        Self {
            handle,
            revoked: watch::channel(false).0,
            sockets: Arc::new(Semaphore::new(MAX_SESSION_SOCKETS)),
            last_used: Instant::now(),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No cookie, or one for no session of this process.
    NoSession,
    /// No `csrf` parameter.
    NoToken,
    /// A token that is not this session's.
    BadToken,
}

impl Refusal {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::NoSession => "no session: open the page first (the session cookie is missing)",
            Self::NoToken => "the CSRF token is missing (?csrf=)",
            Self::BadToken => "the CSRF token does not belong to this session",
        }
    }
}

struct Inner {
    by_sid: HashMap<String, Entry>,
    /// Logged-out sessions whose client keeps running, by user.
    detached: HashMap<String, Handle>,
}

/// Every session of this process, bounded.
pub(crate) struct Sessions {
    key: [u8; 32],
    /// The cookie's name (with the port: browsers share cookies across ports).
    pub(crate) cookie: String,
    /// Whether cookies carry `Secure` (served over TLS).
    pub(crate) secure: bool,
    max: usize,
    shared: Shared,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("cookie", &self.cookie)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

fn random_hex<const N: usize>() -> String {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS randomness");
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(2 * b.len()), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

impl Sessions {
    pub(crate) fn new(port: u16, secure: bool, max: usize, shared: Shared) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("OS randomness");
        Self {
            key,
            cookie: format!("flock_session_{port}"),
            secure,
            max: max.max(1),
            shared,
            inner: Mutex::new(Inner {
                by_sid: HashMap::new(),
                detached: HashMap::new(),
            }),
        }
    }

    /// Whether servers were given on the command line.
    pub(crate) fn has_servers(&self) -> bool {
        !self.shared.servers.is_empty()
    }

    /// The data directory (key files).
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.shared.args.client.data_dir.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mac(&self, sid: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key size");
        mac.update(b"flock-web csrf ");
        mac.update(sid.as_bytes());
        mac
    }

    /// The CSRF token of session `sid`.
    pub(crate) fn token(&self, sid: &str) -> String {
        hex(&self.mac(sid).finalize().into_bytes())
    }

    /// Whether `token` is `sid`'s (compared in constant time).
    fn token_ok(&self, sid: &str, token: &str) -> bool {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let bytes: Vec<u8> = (0..32)
            .filter_map(|i| u8::from_str_radix(&token[2 * i..2 * i + 2], 16).ok())
            .collect();
        self.mac(sid).verify_slice(&bytes).is_ok()
    }

    /// The session of a `Cookie` header, if it names a live one.
    pub(crate) fn find(&self, cookie_header: Option<&str>) -> Option<(String, Entry)> {
        let sid = cookie_header.and_then(|h| {
            cookie::Cookie::split_parse(h)
                .filter_map(Result::ok)
                .find(|c| c.name() == self.cookie)
                .map(|c| c.value().to_owned())
        })?;
        let mut inner = self.lock();
        let entry = inner.by_sid.get_mut(&sid)?;
        entry.last_used = Instant::now();
        let entry = entry.clone();
        Some((sid, entry))
    }

    /// The session of the cookie, or a new one (`Err` when every place is taken by a
    /// logged-in session). The `bool` says it is new (the cookie must be set).
    pub(crate) fn find_or_create(
        &self,
        cookie_header: Option<&str>,
    ) -> Result<(String, Entry, bool), &'static str> {
        if let Some((sid, e)) = self.find(cookie_header) {
            return Ok((sid, e, false));
        }
        let mut inner = self.lock();
        // Clients kept running after a log-out count too: each is a running client.
        if inner.by_sid.len() + inner.detached.len() >= self.max {
            // Make room: the least recently used session nobody is logged in to.
            let idle = inner
                .by_sid
                .iter()
                .filter(|(_, e)| e.handle.snapshot.borrow().user.is_none())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(sid, _)| sid.clone());
            match idle {
                Some(sid) => {
                    if let Some(e) = inner.by_sid.remove(&sid) {
                        let _ = e.revoked.send(true);
                    }
                }
                None => return Err("too many sessions: log out of one first"),
            }
        }
        let sid = random_hex::<SID_BYTES>();
        let entry = Entry::new(session::start(self.shared.clone()));
        inner.by_sid.insert(sid.clone(), entry.clone());
        Ok((sid, entry, true))
    }

    /// The session a WebSocket request belongs to: its cookie and token must match.
    pub(crate) fn authorize(
        &self,
        cookie_header: Option<&str>,
        token: Option<&str>,
    ) -> Result<(String, Entry), Refusal> {
        let (sid, entry) = self.find(cookie_header).ok_or(Refusal::NoSession)?;
        let token = token.ok_or(Refusal::NoToken)?;
        if !self.token_ok(&sid, token) {
            return Err(Refusal::BadToken);
        }
        Ok((sid, entry))
    }

    /// The `Set-Cookie` value for `sid`.
    pub(crate) fn set_cookie(&self, sid: &str) -> String {
        format!(
            "{}={sid}; Path=/; HttpOnly; SameSite=Strict{}",
            self.cookie,
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Ends session `sid` (its pages close); its client is stopped by the caller, or
    /// kept running for `user` when `keep` is set.
    pub(crate) fn end(&self, sid: &str, keep: Option<&str>) -> Option<Handle> {
        let mut inner = self.lock();
        let entry = inner.by_sid.remove(sid)?;
        let _ = entry.revoked.send(true);
        if let Some(user) = keep {
            inner.detached.insert(user.to_owned(), entry.handle.clone());
        }
        Some(entry.handle)
    }

    /// Whether `user` runs in another session than `sid`: kept running after a
    /// log-out, or logged in elsewhere (another browser, or one whose cookie is gone).
    pub(crate) fn is_running(&self, user: &str, sid: &str) -> bool {
        let inner = self.lock();
        inner.detached.contains_key(user)
            || inner.by_sid.iter().any(|(other, e)| {
                other != sid && e.handle.snapshot.borrow().user.as_deref() == Some(user)
            })
    }

    /// Takes `user`'s running client out of wherever it runs (its pages close), for
    /// session `sid` to adopt once the password was checked.
    pub(crate) fn take_running(&self, user: &str, sid: &str) -> Option<Handle> {
        let mut inner = self.lock();
        if let Some(h) = inner.detached.remove(user) {
            return Some(h);
        }
        let other = inner
            .by_sid
            .iter()
            .find(|(other, e)| {
                *other != sid && e.handle.snapshot.borrow().user.as_deref() == Some(user)
            })
            .map(|(other, _)| other.clone())?;
        let entry = inner.by_sid.remove(&other)?;
        let _ = entry.revoked.send(true);
        Some(entry.handle)
    }

    /// Session `sid` now runs `handle` (a detached client taken back); its open pages
    /// close and reconnect to it.
    pub(crate) fn adopt(&self, sid: &str, handle: Handle) -> bool {
        let mut inner = self.lock();
        let Some(old) = inner.by_sid.remove(sid) else {
            return false;
        };
        let _ = old.revoked.send(true);
        inner.by_sid.insert(sid.to_owned(), Entry::new(handle));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        web: super::super::WebArgs,
    }

    fn sessions(max: usize, secure: bool) -> Sessions {
        let args = Cli::parse_from(["flock-web", "--no-discovery"]).web;
        let shared = Shared {
            args: std::sync::Arc::new(args),
            servers: Vec::new(),
            known: std::sync::Arc::default(),
        };
        Sessions::new(5000, secure, max, shared)
    }

    #[tokio::test]
    async fn tokens_belong_to_one_session() {
        let s = sessions(8, false);
        let (a, _, new) = s.find_or_create(None).expect("a session");
        assert!(new);
        let (b, _, _) = s.find_or_create(None).expect("another");
        assert_ne!(a, b);
        let cookie_a = format!("x=1; {}={a}", s.cookie);
        let (token_a, token_b) = (s.token(&a), s.token(&b));
        assert!(s.authorize(Some(&cookie_a), Some(&token_a)).is_ok());
        assert_eq!(
            s.authorize(Some(&cookie_a), Some(&token_b)).err(),
            Some(Refusal::BadToken)
        );
        assert_eq!(
            s.authorize(Some(&cookie_a), None).err(),
            Some(Refusal::NoToken)
        );
        assert_eq!(
            s.authorize(None, Some(&token_a)).err(),
            Some(Refusal::NoSession)
        );
        let forged = format!("{}={}", s.cookie, "0".repeat(64));
        assert_eq!(
            s.authorize(Some(&forged), Some(&token_a)).err(),
            Some(Refusal::NoSession)
        );
        for bad in [
            "",
            "zz",
            &token_a[..63],
            &format!("{token_a}0"),
            &"g".repeat(64),
        ] {
            assert_eq!(
                s.authorize(Some(&cookie_a), Some(bad)).err(),
                Some(Refusal::BadToken),
                "{bad:?}"
            );
        }
        // The same cookie finds the same session.
        let (again, _, new) = s.find_or_create(Some(&cookie_a)).expect("found");
        assert_eq!((again.as_str(), new), (a.as_str(), false));
        // Ended: the cookie opens nothing any more.
        assert!(s.end(&a, None).is_some());
        assert_eq!(
            s.authorize(Some(&cookie_a), Some(&token_a)).err(),
            Some(Refusal::NoSession)
        );
    }

    #[tokio::test]
    async fn cookies_and_the_session_bound() {
        let s = sessions(2, true);
        let (a, _, _) = s.find_or_create(None).expect("a");
        let set = s.set_cookie(&a);
        for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        let (b, _, _) = s.find_or_create(None).expect("b");
        // Full of idle sessions: the least recently used one makes room.
        let cookie_b = format!("{}={b}", s.cookie);
        assert!(s.find(Some(&cookie_b)).is_some());
        let (c, _, _) = s.find_or_create(None).expect("c");
        assert!(s.find(Some(&format!("{}={a}", s.cookie))).is_none());
        assert!(s.find(Some(&cookie_b)).is_some());
        assert!(s.find(Some(&format!("{}={c}", s.cookie))).is_some());
    }
}
