//! `flock bench`: pipelined RESOLVE and REGISTER traffic at one server node on loopback,
//! next to a bare tokio UDP echo server measured in the same run on the same machine.
//!
//! Each workload runs on two threads: the server (its own `current_thread` runtime, as
//! `flock server` runs) and one blocking client that keeps `--inflight` requests
//! outstanding, sending a new one for every reply. Replies are matched in order (one
//! node on loopback answers in order), which gives the latency of every request.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flock_crypto::PrivateKey;

use crate::server::{self, ServerArgs};
use crate::tools;

/// Options of `flock bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Requests per echo and RESOLVE run.
    #[arg(long, default_value_t = 200_000)]
    pub requests: usize,
    /// Registrations in the REGISTER run (each freshly signed: signing takes a while).
    #[arg(long, default_value_t = 20_000)]
    pub registers: usize,
    /// Echo and RESOLVE run in this many alternating rounds (each a share of
    /// `--requests`); the table shows the median round, so that load from elsewhere on
    /// the machine hits both alike.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Registrations kept in flight in the REGISTER run (a durable reply waits for an
    /// fsync, so a closed-loop client needs more in flight to fill a batch).
    #[arg(long, default_value_t = 256)]
    pub register_inflight: usize,
    /// Verification threads of the node (default: one per core; 0: on the event loop).
    #[arg(long)]
    pub verify_threads: Option<usize>,
    /// Users registered before the runs (RESOLVE picks among them).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Distinct signing keys (key generation is slow).
    #[arg(long, default_value_t = 4)]
    pub keys: usize,
    /// Also RESOLVE through a ring of this many nodes on loopback, open (answers
    /// confirmed by a majority of the record's holders) and with a cluster key (the
    /// owner's answer suffices), in alternating rounds of the same run (0: skip).
    #[arg(long, default_value_t = 0)]
    pub ring: usize,
    /// Most datagrams the server reads before it drains and commits.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

/// The outcome of one pipelined run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Replies received.
    pub replies: usize,
    /// Replies that were not the expected kind.
    pub bad: usize,
    /// Requests given up on (no reply within the timeout).
    pub lost: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Every latency, in microseconds, sorted.
    lat: Vec<u32>,
}

impl RunStats {
    /// Replies per second.
    pub fn rate(&self) -> f64 {
        self.replies as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Several rounds of one workload: the median round's rate, latencies over all.
    fn merge(mut runs: Vec<Self>) -> Self {
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let mid = &runs[runs.len() / 2];
        let mut lat: Vec<u32> = runs.iter().flat_map(|r| r.lat.iter().copied()).collect();
        lat.sort_unstable();
        Self {
            replies: mid.replies,
            bad: runs.iter().map(|r| r.bad).sum(),
            lost: runs.iter().map(|r| r.lost).sum(),
            elapsed: mid.elapsed,
            p50: percentile(&lat, 0.50),
            p99: percentile(&lat, 0.99),
            lat,
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(u64::from(sorted[i.min(sorted.len() - 1)]))
}

/// Sends `requests` to `server` keeping `inflight` outstanding; `ok` classifies replies.
pub fn drive(
    server: SocketAddr,
    requests: &[Vec<u8>],
    inflight: usize,
    ok: impl Fn(&[u8]) -> bool,
) -> std::io::Result<RunStats> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(inflight);
    let mut lat: Vec<u32> = Vec::with_capacity(requests.len());
    let (mut next, mut bad, mut lost) = (0usize, 0usize, 0usize);
    let t0 = Instant::now();
    let limit = Duration::from_secs(120);
    loop {
        while sent.len() < inflight.max(1) && next < requests.len() {
            sock.send(&requests[next])?;
            sent.push_back(Instant::now());
            next += 1;
        }
        if sent.is_empty() || t0.elapsed() > limit {
            break;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some(t) = sent.pop_front() {
                    lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
                if !ok(&buf[..n]) {
                    bad += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Whatever is outstanding is lost; refill the window.
                lost += sent.len();
                sent.clear();
            }
            Err(e) => return Err(e),
        }
    }
    let elapsed = t0.elapsed();
    lat.sort_unstable();
    Ok(RunStats {
        replies: lat.len(),
        bad,
        lost,
        elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        lat,
    })
}

/// A bare tokio UDP echo server on its own `current_thread` runtime (the baseline).
struct Echo {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> std::io::Result<Self> {
        let std_sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_sock.set_nonblocking(true)?;
        let addr = std_sock.local_addr()?;
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(sock) = tokio::net::UdpSocket::from_std(std_sock) else {
                    return;
                };
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        r = sock.recv_from(&mut buf) => {
                            if let Ok((n, from)) = r {
                                let _ = sock.send_to(&buf[..n], from).await;
                            }
                        }
                    }
                }
            });
        });
        Ok(Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn user_name(i: usize) -> String {
    format!("user{i}")
}

/// Signs `count` registrations: user `i % users` with key `i % keys`, version
/// `base + i / users` (so each user's versions rise), on every core.
fn sign_all(keys: &[PrivateKey], users: usize, count: usize, base: u64) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let chunk = count.div_ceil(threads).max(1);
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let mut out = vec![Vec::new(); count];
    std::thread::scope(|s| {
        for (c, slot) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                for (j, dst) in slot.iter_mut().enumerate() {
                    let i = c * chunk + j;
                    let u = i % users;
                    let key = &keys[u % keys.len()];
                    let version = base + (i / users) as u64;
                    *dst = tools::signed_register(key, &user_name(u), ip, 40000, version)
                        .unwrap_or_default();
                }
            });
        }
    });
    out
}

