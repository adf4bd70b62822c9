//! The Flock client on tokio: an embeddable [`Client`] that drives the sans-IO machine
//! ([`flock_proto::client`]) on one UDP socket, keeps its state in the client database
//! (`<data>/chats/<user>.db`, [`flock_store::ClientDb`]) and its key in
//! `<data>/keys/<user>/private.pem` (encrypted with the user's password).
//!
//! ```no_run
//! use flock_bin::client::{Client, ClientEvent, ClientOptions};
//!
//! # async fn demo() -> Result<(), flock_bin::client::ClientError> {
//! let mut opts = ClientOptions::new("alice", "Correct-Horse-1", "flock-data");
//! opts.servers = vec!["127.0.0.1:12345".parse().expect("address")];
//! let mut alice = Client::login(opts).await?;
//! let id = alice.send("bob", "hi bob").await?;
//! while let Some(event) = alice.next_event().await {
//!     match event {
//!         ClientEvent::Message { from, text, .. } => println!("<{from}> {text}"),
//!         ClientEvent::Protocol(e) => println!("{e:?}"),
//!     }
//! }
//! # let _ = id; Ok(()) }
//! ```
//!
//! One task owns the socket, the machine and the database. Every effect the machine asks
//! for is applied in order: a message is in the database before its first send, and an
//! incoming message is stored before it is acknowledged. The client asks its server for
//! the ring's members (`MEMBERS`, an extension the original's servers ignore); when the
//! server stops answering it tries those members, then LAN discovery (broadcast and
//! multicast), then the configured servers, skipping servers that failed, and all of
//! them again every 3 s when none answers; it registers again with whichever answers.

#[cfg(feature = "cli")]
mod cli;
mod cookie;
mod discovery;
mod driver;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "cli")]
pub use cli::ClientArgs;
pub use discovery::discover;
pub use driver::now_ms;
use flock_crypto::PrivateKey;
pub use flock_proto::client::{
    ClientConfig, ConnectionState, Counters, Event, KeySource, SafetyNumber, SendError, Status,
    Warning,
};
use flock_store::{ChatSummary, ClientDb, Contact, KeyDir, Message, MessageRow, OutboxEntry};
use tokio::sync::{mpsc, oneshot};

use crate::os_rng;
use driver::{Cmd, Driver, Machine};

/// What to tell the user when the same identity runs on another machine
/// ([`Event::Displaced`], [`Event::AlsoRunning`]; the newest registration wins), `None` for
/// other events. `me` is this client's username.
pub fn identity_notice(me: &str, event: &Event) -> Option<String> {
    match event {
        Event::Displaced { at } => Some(format!(
            "{me} is also running at {at}; this client stops re-registering \
             (messages to {me} go there; restart this client to take them back)"
        )),
        Event::AlsoRunning { at } => Some(format!(
            "{me} is also running at {at}; that client stopped re-registering \
             (messages to {me} come here)"
        )),
        _ => None,
    }
}

/// How to start a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Username.
    pub user: String,
    /// Protects the private key on disk (and unlocks it on later logins).
    pub password: String,
    /// `keys/` and `chats/` live here.
    pub data_dir: PathBuf,
    /// Servers to use, in order of preference; empty: discover them.
    pub servers: Vec<SocketAddrV4>,
    /// Look for servers by broadcast and multicast when the list runs out.
    pub discovery: bool,
    /// Create the identity (key and database) if it does not exist.
    pub create: bool,
    /// Local address of the client's UDP socket (port 0: any).
    pub bind: SocketAddrV4,
    /// Address to register (default: `bind`'s IP, or this host's address toward the
    /// server when bound to `0.0.0.0`).
    pub advertise: Option<Ipv4Addr>,
    /// Protocol timings and limits; `user`, `ip` and `port` are filled in.
    pub config: ClientConfig,
}

impl ClientOptions {
    /// Defaults: discovery on, identity created if missing, bound to `0.0.0.0:0`.
    pub fn new(user: &str, password: &str, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
            data_dir: data_dir.into(),
            servers: Vec::new(),
            discovery: true,
            create: true,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            advertise: None,
            config: ClientConfig::new(user, Ipv4Addr::UNSPECIFIED, 0),
        }
    }
}

