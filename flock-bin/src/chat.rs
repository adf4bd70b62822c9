//! `flock chat`: the console UI.
//!
//! Server discovery (pick a server or rescan), login or account creation, then a menu:
//! `@user` opens a chat, `/back` returns to the menu, `/chats` lists conversations with
//! unread counts, `/pending` shows the outbox, `/accept <user>` and `/reject <user>`
//! decide about a changed key, `/servers` lists (or switches to) the servers discovery finds,
//! `/refresh` reprints the open chat, `/quit` exits. Incoming messages appear as they arrive.
//! Works the same with a terminal or a pipe on stdin (one command or message per line);
//! on a terminal the password is read without echo. Log lines go to
//! `<data>/flock-chat.log` (and to stderr too with `-v`), never between chat lines.
//! Times are local.
//!
//! Output lines start with a marker so scripts can follow along: `<user> text` for a
//! message, `* ...` for information, `!! ...` for anything that needs attention.

use std::io::{BufRead, IsTerminal as _, Write};
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use flock_proto::client::{ConnectionState, Event, Status};
use flock_store::{Direction, KeyDir};
use tokio::sync::mpsc;

use crate::client::{Client, ClientArgs, ClientError, ClientEvent, discover};
use crate::lookalike;

/// Options of `flock chat`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Username (asked for if missing).
    #[arg(long, short)]
    pub user: Option<String>,
    /// Password protecting the private key (asked for if missing).
    #[arg(long, env = "FLOCK_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Files, servers, socket and timings.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Do not create a new identity if none exists.
    #[arg(long)]
    pub no_create: bool,
    /// Also print log lines on stderr (they always go to `<data>/flock-chat.log`).
    #[arg(long, short)]
    pub verbose: bool,
}

/// The log file in the data directory.
pub const LOG_FILE: &str = "flock-chat.log";

/// A log file larger than this at start-up is moved to `flock-chat.log.1`.
const LOG_ROTATE_BYTES: u64 = 8 << 20;

/// Runs the console UI until `/quit` or the end of input. Sets up logging (to
/// [`LOG_FILE`] in the data directory, and stderr with `-v`) unless the program has
/// already.
///
/// # Errors
/// Login failures and unusable input or output.
pub fn run(args: ChatArgs) -> Result<(), Box<dyn std::error::Error>> {
    init_logging(&args.client.data_dir, args.verbose)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(chat(args))
}

/// Log lines to `<data>/flock-chat.log` (`0600`, appended, rotated once at start-up
/// past 8 MiB), and to stderr with `-v`;
/// `RUST_LOG` filters as usual (default `info`).
fn init_logging(data_dir: &Path, verbose: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)?;
    let path = data_dir.join(LOG_FILE);
    // Bounded: a log past LOG_ROTATE_BYTES becomes `.1` (replacing the older one).
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        std::fs::rename(&path, data_dir.join(format!("{LOG_FILE}.1")))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    let file = std::sync::Mutex::new(file);
    let writer = if verbose {
        BoxMakeWriter::new(file.and(std::io::stderr))
    } else {
        BoxMakeWriter::new(file)
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
    Ok(())
}

/// Longest line a terminal in canonical mode hands over (Linux keeps 4095 bytes of a
/// longer one and drops the rest): a line this long may have been cut, so it is not sent.
const TTY_LINE_MAX: usize = 4_095;

/// Standard input: read in place while logging in (so a terminal's password can be
/// read without echo, and nothing else consumes it), then by a thread feeding a channel.
struct Ui {
    tty: bool,
}

impl Ui {
    fn new() -> Self {
        Self {
            tty: std::io::stdin().is_terminal(),
        }
    }

    /// Hands stdin to a reader thread (after login: input then races chat events).
    fn start(self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// The next line after `prompt`; `None` at the end of input. Nothing else runs
    /// while logging in, so the read blocks in place.
    fn ask(&mut self, prompt: &str) -> Option<String> {
        say(prompt);
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim().to_owned()),
        }
    }

    /// A password: without echo on a terminal, a plain line from a pipe.
    fn ask_secret(&mut self, prompt: &str) -> Option<String> {
        if self.tty {
            return rpassword::prompt_password(format!("{prompt} ")).ok();
        }
        self.ask(prompt)
    }
}

