//! `flock chat`: the console UI.
//!
//! Server discovery (pick a server or rescan), login or account creation, then a menu:
//! `@user` opens a chat, `/back` returns to the menu, `/chats` lists conversations with
//! unread counts, `/pending` shows the outbox, `/accept <user>` and `/reject <user>`
//! decide about a changed key, `/servers` lists (or switches to) the servers discovery finds,
//! `/refresh` reprints the open chat, `/quit` exits. Incoming messages appear as they arrive.
//! Works the same with a terminal or a pipe on stdin (one command or message per line).
//!
//! Output lines start with a marker so scripts can follow along: `<user> text` for a
//! message, `* ...` for information, `!! ...` for anything that needs attention.

use std::io::{BufRead, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::client::{ConnectionState, Event, Status};
use flock_store::{Direction, KeyDir};
use tokio::sync::mpsc;

use crate::client::{Client, ClientArgs, ClientEvent, discover};

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
}

/// Runs the console UI until `/quit` or the end of input.
///
/// # Errors
/// Login failures and unusable input or output.
pub fn run(args: ChatArgs) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(chat(args))
}

struct Ui {
    lines: mpsc::UnboundedReceiver<String>,
}

impl Ui {
    fn start() -> Self {
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
        Self { lines: rx }
    }

    async fn ask(&mut self, prompt: &str) -> Option<String> {
        say(prompt);
        self.lines.recv().await.map(|l| l.trim().to_owned())
    }
}

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
            .await
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

async fn chat(args: ChatArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut ui = Ui::start();
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
        None => ui.ask("username:").await.ok_or("no username")?,
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
    let password = match args.password.clone() {
        Some(p) => p,
        None => ui.ask("password:").await.ok_or("no password")?,
    };
    if !exists && !strong_password(&password) {
        return Err(
            "password: at least 8 characters with upper case, lower case and a digit".into(),
        );
    }
    let mut opts = args.client.options(&user, &password);
    opts.servers = servers;
    opts.create = !args.no_create;
    let mut client = Client::login(opts).await?;
    say(&format!(
        "* logged in as {user}, listening on {}",
        client.local_addr()
    ));
    say("* @user opens a chat, /back, /chats, /pending, /accept <user>, /help, /quit");

    let mut current: Option<String> = None;
    loop {
        tokio::select! {
            line = ui.lines.recv() => {
                let Some(line) = line else { break };
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
            for c in chats {
                say(&format!(
                    "  {} ({} unread): {}",
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
        "/help" => say(
            "* @user: open a chat; then type to send. /back: menu. /chats: conversations. \
             /pending: outbox. /accept <user>, /reject <user>: decide on a changed key. \
             /verify <user> [yes|no]: show the safety number, mark verified (or not). \
             /counters: what was refused or rate-limited. \
             /servers [N|HOST:PORT]: list or switch servers. /refresh: reprint the chat. /quit",
        ),
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

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

/// `HH:MM` (UTC) of a Unix-ms time.
fn clock(at_ms: i64) -> String {
    let secs = at_ms.div_euclid(1_000).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3_600, secs / 60 % 60)
}