/// What went wrong starting or using a [`Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No identity for this user in the data directory, and `create` was off.
    #[error("no identity for {0:?} here (create it first)")]
    NoIdentity(String),
    /// The private key did not decrypt with the password.
    #[error("wrong password for {0:?}")]
    WrongPassword(String),
    /// A key problem.
    #[error("key error: {0}")]
    Crypto(#[from] flock_crypto::Error),
    /// A database or key-file problem.
    #[error("storage error: {0}")]
    Store(#[from] flock_store::StoreError),
    /// A socket problem.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// No server was configured and none answered discovery.
    #[error("no server found (give one with --server, or check that a server runs on this LAN)")]
    NoServer,
    /// The message was refused.
    #[error("{0}")]
    Send(#[from] SendError),
    /// The client has stopped.
    #[error("the client has stopped")]
    Stopped,
    /// Another client runs this identity from this data directory.
    #[error(
        "{user} is already running from this data directory ({holder}); quit that client \
         first, or use another --data-dir"
    )]
    AlreadyRunning {
        /// The username.
        user: String,
        /// Who holds the lock (`process <pid>`, as the lock file says).
        holder: String,
    },
}

/// Something that happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A message arrived (stored in the database, and acknowledged if the sender asked).
    Message {
        /// Sender.
        from: String,
        /// Text.
        text: String,
        /// The sender's message id (extension senders).
        msg_id: Option<u64>,
        /// Signed by the sender's pinned key; `false` for original-format messages,
        /// whose sender anyone could claim to be.
        authenticated: bool,
        /// The database row.
        row: MessageRow,
    },
    /// Everything else from the protocol machine: connection changes, delivery statuses,
    /// key pinning and **key changes**, warnings about dropped input.
    Protocol(Event),
}