/// Passwords for a new identity must be at least this strong.
const WEAK_PASSWORD: &str =
    "a password needs at least 8 characters with upper case, lower case and a digit";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn parse_server(s: &str) -> Option<SocketAddrV4> {
    crate::tools::parse_addr(s).ok()
}

async fn pick_server(ui: &mut Ui) -> Result<SocketAddrV4, Box<dyn std::error::Error>> {
    loop {
        say("* looking for servers...");
        let found = discover(Duration::from_millis(1_500)).await?;
        if found.is_empty() {
            say("* no server answered");
        }
        for (i, s) in found.iter().enumerate() {
            say(&format!("  {}) {s}", i + 1));
        }
        let answer = ui
            .ask("pick a server (number or HOST:PORT), r to rescan:")
            .ok_or("no server chosen")?;
        if let Some(s) = answer
            .parse::<usize>()
            .ok()
            .and_then(|n| found.get(n.wrapping_sub(1)))
        {
            return Ok(*s);
        }
        if let Some(s) = parse_server(&answer) {
            return Ok(s);
        }
    }
}

fn strong_password(p: &str) -> bool {
    p.chars().count() >= 8
        && p.chars().any(char::is_uppercase)
        && p.chars().any(char::is_lowercase)
        && p.chars().any(|c| c.is_ascii_digit())
}

/// A new identity's password: asked until it is strong enough and typed the same twice.
async fn new_password(ui: &mut Ui) -> Result<String, Box<dyn std::error::Error>> {
    loop {
        let password = ui.ask_secret("new password:").ok_or("no password")?;
        if !strong_password(&password) {
            say(&format!("!! {WEAK_PASSWORD}; try again"));
            continue;
        }
        let again = ui.ask_secret("confirm password:").ok_or("no password")?;
        if again == password {
            return Ok(password);
        }
        say("!! the passwords differ; try again");
    }
}

async fn chat(args: ChatArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut ui = Ui::new();
    let mut servers: Vec<SocketAddrV4> = Vec::new();
    for s in &args.client.servers {
        servers.push(parse_server(s).ok_or_else(|| format!("bad server address {s:?}"))?);
    }
    if servers.is_empty() {
        if args.client.no_discovery {
            return Err("no --server given and discovery is off".into());
        }
        servers.push(pick_server(&mut ui).await?);
    }
    let user = match args.user.clone() {
        Some(u) => u,
        None => ui.ask("username:").ok_or("no username")?,
    };
    flock_proto::validate_username(&user).map_err(|e| format!("invalid username {user:?}: {e}"))?;
    let exists = KeyDir::new(args.client.data_dir.join("keys"), &user)?.exists();
    if !exists {
        if args.no_create {
            return Err(format!(
                "no identity for {user} in {}",
                args.client.data_dir.display()
            )
            .into());
        }
        say(&format!("* creating a new identity for {user}"));
    }
    let mut client = loop {
        let password = match args.password.clone() {
            Some(p) if !exists && !strong_password(&p) => return Err(WEAK_PASSWORD.into()),
            Some(p) => p,
            None if exists => ui.ask_secret("password:").ok_or("no password")?,
            None => new_password(&mut ui).await?,
        };
        let mut opts = args.client.options(&user, &password);
        opts.servers.clone_from(&servers);
        opts.create = !args.no_create;
        match Client::login(opts).await {
            Ok(client) => break client,
            // A typed password may be mistyped: ask again.
            Err(ClientError::WrongPassword(_)) if args.password.is_none() => {
                say(&format!("!! wrong password for {user}; try again"));
            }
            Err(e) => return Err(e.into()),
        }
    };
    say(&format!(
        "* logged in as {user}, listening on {}",
        client.local_addr()
    ));
    say("* @user opens a chat; /help lists every command");
    let tty = ui.tty;
    let mut lines = ui.start();

    let mut current: Option<String> = None;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                if tty && line.len() >= TTY_LINE_MAX {
                    say(&format!(
                        "!! not sent: a terminal line holds at most {TTY_LINE_MAX} bytes, so \
                         this one may have been cut; pipe longer text into flock chat or use \
                         the web UI (up to {} bytes per message)",
                        flock_proto::client::MAX_TEXT_BYTES
                    ));
                    continue;
                }
                if !command(&client, &mut current, line.trim()).await? {
                    break;
                }
            }
            event = client.next_event() => {
                let Some(event) = event else { break };
                show(&client, current.as_deref(), event).await;
            }
        }
    }
    client.shutdown().await;
    Ok(())
}