fn row(name: &str, s: &RunStats, echo: Option<f64>) {
    let vs = echo.map_or("100%".to_string(), |e| {
        format!("{:.0}%", 100.0 * s.rate() / e)
    });
    println!(
        "{:<10} {:>9} {:>12.0} {:>9} {:>9} {:>8} {:>6} {:>6}",
        name,
        s.replies,
        s.rate(),
        s.p50.as_micros(),
        s.p99.as_micros(),
        vs,
        s.bad,
        s.lost
    );
}

/// Single-threaded RSA-PSS verifications per second over pre-signed registrations.
fn verify_rate(regs: &[Vec<u8>]) -> f64 {
    use flock_chord::RecordVerifier;
    let records: Vec<flock_proto::Record> = regs
        .iter()
        .filter_map(|r| match flock_proto::Frame::decode(r) {
            Ok(flock_proto::Frame::Register(reg)) => Some(reg.to_record()),
            _ => None,
        })
        .collect();
    // Every record is distinct, so no verification is a cache hit (parsed keys are).
    let v = crate::server::CachingVerifier::new();
    let t = Instant::now();
    let mut n = 0usize;
    for r in &records {
        if v.verify(r) {
            n += 1;
        }
    }
    n as f64 / t.elapsed().as_secs_f64().max(1e-9)
}