/// A running Flock client. Dropping it stops the client.
#[derive(Debug)]
pub struct Client {
    user: String,
    local: SocketAddrV4,
    cmds: mpsc::UnboundedSender<Cmd>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Client {
    /// Unlocks (or creates) the user's identity, opens the database, binds the socket,
    /// finds a server and registers. Returns once the client runs; registration
    /// completes in the background ([`ConnectionState::Registered`]).
    ///
    /// # Errors
    /// A missing identity (with `create` off), a wrong password, an unusable database or
    /// socket, or no server.
    pub async fn login(opts: ClientOptions) -> Result<Self, ClientError> {
        flock_store::validate_username(&opts.user)?;
        let chats = private_dir(&opts.data_dir.join("chats"))?;
        let lock = lock_identity(&chats, &opts.user)?;
        let key = load_identity(&opts)?;
        let db = ClientDb::open(
            chats.join(format!("{}.db", opts.user)),
            &opts.user,
            &opts.password,
        )
        .map_err(|e| match e {
            flock_store::StoreError::WrongPassword => ClientError::WrongPassword(opts.user.clone()),
            e => e.into(),
        })?;
        let mut servers = opts.servers.clone();
        if servers.is_empty() && opts.discovery {
            servers = discover(Duration::from_millis(1_500)).await?;
        }
        let first = *servers.first().ok_or(ClientError::NoServer)?;
        let receiving = std::net::UdpSocket::bind(opts.bind)?;
        let sending = receiving.try_clone()?;
        sending.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(sending)?;
        let std::net::SocketAddr::V4(bound) = socket.local_addr()? else {
            return Err(ClientError::NoServer);
        };
        let ip = match opts.advertise {
            Some(ip) => ip,
            None if !bound.ip().is_unspecified() => *bound.ip(),
            None => crate::server::local_ip_toward(first).unwrap_or(std::net::Ipv4Addr::LOCALHOST),
        };
        let mut cfg = opts.config.clone();
        cfg.user.clone_from(&opts.user);
        cfg.ip = ip;
        cfg.port = bound.port();
        let machine = Machine::new(cfg, key, os_rng())?;
        let keys = KeyDir::new(opts.data_dir.join("keys"), &opts.user)?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let inbox = driver::spawn_receiver(receiving)?;
        let driver = Driver::new(
            machine,
            db,
            keys,
            socket,
            inbox,
            ev_tx,
            servers,
            opts.discovery,
            opts.advertise.is_none() && bound.ip().is_unspecified(),
        )?;
        // The lock is held for as long as the driver runs.
        let task = tokio::spawn(async move {
            driver.run(cmd_rx).await;
            drop(lock);
        });
        Ok(Self {
            user: opts.user,
            local: SocketAddrV4::new(ip, bound.port()),
            cmds: cmd_tx,
            events: ev_rx,
            task: Some(task),
        })
    }

    /// The local username.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The address peers reach us on.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The next event; `None` once the client has stopped.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Sends `text` to `to` (see [`flock_proto::client::Client::send`]); returns the
    /// message id that status events refer to.
    ///
    /// # Errors
    /// [`ClientError::Send`] if the message is refused (too long, key changed, ...).
    pub async fn send(&self, to: &str, text: &str) -> Result<u64, ClientError> {
        let (to, text) = (to.to_owned(), text.to_owned());
        self.machine(move |m, now| m.send(now, &to, &text))
            .await?
            .map_err(ClientError::Send)
    }

    /// Sends `text` to `to` (see [`flock_proto::client::Client::send_parts`]): up to
    /// 64 KiB, split into parts that each fit one datagram; returns what the sender
    /// shows: one entry, the message's id (its first part's) and the whole text.
    ///
    /// # Errors
    /// [`ClientError::Send`] if the message is refused (too long, key changed, ...);
    /// then nothing was sent.
    pub async fn send_parts(
        &self,
        to: &str,
        text: &str,
    ) -> Result<Vec<(u64, String)>, ClientError> {
        let (to, text) = (to.to_owned(), text.to_owned());
        self.machine(move |m, now| m.send_parts(now, &to, &text))
            .await?
            .map_err(ClientError::Send)
    }

    /// Looks `user` up through the ring now (refreshes the cached address; a changed key
    /// shows up as [`Event::KeyChanged`]).
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn lookup(&self, user: &str) -> Result<(), ClientError> {
        let user = user.to_owned();
        self.machine(move |m, now| m.lookup(now, &user)).await
    }

    /// Accepts `user`'s changed key (sending to them resumes). `false`: no change pending.
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn accept_key(&self, user: &str) -> Result<bool, ClientError> {
        let user = user.to_owned();
        self.machine(move |m, now| m.accept_key(now, &user)).await
    }

    /// Rejects `user`'s changed key (the pinned key stays). `false`: no change pending.
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn reject_key(&self, user: &str) -> Result<bool, ClientError> {
        let user = user.to_owned();
        self.machine(move |m, now| m.reject_key(now, &user)).await
    }

    /// The safety number of the conversation with `user` (both users' names and keys,
    /// the same on both sides) and whether the user marked them verified; `None` before
    /// their key is pinned.
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn safety_number(
        &self,
        user: &str,
    ) -> Result<Option<(SafetyNumber, bool)>, ClientError> {
        let user = user.to_owned();
        self.machine(move |m, _| m.safety_number(&user).map(|n| (n, m.is_verified(&user))))
            .await
    }

    /// Marks `user` verified (the two people compared their safety numbers) or takes the
    /// mark back. `false`: no pinned key, or a key change is pending.
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn set_verified(&self, user: &str, verified: bool) -> Result<bool, ClientError> {
        let user = user.to_owned();
        self.machine(move |m, _| m.set_verified(&user, verified))
            .await
    }

    /// What the protocol machine refused or limited so far: stray lookup answers,
    /// decryptions and the caps on them, peer-table evictions.
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn counters(&self) -> Result<Counters, ClientError> {
        self.machine(|m, _| m.counters()).await
    }

    /// Uses `server` from now on (and registers with it).
    ///
    /// # Errors
    /// [`ClientError::Stopped`].
    pub async fn connect(&self, server: SocketAddrV4) -> Result<(), ClientError> {
        self.cmds
            .send(Cmd::Connect(server))
            .map_err(|_| ClientError::Stopped)
    }

    /// The last `limit` messages with `peer`, oldest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn history(&self, peer: &str, limit: u32) -> Result<Vec<Message>, ClientError> {
        let peer = peer.to_owned();
        self.db(move |db| db.history(&peer, limit)).await
    }