/// One line of input; `false` to quit.
/// Prints the last messages with `peer` and marks them seen.
async fn print_history(client: &Client, peer: &str) -> Result<(), Box<dyn std::error::Error>> {
    for m in client.history(peer, 20).await? {
        let who = match m.direction {
            Direction::Incoming => m.author.clone(),
            Direction::Outgoing => client.user().to_owned(),
        };
        let status = match (m.direction, m.status) {
            (Direction::Outgoing, s) => format!(" ({s})"),
            _ if !m.authenticated => " (unverified)".to_owned(),
            _ => String::new(),
        };
        say(&format!("  [{}] {who}: {}{status}", clock(m.at_ms), m.text));
    }
    client.mark_seen(peer).await?;
    Ok(())
}

/// `/verify <user>`: the safety number to compare; `/verify <user> yes` (after comparing)
/// marks them verified, `/verify <user> no` takes the mark back.
async fn verify_command(client: &Client, arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut words = arg.split_whitespace();
    let (Some(user), answer) = (words.next(), words.next()) else {
        say("* /verify <user> [yes|no]");
        return Ok(());
    };
    let Some((number, verified)) = client.safety_number(user).await? else {
        say(&format!(
            "* no key pinned for {user} yet: open a chat with @{user} first"
        ));
        return Ok(());
    };
    match answer {
        None => {
            let mark = if verified { "verified" } else { "not verified" };
            say(&format!("* safety number with {user} ({mark}): {number}"));
            say(&format!(
                "* compare it with {user} (in person or by call); if it matches: /verify {user} yes"
            ));
        }
        Some(a @ ("yes" | "no")) => {
            if client.set_verified(user, a == "yes").await? {
                let mark = if a == "yes" {
                    "verified"
                } else {
                    "not verified"
                };
                say(&format!("* {user} is now {mark}"));
            } else {
                say(&format!(
                    "!! cannot verify {user} now (a key change is pending)"
                ));
            }
        }
        Some(_) => say("* /verify <user> [yes|no]"),
    }
    Ok(())
}

/// `/servers`: list the servers that answer discovery; `/servers N` or
/// `/servers HOST:PORT` switches to one (the client registers there again).
async fn servers_command(client: &Client, arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let found = discover(Duration::from_millis(1_500)).await?;
    let target = arg
        .parse::<usize>()
        .ok()
        .and_then(|n| found.get(n.wrapping_sub(1)).copied())
        .or_else(|| parse_server(arg));
    if let Some(server) = target {
        client.connect(server).await?;
        say(&format!("* switching to {server}"));
        return Ok(());
    }
    if !arg.is_empty() {
        say(&format!("!! no server {arg:?}"));
    }
    if found.is_empty() {
        say("* no server answered discovery");
    }
    for (i, s) in found.iter().enumerate() {
        say(&format!("  {}) {s}", i + 1));
    }
    Ok(())
}

