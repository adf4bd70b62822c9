//! Command-line options every client front end shares (`flock chat`, `flock web`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use super::ClientOptions;

/// Where a client keeps its files, how it finds servers, its socket and its timings.
/// Flattened into the arguments of `flock chat` and `flock web`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Directory holding `keys/` and `chats/`.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Server to use (repeat for fallbacks); without it, servers are discovered.
    #[arg(long = "server", value_name = "HOST:PORT")]
    pub servers: Vec<String>,
    /// Never look for servers by broadcast or multicast.
    #[arg(long)]
    pub no_discovery: bool,
    /// Local IP of the client's UDP socket.
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    pub bind: Ipv4Addr,
    /// Local UDP port of the client (0: any).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// IP to register (default: the bound IP, or the route toward the server).
    #[arg(long)]
    pub advertise: Option<Ipv4Addr>,
    /// Wait this long for a server's answer, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub request_timeout_ms: u64,
    /// Check an idle server this often, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub keepalive_ms: u64,
    /// First retry delay for undelivered messages, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub retry_max_ms: u64,
}

impl ClientArgs {
    /// Client options for `user` with these settings (servers, creation left to the caller).
    pub fn options(&self, user: &str, password: &str) -> ClientOptions {
        let mut opts = ClientOptions::new(user, password, &self.data_dir);
        opts.discovery = !self.no_discovery;
        opts.bind = SocketAddrV4::new(self.bind, self.port);
        opts.advertise = self.advertise;
        opts.config.request_timeout_ms = self.request_timeout_ms;
        opts.config.keepalive_ms = self.keepalive_ms;
        opts.config.retry_base_ms = self.retry_base_ms;
        opts.config.retry_max_ms = self.retry_max_ms;
        opts
    }
}
