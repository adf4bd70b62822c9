//! A browser session: one task that owns the session's Flock [`Client`] (once logged in)
//! and answers that session's requests one at a time, while it forwards the client's
//! events to the session's open WebSockets (and no other's).

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flock_proto::client::MAX_TEXT_BYTES;
use flock_proto::client::{ConnectionState, Event};
use flock_store::{ChatSummary, Contact, Direction, KeyDir, Message};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::client::{Client, ClientError, ClientEvent, Warning, discover, now_ms};
use crate::lookalike;

use super::WebArgs;

pub(crate) mod login;

/// Messages shown per chat (the newest ones).
pub(crate) const HISTORY_LIMIT: u32 = 500;
/// Conversations listed on the chats page.
pub(crate) const CHATS_LIMIT: u32 = 500;
/// Longest password accepted (it only unlocks the key file).
const MAX_PASSWORD: usize = 1_024;
/// Longest `HOST:PORT` accepted.
const MAX_SERVER_TEXT: usize = 255;
/// Servers remembered for the session.
const MAX_SERVERS: usize = 8;
/// How long discovery listens for answers.
const DISCOVERY_WAIT: Duration = Duration::from_millis(1_500);
/// How long a typed server has to answer `PING`.
const PING_WAIT: Duration = Duration::from_millis(700);
/// Ring members remembered by the process (to offer when a server does not answer).
const MAX_KNOWN: usize = 32;
/// Requests queued for one session (beyond them a page waits).
const MAX_QUEUED: usize = 32;
/// Events queued for one session's pages (a page that falls behind resynchronises).
const MAX_EVENTS: usize = 1_024;
/// Conversations a session hides (removed from the list until a new message).
const MAX_HIDDEN: usize = 256;

/// What every session of the process shares: the options, the servers given on the
/// command line, and the ring members learned from servers that answered.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) args: Arc<WebArgs>,
    pub(crate) servers: Vec<SocketAddrV4>,
    pub(crate) known: Arc<Mutex<Vec<SocketAddrV4>>>,
}

impl Shared {
    fn known(&self) -> Vec<SocketAddrV4> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn learn(&self, found: &[SocketAddrV4]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for a in found {
            if !known.contains(a) {
                known.push(*a);
            }
        }
        let excess = known.len().saturating_sub(MAX_KNOWN);
        known.drain(..excess);
    }
}

/// What a page needs to know before it renders (also used for redirects).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Snapshot {
    /// The logged-in user.
    pub(crate) user: Option<String>,
    /// Servers chosen for this session, preferred first.
    pub(crate) servers: Vec<String>,
    /// `offline`, `connecting`, `registered` or `lost`.
    pub(crate) connection: &'static str,
    /// The server of `connection`.
    pub(crate) server: Option<String>,
    /// Longest message, in UTF-8 bytes (longer text is split into parts, never cut).
    pub(crate) max_text: usize,
    /// Whether LAN discovery is allowed.
    pub(crate) discovery: bool,
}

/// A request from a browser.
#[derive(Debug)]
pub(crate) enum Op {
    State,
    Discover,
    Connect {
        server: String,
    },
    RemoveServer {
        server: String,
    },
    Register {
        user: String,
        password: String,
        create: bool,
    },
    Logout {
        /// Keep the client running for delivery (handled by the sessions, not here).
        keep: bool,
    },
    Chats,
    History {
        peer: String,
    },
    Send {
        to: String,
        text: String,
    },
    MarkSeen {
        peer: String,
    },
    AcceptKey {
        user: String,
    },
    RejectKey {
        user: String,
    },
    Verify {
        user: String,
        verified: bool,
    },
    HideChat {
        peer: String,
    },
    Ring {
        user: Option<String>,
    },
}

/// The answer to an [`Op`]: JSON data, or an error text for the user.
pub(crate) type Reply = Result<Value, String>;

/// A request and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// The handles the HTTP side keeps.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) events: broadcast::Sender<Arc<str>>,
    pub(crate) snapshot: watch::Receiver<Snapshot>,
}

impl Handle {
    /// Runs `op` in the session.
    pub(crate) async fn call(&self, op: Op) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request { op, reply: tx })
            .await
            .map_err(|_| "the session has stopped".to_owned())?;
        rx.await
            .unwrap_or_else(|_| Err("the session has stopped".to_owned()))
    }
}

