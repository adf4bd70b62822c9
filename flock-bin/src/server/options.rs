//! [`ServerOptions`]: everything a server needs to start, as a plain struct (the
//! command line's `ServerArgs` converts into it).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use flock_proto::limits;

/// How to run a server node. [`ServerOptions::new`] gives the defaults of
/// `flock server <name>`; change fields as needed.
///
/// ```
/// use flock_bin::server::ServerOptions;
///
/// let mut opts = ServerOptions::new("node1");
/// opts.bind = std::net::Ipv4Addr::LOCALHOST;
/// opts.port = 0; // any free port
/// assert_eq!(opts.replicas, 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Node name: answered to DISCOVER, shown in STATUS, names the data directory.
    pub name: String,
    /// Address to bind. 0.0.0.0 receives broadcasts on the command socket; a specific
    /// address gets a separate broadcast listener.
    pub bind: Ipv4Addr,
    /// Command port (0: any free port).
    pub port: u16,
    /// PING-only port (`None`: command port + 1; `Some(0)`: off).
    pub ping_port: Option<u16>,
    /// Data directory (`None`: `./data/<name>`); the database is `server.db` inside.
    pub data_dir: Option<PathBuf>,
    /// Replicas per record besides the owner (successor list length = replicas + 1).
    pub replicas: usize,
    /// Seed nodes to join through (`host:port`). Empty: broadcast to find a ring and
    /// found one if none answers.
    pub join: Vec<String>,
    /// Do not broadcast to find a ring and do not listen for broadcasts.
    pub no_broadcast: bool,
    /// Do not listen for multicast DISCOVER_SERVER.
    pub no_multicast: bool,
    /// The address peers know this node by (`None`: `bind`, or the address of the
    /// default route when bound to 0.0.0.0).
    pub advertise: Option<Ipv4Addr>,
    /// Requests per second one source address may cause (0: unlimited).
    pub rate: f64,
    /// Burst allowance per source address.
    pub burst: f64,
    /// Most datagrams read before the actions are drained (and committed) together.
    pub batch: usize,
    /// Longest a graceful leave may take at shutdown.
    pub leave_timeout: Duration,
    /// Threads that verify signatures ahead of the event loop (`None`: one per core;
    /// `Some(0)`: verify on the event loop).
    pub verify_threads: Option<usize>,
    /// How long to listen for an existing ring before founding one.
    pub probe_window: Duration,
    /// Sources that may ask `STATUS`, `SNAPSHOT` and `CHECKSUM` (after proving their
    /// address with a cookie). Default: loopback.
    pub admin_allow: Vec<Cidr>,
    /// Bound of the ring machine's tables ([`flock_chord::Config::max_pending`]); a peer's
    /// transfers get 1/16 of it, all transfers others asked for at most half.
    pub max_pending: usize,
    /// Cluster keys ([`crate::server::read_keys`]; the first sends): every ring frame is
    /// authenticated with them and only key holders are members. Empty: an open ring.
    pub cluster_keys: Vec<[u8; 32]>,
    /// A key file read at start-up (its keys come after [`ServerOptions::cluster_keys`]).
    pub cluster_key_file: Option<PathBuf>,
}

impl ServerOptions {
    /// The defaults of `flock server <name>`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            bind: Ipv4Addr::UNSPECIFIED,
            port: limits::SERVER_PORT,
            ping_port: None,
            data_dir: None,
            replicas: 3,
            join: Vec::new(),
            no_broadcast: false,
            no_multicast: false,
            advertise: None,
            rate: 1000.0,
            burst: 2000.0,
            batch: 256,
            leave_timeout: Duration::from_secs(3),
            verify_threads: None,
            probe_window: Duration::from_millis(1200),
            admin_allow: vec![Cidr::LOOPBACK],
            max_pending: 4096,
            cluster_keys: Vec::new(),
            cluster_key_file: None,
        }
    }
}

/// An IPv4 prefix, `a.b.c.d/n` (a bare address is `/32`).
///
/// ```
/// use flock_bin::server::Cidr;
///
/// let c: Cidr = "10.1.0.0/16".parse().unwrap();
/// assert!(c.contains("10.1.200.3".parse().unwrap()));
/// assert!(!c.contains("10.2.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Cidr {
    /// `127.0.0.0/8`.
    pub const LOOPBACK: Self = Self {
        addr: Ipv4Addr::new(127, 0, 0, 0),
        prefix: 8,
    };

    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0)
    }

    /// Whether `ip` is inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = ip.parse().map_err(|e| format!("{s}: {e}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s}: prefix length 0 to 32"))?;
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Default for ServerOptions {
    /// [`ServerOptions::new`] with the name `flock`.
    fn default() -> Self {
        Self::new("flock")
    }
}