/// A ring of `n` nodes on loopback (open, or with a cluster key), every node a member.
fn start_ring(
    n: usize,
    keyed: bool,
    dir: &std::path::Path,
) -> Result<Vec<server::Running>, Box<dyn std::error::Error>> {
    let key = [7u8; 32];
    let mut nodes: Vec<server::Running> = Vec::new();
    for i in 0..n {
        let mut a = ServerArgs::new(&format!("ring{i}"));
        a.bind = Ipv4Addr::LOCALHOST;
        a.port = 0;
        a.ping_port = Some(0);
        a.data_dir = Some(dir.join(format!("{}{i}", if keyed { "k" } else { "o" })));
        a.no_broadcast = true;
        a.no_multicast = true;
        a.rate = 0.0;
        a.leave_timeout = 0.5;
        if let Some(first) = nodes.first() {
            a.join = vec![first.addr.to_string()];
        }
        let mut o: server::ServerOptions = a.into();
        if keyed {
            o.cluster_keys = vec![key];
        }
        nodes.push(server::start(o)?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in &nodes {
        while !tools::status(node.addr, Duration::from_millis(500))
            .is_ok_and(|s| s["member"] == true)
        {
            if Instant::now() > deadline {
                return Err("bench: the ring did not form within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(nodes)
}

/// RESOLVE through an open ring and a keyed ring of `n` nodes (alternating rounds):
/// (open, keyed).
fn ring_runs(
    args: &BenchArgs,
    initial: &[Vec<u8>],
    resolves: &[Vec<u8>],
) -> Result<(RunStats, RunStats), Box<dyn std::error::Error>> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("flock-bench-ring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rings = [
        start_ring(args.ring, false, &dir)?,
        start_ring(args.ring, true, &dir)?,
    ];
    let entries: Vec<SocketAddr> = rings.iter().map(|r| SocketAddr::V4(r[0].addr)).collect();
    let ok = |b: &[u8]| b.starts_with(b"OK ");
    for &e in &entries {
        drive(e, initial, args.inflight, |b| b.starts_with(b"OK User"))?;
        // Replicas fill and the holders settle: wait until every user resolves.
        let deadline = Instant::now() + Duration::from_secs(60);
        let sample = &resolves[..resolves.len().min(initial.len())];
        while drive(e, sample, args.inflight, ok).is_ok_and(|s| s.bad + s.lost > 0) {
            if Instant::now() > deadline {
                return Err("bench: the ring did not answer every user within 60 s".into());
            }
        }
    }
    let rounds = args.rounds.max(1);
    let per = (resolves.len() / rounds).max(1);
    let (mut open, mut keyed) = (Vec::new(), Vec::new());
    for chunk in resolves.chunks(per).take(rounds) {
        open.push(drive(entries[0], chunk, args.inflight, ok)?);
        keyed.push(drive(entries[1], chunk, args.inflight, ok)?);
    }
    for ring in rings {
        for node in ring {
            node.stop()?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((RunStats::merge(open), RunStats::merge(keyed)))
}

/// Runs the benchmark and prints the table.
pub fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let users = args.users.max(1);
    let nkeys = args.keys.clamp(1, users);
    eprintln!("bench: generating {nkeys} RSA-2048 keys ...");
    let mut rng = tools::os_rng();
    let keys: Vec<PrivateKey> = (0..nkeys)
        .map(|_| PrivateKey::generate(&mut rng))
        .collect::<Result<_, _>>()?;
    let base = tools::version_now();
    eprintln!(
        "bench: signing {} registrations ({} users + {} updates) ...",
        users + args.registers,
        users,
        args.registers
    );
    let t = Instant::now();
    let initial = sign_all(&keys, users, users, base);
    let updates = sign_all(&keys, users, args.registers, base + 1);
    eprintln!("bench: signed in {:.1} s", t.elapsed().as_secs_f64());
    let verify_rate = verify_rate(&updates[..updates.len().min(2000)]);

    let resolves: Vec<Vec<u8>> = (0..args.requests)
        .map(|i| format!("RESOLVE {}", user_name(i % users)).into_bytes())
        .collect();

    // 1. The baseline (kept running: its rounds alternate with the node's).
    let echo = Echo::start()?;

    // 2. A real node with a durable store in a temporary directory.
    let dir: PathBuf = std::env::temp_dir().join(format!("flock-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut sargs = ServerArgs::new("bench");
    sargs.bind = Ipv4Addr::LOCALHOST;
    sargs.port = 0;
    sargs.ping_port = Some(0);
    sargs.data_dir = Some(dir.clone());
    sargs.no_broadcast = true;
    sargs.no_multicast = true;
    sargs.rate = 0.0;
    sargs.batch = args.batch;
    sargs.verify_threads = args.verify_threads;
    sargs.leave_timeout = 0.5;
    let node = server::start(sargs)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(*node.addr.ip(), node.addr.port()));
    let is_registered = |b: &[u8]| b.starts_with(b"OK User");
    let pre = drive(addr, &initial, args.inflight, is_registered)?;
    if pre.bad > 0 || pre.lost > 0 {
        eprintln!(
            "bench: warning: pre-registration: {} bad, {} lost",
            pre.bad, pre.lost
        );
    }
    let rounds = args.rounds.max(1);
    let per = (resolves.len() / rounds).max(1);
    let (mut echo_runs, mut resolve_runs) = (Vec::new(), Vec::new());
    for chunk in resolves.chunks(per).take(rounds) {
        echo_runs.push(drive(echo.addr, chunk, args.inflight, |_| true)?);
        resolve_runs.push(drive(addr, chunk, args.inflight, |b| {
            b.starts_with(b"OK ")
        })?);
    }
    drop(echo);
    let echo_stats = RunStats::merge(echo_runs);
    let resolve_stats = RunStats::merge(resolve_runs);
    let q = updates.len() / 4;
    let register32 = drive(addr, &updates[..q], args.inflight, is_registered)?;
    let register_stats = drive(
        addr,
        &updates[q..3 * q],
        args.register_inflight,
        is_registered,
    )?;
    // The same path with the signatures already in the node's cache: what the durable
    // batched writes and the ring machine sustain without the RSA cost.
    let warm = &updates[3 * q..];
    for r in warm {
        if let Ok(flock_proto::Frame::Register(reg)) = flock_proto::Frame::decode(r) {
            flock_chord::RecordVerifier::verify(node.verifier(), &reg.to_record());
        }
    }
    let register_warm = drive(addr, warm, args.register_inflight, is_registered)?;
    let status = tools::status(node.addr, Duration::from_secs(2)).ok();
    node.stop()?;
    let _ = std::fs::remove_dir_all(&dir);

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nflock bench: loopback, {} in flight, {cores} cores, server batch {}, \
         echo/RESOLVE: median of {rounds} alternating rounds",
        args.inflight, args.batch
    );
    println!(
        "{:<10} {:>9} {:>12} {:>9} {:>9} {:>8} {:>6} {:>6}",
        "workload", "replies", "replies/s", "p50 us", "p99 us", "vs echo", "bad", "lost"
    );
    let e = echo_stats.rate();
    row("udp echo", &echo_stats, None);
    row("RESOLVE", &resolve_stats, Some(e));
    row(&format!("REG/{}", args.inflight), &register32, Some(e));
    row(
        &format!("REG/{}", args.register_inflight),
        &register_stats,
        Some(e),
    );
    row(
        &format!("REG/{}*", args.register_inflight),
        &register_warm,
        Some(e),
    );
    println!(
        "(RSA-PSS verify on one core of this machine, same run: {verify_rate:.0}/s; \
         REG/n = REGISTER with n in flight; * = signatures verified before the run)"
    );
    if let Some(s) = status {
        let net = &s["net"];
        let (b, o) = (
            net["store_batches"].as_u64().unwrap_or(0),
            net["store_ops"].as_u64().unwrap_or(0),
        );
        println!(
            "(node: {b} commits for {o} stored changes, {:.1} per commit, largest {}; \
             {} RSA verifications, {} cache hits)",
            o as f64 / b.max(1) as f64,
            net["largest_batch"],
            net["verifications"],
            net["verify_cache_hits"],
        );
    }
    if args.ring > 1 {
        let ring_requests = &resolves[..resolves.len().min(args.requests / 4).max(1)];
        let (open, keyed) = ring_runs(&args, &initial, ring_requests)?;
        println!(
            "\nRESOLVE through a ring of {} nodes on loopback (entry: the first node), \
             median of {rounds} alternating rounds",
            args.ring
        );
        row("open", &open, Some(e));
        row("keyed", &keyed, Some(e));
        println!(
            "(open: every signed answer confirmed by a majority of the record's holders; \
             keyed: with a cluster key the owner's answer suffices; open/keyed: {:.2})",
            open.rate() / keyed.rate().max(1e-9)
        );
    }
    let r = resolve_stats.rate() / e;
    println!(
        "\ngoals: RESOLVE >= 75% of echo: {:.0}% ({}); REGISTER >= 10000/s durable: {:.0}/s ({})",
        100.0 * r,
        if r >= 0.75 { "met" } else { "MISSED" },
        register_stats.rate(),
        if register_stats.rate() >= 10_000.0 {
            "met"
        } else {
            "MISSED"
        },
    );
    Ok(())
}