struct Session {
    shared: Shared,
    client: Option<Client>,
    servers: Vec<SocketAddrV4>,
    events: broadcast::Sender<Arc<str>>,
    snapshot: watch::Sender<Snapshot>,
    /// Conversations removed from the list, with the newest message row then.
    hidden: HashMap<String, i64>,
}

/// Starts a session's task; it ends when every [`Handle`] is gone.
pub(crate) fn start(shared: Shared) -> Handle {
    let (req_tx, req_rx) = mpsc::channel(MAX_QUEUED);
    let (ev_tx, _) = broadcast::channel(MAX_EVENTS);
    let servers = shared.servers.clone();
    let snap = Snapshot {
        user: None,
        servers: servers.iter().map(ToString::to_string).collect(),
        connection: "offline",
        server: None,
        max_text: MAX_TEXT_BYTES,
        discovery: !shared.args.client.no_discovery,
    };
    let (snap_tx, snap_rx) = watch::channel(snap);
    let session = Session {
        shared,
        client: None,
        servers,
        events: ev_tx.clone(),
        snapshot: snap_tx,
        hidden: HashMap::new(),
    };
    tokio::spawn(session.run(req_rx));
    Handle {
        requests: req_tx,
        events: ev_tx,
        snapshot: snap_rx,
    }
}

/// The next event of the client, if there is one; pending forever otherwise.
async fn next_event(client: &mut Option<Client>) -> Option<ClientEvent> {
    match client {
        Some(c) => c.next_event().await,
        None => std::future::pending().await,
    }
}