async fn command(
    client: &Client,
    current: &mut Option<String>,
    line: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    if line.is_empty() {
        return Ok(true);
    }
    if let Some(peer) = line.strip_prefix('@') {
        let peer = peer.trim();
        if flock_proto::validate_username(peer).is_err() {
            say(&format!("!! {peer:?} is not a valid username"));
            return Ok(true);
        }
        say(&format!("* chat with {peer} (/back to leave)"));
        warn_lookalike(client, peer).await;
        print_history(client, peer).await?;
        if let Some((number, verified)) = client.safety_number(peer).await? {
            let mark = if verified { " (verified)" } else { "" };
            say(&format!("* safety number with {peer}{mark}: {number}"));
        }
        client.lookup(peer).await?;
        *current = Some(peer.to_owned());
        return Ok(true);
    }
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "/quit" | "/exit" => return Ok(false),
        "/back" => {
            *current = None;
            say("* menu: @user, /chats, /pending, /help, /quit");
        }
        "/chats" => {
            let chats = client.chats(100).await?;
            if chats.is_empty() {
                say("* no conversations yet");
            }
            let known = known_names(client).await;
            for c in chats {
                let mark = lookalike::describe(&c.peer, known.iter().map(String::as_str))
                    .map(|why| format!(" [!! {why}]"))
                    .unwrap_or_default();
                say(&format!(
                    "  {}{mark} ({} unread): {}",
                    c.peer, c.unread, c.last.text
                ));
            }
        }
        "/pending" => {
            let pending = client.pending().await?;
            say(&format!("* {} message(s) waiting", pending.len()));
            for e in pending {
                say(&format!(
                    "  to {} (id {}), {} attempt(s), queued at {}",
                    e.recipient,
                    e.msg_id,
                    e.attempts,
                    clock(e.created_at_ms)
                ));
            }
        }
        "/accept" | "/reject" => {
            let user = arg.trim();
            let done = if cmd == "/accept" {
                client.accept_key(user).await?
            } else {
                client.reject_key(user).await?
            };
            match (done, cmd) {
                (true, "/accept") => say(&format!("* new key for {user} accepted")),
                (true, _) => say(&format!("* kept the old key for {user}")),
                (false, _) => say(&format!("* no key change pending for {user}")),
            }
        }
        "/verify" => verify_command(client, arg).await?,
        "/counters" => say(&format!("* {:?}", client.counters().await?)),
        "/servers" => servers_command(client, arg.trim()).await?,
        "/refresh" => match current.as_deref() {
            Some(peer) => print_history(client, peer).await?,
            None => say("* open a chat first: @user"),
        },
        "/help" => help(),
        _ if cmd.starts_with('/') => say(&format!("!! unknown command {cmd} (/help)")),
        _ => match current {
            Some(peer) => match client.send(peer, line).await {
                Ok(_) => {} // the status event says "queued"

                Err(e) => say(&format!("!! not sent: {e}")),
            },
            None => say("* open a chat first: @user"),
        },
    }
    Ok(true)
}

