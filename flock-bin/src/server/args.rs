//! The command line of `flock server` ([`ServerArgs`], clap), logging set-up and the
//! `main` of a server-only program. Compiled with the `cli` feature only.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use flock_proto::limits;

use super::{ServerOptions, run};

/// Options of `flock server` (also used by `cargo run --example server`); converts into
/// [`ServerOptions`].
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Node name: answered to DISCOVER, shown in STATUS, names the data directory.
    pub name: String,
    /// Address to bind. 0.0.0.0 (default) receives broadcasts on the command socket;
    /// a specific address gets a separate broadcast listener.
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    pub bind: Ipv4Addr,
    /// Command port (0: any free port).
    #[arg(long, default_value_t = limits::SERVER_PORT)]
    pub port: u16,
    /// PING-only port (default: command port + 1, i.e. 12346; 0 disables it).
    #[arg(long)]
    pub ping_port: Option<u16>,
    /// Data directory (default: `./data/<NAME>`); the database is `server.db` inside.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replicas per record besides the owner (successor list length = replicas + 1).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Seed node(s) to join through (for networks without broadcast, or several nodes on
    /// one host). Without it the node broadcasts to find a ring, and founds one if none
    /// answers.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Vec<String>,
    /// Do not broadcast to find a ring and do not listen for broadcasts.
    #[arg(long)]
    pub no_broadcast: bool,
    /// Do not listen for multicast DISCOVER_SERVER.
    #[arg(long)]
    pub no_multicast: bool,
    /// The address peers know this node by (default: --bind, or the address of the
    /// default route when bound to 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<Ipv4Addr>,
    /// Requests per second one source address may cause (0: unlimited). A REGISTER costs
    /// 5, an admin request 5, anything else 1. Ring members are exempt.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Burst allowance per source address.
    #[arg(long, default_value_t = 2000.0)]
    pub burst: f64,
    /// Most datagrams read before the actions are drained (and committed) together.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Longest a graceful leave may take at shutdown, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub leave_timeout: f64,
    /// Threads that verify signatures ahead of the event loop (default: one per core;
    /// 0: verify on the event loop).
    #[arg(long)]
    pub verify_threads: Option<usize>,
    /// How long to listen for an existing ring before founding one, in milliseconds.
    #[arg(long, default_value_t = 1200)]
    pub probe_ms: u64,
    /// Sources (CIDR, repeatable) that may ask STATUS, SNAPSHOT and CHECKSUM once they
    /// proved their address with a cookie.
    #[arg(long, value_name = "CIDR", default_value = "127.0.0.0/8")]
    pub admin_allow: Vec<super::Cidr>,
    /// Bound of the ring machine's tables (pending requests, lookups, transfers); one
    /// peer's transfers get 1/16 of it, all transfers others asked for at most half.
    #[arg(long, default_value_t = 4096)]
    pub max_pending: usize,
    /// Cluster key file (`flock keygen --cluster FILE`; one key per line, the first
    /// sends): only holders of a key are ring members. Without it the ring is open.
    #[arg(long, value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
}

impl ServerArgs {
    /// Defaults for a node named `name` (as if `flock server <name>`).
    pub fn new(name: &str) -> Self {
        <Self as clap::FromArgMatches>::from_arg_matches(
            &<Self as clap::Args>::augment_args(clap::Command::new("server"))
                .get_matches_from(["server", name]),
        )
        .expect("defaults parse")
    }
}

impl From<ServerArgs> for ServerOptions {
    fn from(a: ServerArgs) -> Self {
        let mut o = Self::new(a.name);
        o.bind = a.bind;
        o.port = a.port;
        o.ping_port = a.ping_port;
        o.data_dir = a.data_dir;
        o.replicas = a.replicas;
        o.join = a.join;
        o.no_broadcast = a.no_broadcast;
        o.no_multicast = a.no_multicast;
        o.advertise = a.advertise;
        o.rate = a.rate;
        o.burst = a.burst;
        o.batch = a.batch;
        o.leave_timeout =
            Duration::try_from_secs_f64(a.leave_timeout.max(0.0)).unwrap_or(Duration::ZERO);
        o.verify_threads = a.verify_threads;
        o.probe_window = Duration::from_millis(a.probe_ms);
        o.admin_allow = a.admin_allow;
        o.max_pending = a.max_pending;
        o.cluster_key_file = a.cluster_key;
        o
    }
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `main` of a program that is only a server: parses [`ServerArgs`] from the command
/// line, sets up logging and runs (what `cargo run --example server` does).
pub fn main_from_env() -> std::process::ExitCode {
    #[derive(Debug, clap::Parser)]
    #[command(name = "server", about = "A Flock ring server")]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }
    let cli = <Cli as clap::Parser>::parse();
    init_tracing();
    match run(cli.args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_defaults_are_the_options_defaults() {
        let o: ServerOptions = ServerArgs::new("n1").into();
        assert_eq!(o, ServerOptions::new("n1"));
    }
}