impl Session {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        loop {
            tokio::select! {
                req = requests.recv() => {
                    let Some(req) = req else { break };
                    self.handle(req).await;
                }
                event = next_event(&mut self.client) => match event {
                    Some(e) => self.forward(e),
                    None => {
                        // The client stopped on its own (it should not): back to login.
                        self.client = None;
                        self.snapshot.send_modify(|s| {
                            s.user = None;
                            s.connection = "offline";
                        });
                        self.emit("logged_out", json!({}));
                    }
                },
            }
        }
        if let Some(c) = self.client.take() {
            c.shutdown().await;
        }
    }

    async fn handle(&mut self, req: Request) {
        let Request { op, reply } = req;
        let answer = match op {
            Op::State => Ok(json!(*self.snapshot.borrow())),
            Op::Discover => {
                if self.shared.args.client.no_discovery {
                    Err("discovery is off (--no-discovery): type a server address".to_owned())
                } else {
                    // Discovery takes a while and needs nothing of ours: answer from a task.
                    tokio::spawn(async move {
                        let found = discover(DISCOVERY_WAIT)
                            .await
                            .map(|v| json!(v.iter().map(ToString::to_string).collect::<Vec<_>>()))
                            .map_err(|e| format!("discovery failed: {e}"));
                        let _ = reply.send(found);
                    });
                    return;
                }
            }
            Op::Connect { server } => self.connect(&server).await,
            Op::RemoveServer { server } => self.remove_server(&server),
            Op::HideChat { peer } => self.hide_chat(&peer).await,
            Op::Ring { user } => {
                // The ring is shown to logged-in users only.
                if let Err(e) = self.client() {
                    let _ = reply.send(Err(e));
                    return;
                }
                if let Some(u) = &user {
                    if let Err(e) = valid_user(u) {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                let server = self
                    .snapshot
                    .borrow()
                    .server
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| self.servers.first().copied());
                let Some(server) = server else {
                    let _ = reply.send(Err("choose a server first".to_owned()));
                    return;
                };
                // Walking the ring takes a while and needs nothing of ours.
                tokio::spawn(async move {
                    let view = tokio::task::spawn_blocking(move || {
                        super::ring::view(server, user.as_deref())
                    })
                    .await
                    .map_err(|e| e.to_string());
                    let _ = reply.send(view);
                });
                return;
            }
            Op::Register {
                user,
                password,
                create,
            } => self.register(user, password, create).await,
            Op::Logout { .. } => {
                if let Some(c) = self.client.take() {
                    c.shutdown().await;
                }
                self.snapshot.send_modify(|s| {
                    s.user = None;
                    s.connection = "offline";
                    s.server = None;
                });
                self.emit("logged_out", json!({}));
                Ok(json!({}))
            }
            Op::Chats => self.chats().await,
            Op::History { peer } => self.history(&peer).await,
            Op::Send { to, text } => self.send(&to, &text).await,
            Op::MarkSeen { peer } => match (self.client(), valid_user(&peer)) {
                (Ok(c), Ok(())) => match c.mark_seen(&peer).await {
                    Ok(n) => {
                        if n > 0 {
                            self.emit("unread_changed", json!({ "peer": peer }));
                        }
                        Ok(json!({ "marked": n }))
                    }
                    Err(e) => Err(e.to_string()),
                },
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            Op::Verify { user, verified } => self.verify(&user, verified).await,
            Op::AcceptKey { user } | Op::RejectKey { user } if valid_user(&user).is_err() => {
                Err(format!("{user:?} is not a valid username"))
            }
            Op::AcceptKey { user } => match self.client() {
                Ok(c) => match c.accept_key(&user).await {
                    Ok(done) => Ok(json!({ "done": done })),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            },
            Op::RejectKey { user } => match self.client() {
                Ok(c) => match c.reject_key(&user).await {
                    Ok(done) => {
                        if done {
                            self.emit("key_rejected", json!({ "user": user }));
                        }
                        Ok(json!({ "done": done }))
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e),
            },
        };
        let _ = reply.send(answer);
    }

    fn client(&self) -> Result<&Client, String> {
        self.client
            .as_ref()
            .ok_or_else(|| "not logged in".to_owned())
    }

    fn emit(&self, event: &str, data: Value) {
        let text = json!({ "type": "event", "event": event, "data": data }).to_string();
        // No receiver (no page open) is fine.
        let _ = self.events.send(text.into());
    }

    async fn connect(&mut self, server: &str) -> Reply {
        let server = server.trim();
        if server.is_empty() || server.len() > MAX_SERVER_TEXT {
            return Err("type a server as HOST:PORT".to_owned());
        }
        let addr = resolve_server(server).await?;
        // A server that does not answer is not put in use: say so now, not at login.
        let alive = tokio::task::spawn_blocking(move || {
            crate::tools::request(addr, b"PING", PING_WAIT, 2).is_ok_and(|r| r.starts_with(b"PONG"))
        })
        .await
        .unwrap_or(false);
        if !alive {
            return Err(format!(
                "{addr} did not answer: no Flock server there (or it is down). Nothing was changed."
            ));
        }
        self.servers.retain(|s| *s != addr);
        self.servers.insert(0, addr);
        self.servers.truncate(MAX_SERVERS);
        if let Some(c) = &self.client {
            c.connect(addr).await.map_err(|e| e.to_string())?;
        }
        let list: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        self.snapshot.send_modify(|s| s.servers.clone_from(&list));
        Ok(json!({ "server": addr.to_string(), "servers": list }))
    }

    /// Takes `server` out of the servers in use.
    fn remove_server(&mut self, server: &str) -> Reply {
        let before = self.servers.len();
        self.servers.retain(|s| s.to_string() != server.trim());
        if self.servers.len() == before {
            return Err(format!("{server:?} is not in use"));
        }
        let list: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        self.snapshot.send_modify(|s| s.servers.clone_from(&list));
        Ok(json!({ "servers": list }))
    }

    /// Removes `peer`'s conversation from the list (until a new message).
    async fn hide_chat(&mut self, peer: &str) -> Reply {
        valid_user(peer)?;
        let c = self.client()?;
        let newest = c
            .history(peer, 1)
            .await
            .map_err(|e| e.to_string())?
            .last()
            .map_or(0, |m| m.id.0);
        if self.hidden.len() >= MAX_HIDDEN && !self.hidden.contains_key(peer) {
            return Err("too many hidden conversations".to_owned());
        }
        self.hidden.insert(peer.to_owned(), newest);
        self.emit("unread_changed", json!({ "peer": peer }));
        Ok(json!({ "peer": peer }))
    }

    /// The chats page, each conversation with its look-alike mark (if any).
    async fn chats(&self) -> Reply {
        let c = self.client()?;
        let chats = c.chats(CHATS_LIMIT).await.map_err(|e| e.to_string())?;
        let contacts = c.contacts().await.map_err(|e| e.to_string())?;
        let known = known_names(&chats, &contacts);
        Ok(json!(
            chats
                .iter()
                .filter(|chat| self
                    .hidden
                    .get(&chat.peer)
                    .is_none_or(|h| chat.last.id.0 > *h))
                .map(|chat| {
                    let mut v = chat_json(chat);
                    v["lookalike"] = json!(lookalike::describe(
                        &chat.peer,
                        known.iter().map(String::as_str)
                    ));
                    v
                })
                .collect::<Vec<_>>()
        ))
    }

    async fn history(&self, peer: &str) -> Reply {
        let c = self.client()?;
        valid_user(peer)?;
        let messages = c
            .history(peer, HISTORY_LIMIT)
            .await
            .map_err(|e| e.to_string())?;
        let contacts = c.contacts().await.map_err(|e| e.to_string())?;
        let chats = c.chats(CHATS_LIMIT).await.map_err(|e| e.to_string())?;
        let lookalike = lookalike::describe(
            peer,
            known_names(&chats, &contacts).iter().map(String::as_str),
        );
        let key = contacts.iter().find(|k| k.user == peer).map(|k| {
            json!({
                "fingerprint": k.fingerprint,
                "pending": k.pending.as_ref().map(|p| p.fingerprint.clone()),
            })
        });
        let safety = c.safety_number(peer).await.map_err(|e| e.to_string())?;
        // Refresh the peer's address and key (a change shows up as `key_changed`). Last
        // before the reply: the page applies the reply, then the events it causes.
        if peer != c.user() {
            c.lookup(peer).await.map_err(|e| e.to_string())?;
        }
        Ok(json!({
            "peer": peer,
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
            "key": key,
            "lookalike": lookalike,
            "safety_number": safety.as_ref().map(|(n, _)| n.to_string()),
            "verified": safety.is_some_and(|(_, v)| v),
        }))
    }

    /// The user compared safety numbers with `user` and marks them verified (or not).
    async fn verify(&self, user: &str, verified: bool) -> Reply {
        let c = self.client()?;
        valid_user(user)?;
        if !c
            .set_verified(user, verified)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "cannot mark {user} verified now: no key pinned, or a key change is pending"
            ));
        }
        self.emit(
            "verified_changed",
            json!({ "user": user, "verified": verified }),
        );
        Ok(json!({ "user": user, "verified": verified }))
    }

    async fn send(&self, to: &str, text: &str) -> Reply {
        let c = self.client()?;
        valid_user(to)?;
        if text.trim().is_empty() {
            return Err("empty message".to_owned());
        }
        // Counted in UTF-8 bytes, as the composer counts; nothing is cut.
        if text.len() > MAX_TEXT_BYTES {
            return Err(format!(
                "message too long: {} bytes (UTF-8), at most {MAX_TEXT_BYTES}; nothing was sent",
                text.len()
            ));
        }
        let parts = c.send_parts(to, text).await.map_err(|e| e.to_string())?;
        let at_ms = now_ms();
        for (msg_id, part) in &parts {
            self.emit(
                "message_sent",
                json!({
                    "to": to,
                    "text": part,
                    "msg_id": msg_id,
                    "at_ms": at_ms,
                    "status": "queued",
                }),
            );
        }
        let ids: Vec<u64> = parts.iter().map(|(id, _)| *id).collect();
        Ok(json!({ "msg_id": ids.first(), "msg_ids": ids }))
    }

    /// A client event to the browsers (and to the snapshot).
    fn forward(&self, event: ClientEvent) {
        match event {
            ClientEvent::Message {
                from,
                text,
                msg_id,
                authenticated,
                row,
            } => self.emit(
                "new_message",
                json!({
                    "from": from,
                    "text": text,
                    "msg_id": msg_id,
                    "authenticated": authenticated,
                    "row": row.0,
                    "at_ms": now_ms(),
                }),
            ),
            ClientEvent::Protocol(e) => match e {
                Event::Connection(state) => {
                    let (name, server) = match state {
                        ConnectionState::Connecting { server } => ("connecting", server),
                        ConnectionState::Registered { server } => ("registered", server),
                        ConnectionState::Lost { server } => ("lost", server),
                    };
                    self.snapshot.send_modify(|s| {
                        s.connection = name;
                        s.server = Some(server.to_string());
                    });
                    if name == "registered" {
                        // The ring members this server names: offered when it goes away.
                        let shared = self.shared.clone();
                        tokio::spawn(async move {
                            if let Ok(found) = tokio::task::spawn_blocking(move || {
                                super::ring::learn_members(server)
                            })
                            .await
                            {
                                shared.learn(&found);
                            }
                        });
                    }
                    self.emit(
                        "connection",
                        json!({ "state": name, "server": server.to_string() }),
                    );
                }
                Event::RegistrationRefused { reason } => {
                    self.emit("registration_refused", json!({ "reason": reason }));
                }
                Event::Status { to, msg_id, status } => self.emit(
                    "status_changed",
                    json!({ "to": to, "msg_id": msg_id, "status": status.as_str() }),
                ),
                Event::KeyPinned {
                    user, fingerprint, ..
                } => self.emit(
                    "key_pinned",
                    json!({ "user": user, "fingerprint": fingerprint }),
                ),
                Event::KeyChanged {
                    user,
                    pinned,
                    new,
                    verified,
                    ..
                } => self.emit(
                    "key_changed",
                    json!({ "user": user, "pinned": pinned, "new": new, "verified": verified }),
                ),
                Event::KeyAccepted { user, fingerprint } => self.emit(
                    "key_accepted",
                    json!({ "user": user, "fingerprint": fingerprint }),
                ),
                Event::Warning(Warning::UserNotFound { user }) => {
                    self.emit("user_not_found", json!({ "user": user }));
                }
                e @ (Event::Displaced { .. } | Event::AlsoRunning { .. }) => {
                    if let Some(text) = self
                        .client
                        .as_ref()
                        .and_then(|c| crate::client::identity_notice(c.user(), &e))
                    {
                        self.emit("warning", json!({ "text": text, "user": null }));
                    }
                }
                Event::Warning(w) => self.emit(
                    "warning",
                    json!({ "text": w.to_string(), "user": warning_user(&w) }),
                ),
                // Dialect changes and whatever a newer machine reports: not shown.
                _ => {}
            },
        }
    }
}