async fn show(client: &Client, current: Option<&str>, event: ClientEvent) {
    match event {
        ClientEvent::Message {
            from,
            text,
            authenticated,
            ..
        } => {
            let tag = if authenticated { "" } else { " (unverified)" };
            say(&format!("<{from}{tag}> {text}"));
            if current == Some(from.as_str()) {
                let _ = client.mark_seen(&from).await;
            }
        }
        ClientEvent::Protocol(e) => match e {
            Event::Connection(ConnectionState::Connecting { server }) => {
                say(&format!("* connecting to {server}"));
            }
            Event::Connection(ConnectionState::Registered { server }) => {
                say(&format!("* registered with {server}"));
            }
            Event::Connection(ConnectionState::Lost { server }) => {
                say(&format!(
                    "!! server {server} is not answering; looking for another"
                ));
            }
            Event::RegistrationRefused { reason } => {
                say(&format!("!! registration refused: {reason}"));
            }
            e @ (Event::Displaced { .. } | Event::AlsoRunning { .. }) => {
                if let Some(notice) = crate::client::identity_notice(client.user(), &e) {
                    say(&format!("!! {notice}"));
                }
            }
            Event::Status { to, msg_id, status } => {
                // A failure needs the user's attention: shouted.
                let s = match status {
                    Status::Failed => status.as_str().to_uppercase(),
                    _ => status.to_string(),
                };
                say(&format!("* to {to}: {s} (id {msg_id})"));
            }
            Event::KeyPinned {
                user, fingerprint, ..
            } => {
                say(&format!("* pinned {user}'s key {}", short(&fingerprint)));
                warn_lookalike(client, &user).await;
            }
            Event::KeyChanged {
                user,
                pinned,
                new,
                verified: true,
                ..
            } => {
                say(&format!(
                    "!! !! KEY CHANGED for {user}, WHOM YOU VERIFIED: pinned {} but now {}. \
                     Someone may be impersonating {user}. Sending to {user} is blocked. \
                     Ask {user} in person; /accept {user} only if they reinstalled, then \
                     compare safety numbers again (/verify {user}). /reject {user} keeps the \
                     old key.",
                    short(&pinned),
                    short(&new)
                ));
            }
            Event::KeyChanged {
                user, pinned, new, ..
            } => {
                say(&format!(
                    "!! KEY CHANGED for {user}: pinned {} but now {}. Sending to {user} is \
                     blocked: /accept {user} to trust the new key, /reject {user} to keep the old.",
                    short(&pinned),
                    short(&new)
                ));
            }
            Event::KeyAccepted { user, fingerprint } => {
                say(&format!("* {user}'s key is now {}", short(&fingerprint)));
            }
            Event::Warning(w) => say(&format!("!! {w}")),
            // Dialect changes and whatever a newer machine reports: nothing to show.
            _ => {}
        },
    }
}

/// Every command, for `/help`: `(usage, what it does)`.
const COMMANDS: &[(&str, &str)] = &[
    (
        "@user",
        "open a chat with user (then type a line to send it)",
    ),
    ("/back", "leave the chat, back to the menu"),
    (
        "/chats",
        "conversations with unread counts (look-alike names marked)",
    ),
    ("/refresh", "print the open chat again"),
    ("/pending", "messages waiting in the outbox"),
    (
        "/accept <user>",
        "trust user's changed key (sending resumes)",
    ),
    ("/reject <user>", "keep user's old key"),
    (
        "/verify <user> [yes|no]",
        "show the safety number; mark user verified (or not)",
    ),
    ("/counters", "what was refused or rate-limited"),
    ("/servers", "list the servers discovery finds"),
    (
        "/servers N|HOST:PORT",
        "switch to one of them (or to any server)",
    ),
    ("/help", "this list"),
    ("/quit, /exit", "leave (end of input does too)"),
];

fn help() {
    say("* commands:");
    let width = COMMANDS.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (cmd, what) in COMMANDS {
        say(&format!("  {cmd:<width$}  {what}"));
    }
}

/// Conversation peers and pinned contacts (empty if the database cannot say).
async fn known_names(client: &Client) -> Vec<String> {
    let mut known: Vec<String> = client
        .chats(1_000)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.peer)
        .chain(
            client
                .contacts()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.user),
        )
        .collect();
    known.sort();
    known.dedup();
    known
}

/// One `!!` line when `peer` is a look-alike of a known name or mixes alphabets.
async fn warn_lookalike(client: &Client, peer: &str) {
    let known = known_names(client).await;
    if let Some(why) = lookalike::describe(peer, known.iter().map(String::as_str)) {
        say(&format!(
            "!! {peer} {why}: make sure this is who you think it is"
        ));
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

/// A Unix-ms time in local time: `HH:MM` today, `YYYY-MM-DD HH:MM` on another day.
fn clock(at_ms: i64) -> String {
    use chrono::{Local, TimeZone as _};
    let Some(at) = Local.timestamp_millis_opt(at_ms).single() else {
        return "--:--".to_owned();
    };
    if at.date_naive() == Local::now().date_naive() {
        at.format("%H:%M").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M").to_string()
    }
}