    /// Conversations, most recent first, with unread counts.
    ///
    /// # Errors
    /// A database error.
    pub async fn chats(&self, limit: u32) -> Result<Vec<ChatSummary>, ClientError> {
        self.db(move |db| db.chats(limit)).await
    }

    /// Unread messages from `peer`.
    ///
    /// # Errors
    /// A database error.
    pub async fn unread(&self, peer: &str) -> Result<u64, ClientError> {
        let peer = peer.to_owned();
        self.db(move |db| db.unread_count(&peer)).await
    }

    /// Marks `peer`'s messages read.
    ///
    /// # Errors
    /// A database error.
    pub async fn mark_seen(&self, peer: &str) -> Result<u64, ClientError> {
        let peer = peer.to_owned();
        self.db(move |db| db.mark_seen(&peer)).await
    }

    /// The outbox: sealed messages waiting for delivery.
    ///
    /// # Errors
    /// A database error.
    pub async fn pending(&self) -> Result<Vec<OutboxEntry>, ClientError> {
        self.db(|db| db.outbox_due(i64::MAX, u32::MAX)).await
    }

    /// Contacts with their pinned (and pending) keys.
    ///
    /// # Errors
    /// A database error.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        self.db(|db| db.contacts(u32::MAX)).await
    }

    /// Stops the client (the database is consistent at every step, so this is only
    /// tidiness).
    pub async fn shutdown(mut self) {
        let _ = self.cmds.send(Cmd::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ClientDb) -> flock_store::Result<T> + Send + 'static,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Db(Box::new(move |db| {
                let _ = tx.send(f(db));
            })))
            .map_err(|_| ClientError::Stopped)?;
        Ok(rx.await.map_err(|_| ClientError::Stopped)??)
    }

    async fn machine<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Machine, u64) -> T + Send + 'static,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Machine(Box::new(move |m, now| {
                let _ = tx.send(f(m, now));
            })))
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Shutdown);
    }
}

/// Creates `dir` (and its parents) if missing, and makes it `0700`: chat history is
/// nobody else's business.
fn private_dir(dir: &std::path::Path) -> Result<PathBuf, ClientError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir.to_owned())
}

/// One identity, one running client: an exclusive OS lock on `chats/<user>.lock`, held
/// until the client stops (the OS releases it if the process dies). The file names the
/// holder's process id for the message a second start prints.
fn lock_identity(chats: &std::path::Path, user: &str) -> Result<std::fs::File, ClientError> {
    use fs4::fs_std::FileExt as _;
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = chats.join(format!("{user}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    if !file.try_lock_exclusive()? {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "another process".to_owned(),
            pid => format!("process {pid}"),
        };
        return Err(ClientError::AlreadyRunning {
            user: user.to_owned(),
            holder,
        });
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Loads `keys/<user>/private.pem` (decrypting it with the password), or creates a new
/// key, saved encrypted, when allowed.
fn load_identity(opts: &ClientOptions) -> Result<PrivateKey, ClientError> {
    let dir = KeyDir::new(opts.data_dir.join("keys"), &opts.user)?;
    if let Some(pem) = dir.load_private_pem()? {
        return match PrivateKey::from_encrypted_pem(&pem, &opts.password) {
            Ok(key) => Ok(key),
            Err(flock_crypto::Error::WrongPassword) => {
                Err(ClientError::WrongPassword(opts.user.clone()))
            }
            // An unencrypted key (the design document's layout) still loads.
            Err(flock_crypto::Error::InvalidKey) => Ok(PrivateKey::from_pem(&pem)?),
            Err(e) => Err(e.into()),
        };
    }
    if !opts.create {
        return Err(ClientError::NoIdentity(opts.user.clone()));
    }
    let mut rng = os_rng();
    let key = PrivateKey::generate(&mut rng)?;
    let pem = key.to_encrypted_pem(&mut rng, &opts.password)?;
    dir.save_private_pem(&pem)?;
    dir.save_public_pem(key.public_key().to_pem())?;
    Ok(key)
}