/// The contact a warning is about (shown in that chat, in place), if any.
fn warning_user(w: &Warning) -> Option<&str> {
    match w {
        Warning::Undecryptable { claimed, .. }
        | Warning::ForgedSender { claimed, .. }
        | Warning::Unauthenticated { claimed, .. }
        | Warning::UnknownSender { claimed } => Some(claimed),
        Warning::NotText { from } => Some(from),
        Warning::UserNotFound { user }
        | Warning::KeyNotConfirmed { user }
        | Warning::BadKey { user } => Some(user),
        _ => None,
    }
}

async fn resolve_server(server: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = server.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    let found = tokio::net::lookup_host(server)
        .await
        .map_err(|e| format!("{server}: {e} (type HOST:PORT)"))?;
    for a in found {
        if let std::net::SocketAddr::V4(a) = a {
            return Ok(a);
        }
    }
    Err(format!("{server}: no IPv4 address"))
}

/// Checks `password` against `user`'s key file (to take back a client kept running).
pub(crate) async fn check_password(
    data_dir: std::path::PathBuf,
    user: &str,
    password: String,
) -> Result<(), String> {
    valid_user(user)?;
    let user = user.to_owned();
    tokio::task::spawn_blocking(move || {
        let dir = KeyDir::new(data_dir.join("keys"), &user).map_err(|e| e.to_string())?;
        let pem = dir
            .load_private_pem()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account {user:?} here: create it first"))?;
        match flock_crypto::PrivateKey::from_encrypted_pem(&pem, &password) {
            Ok(_) => Ok(()),
            Err(flock_crypto::Error::WrongPassword) => Err("wrong password".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

fn valid_user(user: &str) -> Result<(), String> {
    flock_proto::validate_username(user)
        .map_err(|e| format!("{user:?} is not a valid username: {e}"))
}

fn message_json(m: &Message) -> Value {
    json!({
        "row": m.id.0,
        "author": m.author,
        "receiver": m.receiver,
        "text": m.text,
        "at_ms": m.at_ms,
        "seen": m.seen,
        "msg_id": m.msg_id,
        "outgoing": m.direction == Direction::Outgoing,
        "status": m.status.as_str(),
        "authenticated": m.authenticated,
    })
}

/// Every name the user knows: conversation peers and pinned contacts.
fn known_names(chats: &[ChatSummary], contacts: &[Contact]) -> Vec<String> {
    let mut known: Vec<String> = chats
        .iter()
        .map(|c| c.peer.clone())
        .chain(contacts.iter().map(|c| c.user.clone()))
        .collect();
    known.sort();
    known.dedup();
    known
}

fn chat_json(c: &ChatSummary) -> Value {
    json!({
        "peer": c.peer,
        "last": message_json(&c.last),
        "unread": c.unread,
    })
}
