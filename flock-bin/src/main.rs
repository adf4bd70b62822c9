//! The `flock` command (needs the `cli` feature; `flock chat`, `flock web` and `flock bench`
//! need `console`, `web` and `bench`, all on by default).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flock_bin::{server, tools};

/// Flock: decentralized, end-to-end encrypted messaging over a Chord ring.
#[derive(Debug, Parser)]
#[command(name = "flock", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a ring server (commands on UDP 12345, PING on 12346, multicast discovery).
    Server(server::ServerArgs),
    /// Make a cluster key file for `flock server --cluster-key FILE`.
    Keygen {
        /// Where to write the new key (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        cluster: PathBuf,
    },
    /// Print the ring as a node sees it (nodes, ranges, successors, record counts).
    Status {
        /// The node to ask.
        #[arg(value_name = "HOST:PORT")]
        server: String,
        /// Print that node's raw STATUS JSON only.
        #[arg(long)]
        json: bool,
        /// Print every record that node holds (walking its SNAPSHOT pages), one per line.
        #[arg(long)]
        snapshot: bool,
        /// Authenticate with the ring's cluster key (answered from any address, not only
        /// from the nodes' --admin-allow).
        #[arg(long, value_name = "FILE")]
        cluster_key: Option<std::path::PathBuf>,
    },
    /// Look users up (one line per user; exit status 1 if any is not found).
    Resolve {
        /// The server to ask.
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// Give up on a user after this many milliseconds (requests are resent at a
        /// third of it).
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
        /// Usernames.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Register users with signed REGISTERs (keys are created under --keys if missing).
    Register {
        /// The server to ask.
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// Key directory (`<DIR>/<user>/private.pem`).
        #[arg(long, value_name = "DIR", default_value = "keys")]
        keys: PathBuf,
        /// Address to register (default: this host's address toward the server).
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// Port to register.
        #[arg(long, default_value_t = 40000)]
        port: u16,
        /// Sign every user with the first user's key (one key generation, for tests).
        #[arg(long)]
        one_key: bool,
        /// Usernames.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Benchmark a server node against a bare UDP echo server on loopback.
    #[cfg(feature = "bench")]
    Bench(flock_bin::bench::BenchArgs),
    /// The console chat: discover a server, log in, talk (`@user`, `/back`, `/chats`,
    /// `/pending`, `/quit`).
    #[cfg(feature = "console")]
    Chat(flock_bin::chat::ChatArgs),
    /// The web UI on http://127.0.0.1:5000/ (sessions with a login, servers, chats, the ring page).
    #[cfg(feature = "web")]
    Web(flock_bin::web::WebArgs),
    /// Relay discovery from a client subnet to a server subnet (run on the router).
    Proxy(flock_bin::proxy::ProxyArgs),
    /// Send raw datagrams and print what comes back (a testing aid).
    #[command(hide = true)]
    SendRaw {
        /// Destination.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// How long to collect replies, in milliseconds.
        #[arg(long, default_value_t = 500)]
        wait_ms: u64,
        /// Answer `RING COOKIE` challenges by resending with the cookie.
        #[arg(long)]
        echo_cookie: bool,
        /// Send from this local address (default: any free port).
        #[arg(long, value_name = "IP:PORT")]
        from: Option<String>,
        /// Messages, one datagram each (`\xNN` escapes allowed).
        messages: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `flock chat` logs to a file of its own, not between the chat's lines.
    #[cfg(feature = "console")]
    let own_log = matches!(cli.command, Command::Chat(_));
    #[cfg(not(feature = "console"))]
    let own_log = false;
    if !own_log {
        server::init_tracing();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flock: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let timeout = Duration::from_secs(1);
    match command {
        Command::Server(args) => server::run(args)?,
        Command::Keygen { cluster } => server::write_cluster_key(&cluster)?,
        Command::Proxy(args) => flock_bin::proxy::run(&args)?,
        Command::Status {
            server,
            json,
            snapshot,
            cluster_key,
        } => {
            let addr = tools::parse_addr(&server)?;
            let key = match cluster_key {
                Some(f) => Some(flock_bin::server::read_keys(&f)?[0]),
                None => None,
            };
            if snapshot {
                let (users, pages) = tools::snapshot(addr, timeout, key.as_ref())?;
                for (user, r) in &users {
                    println!("{user} {r}");
                }
                println!("{} records in {pages} pages", users.len());
            } else if json {
                println!("{}", tools::admin(addr, "STATUS", timeout, key.as_ref())?);
            } else {
                tools::print_ring(addr, timeout, key.as_ref())?;
            }
        }
        Command::Resolve {
            server,
            users,
            timeout_ms,
        } => {
            let addr = tools::parse_addr(&server)?;
            let replies = tools::resolve_many(
                addr,
                &users,
                Duration::from_millis(timeout_ms.div_ceil(3).max(1)),
                Duration::from_millis(timeout_ms),
            )?;
            let mut all_ok = true;
            for (user, reply) in users.iter().zip(replies) {
                let reply = reply.unwrap_or_else(|| "ERROR no answer".into());
                all_ok &= reply.starts_with("OK");
                println!("{user} {reply}");
            }
            if !all_ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Register {
            server,
            keys,
            ip,
            port,
            one_key,
            users,
        } => {
            let addr = tools::parse_addr(&server)?;
            let ip = ip.unwrap_or_else(|| tools::local_ip_toward(addr));
            let shared = match (one_key, users.first()) {
                (true, Some(first)) => Some(tools::load_or_create_key(&keys, first)?),
                _ => None,
            };
            let mut all_ok = true;
            for user in users {
                let key = match &shared {
                    Some(k) => k.clone(),
                    None => tools::load_or_create_key(&keys, &user)?,
                };
                let req = tools::signed_register(&key, &user, ip, port, tools::version_now())?;
                let reply = tools::request(addr, &req, Duration::from_secs(2), 3)
                    .map(|r| String::from_utf8_lossy(&r).into_owned())
                    .unwrap_or_else(|e| format!("ERROR {e}"));
                all_ok &= reply.starts_with("OK");
                println!("{user} {reply}");
            }
            if !all_ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        #[cfg(feature = "bench")]
        Command::Bench(args) => flock_bin::bench::run(args)?,
        #[cfg(feature = "console")]
        Command::Chat(args) => flock_bin::chat::run(args)?,
        #[cfg(feature = "web")]
        Command::Web(args) => flock_bin::web::run(args)?,
        Command::SendRaw {
            to,
            wait_ms,
            echo_cookie,
            from,
            messages,
        } => {
            let addr = tools::parse_addr(&to)?;
            let from = from.as_deref().map(tools::parse_addr).transpose()?;
            let msgs: Vec<Vec<u8>> = messages.iter().map(|m| unescape(m)).collect();
            let wait = Duration::from_millis(wait_ms);
            let replies = tools::send_raw(addr, from, &msgs, wait, echo_cookie)?;
            for r in replies {
                println!("{}", String::from_utf8_lossy(&r));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `\xNN` escapes to bytes (for `send-raw`).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Some(v) = std::str::from_utf8(&b[i + 2..i + 4])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
