//! Operator commands that talk to a server: `flock status`, `flock resolve`,
//! `flock register`. Plain blocking UDP: one request, a bounded wait, a few retries.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flock_crypto::PrivateKey;
use flock_proto::{Frame, OkReply, Register};
use flock_store::KeyDir;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Socket trouble or no answer.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server answered something unexpected.
    #[error("{0}")]
    Protocol(String),
    /// Key files.
    #[error("keys: {0}")]
    Keys(String),
}

/// Resolves `HOST:PORT` to an IPv4 socket address.
pub fn parse_addr(s: &str) -> Result<SocketAddrV4, ToolError> {
    s.to_socket_addrs()?
        .find_map(|a| match a {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| ToolError::Protocol(format!("{s}: no IPv4 address")))
}

/// A request prefix that asks for an address cookie: as long as a real cookie, so the
/// server's `ERROR COOKIE <c>` is never larger than the request (see the server's
/// *Address cookies*).
pub const COOKIE_PLACEHOLDER: &[u8] = b"COOKIE 0000000000000000 ";

/// If `reply` is a server's `ERROR COOKIE <c>`: `request` again, carrying `<c>` (in
/// place of a placeholder or an older cookie).
pub fn with_cookie(reply: &[u8], request: &[u8]) -> Option<Vec<u8>> {
    let cookie = reply.strip_prefix(b"ERROR COOKIE ")?;
    let bare = request
        .strip_prefix(b"COOKIE ")
        .and_then(|r| r.splitn(2, |b| *b == b' ').nth(1))
        .unwrap_or(request);
    let mut out = b"COOKIE ".to_vec();
    out.extend_from_slice(cookie);
    out.push(b' ');
    out.extend_from_slice(bare);
    Some(out)
}

/// Sends `request` to `server` and returns the first datagram that comes back (from any
/// address, as the original's clients accept), retrying `tries` times. An address cookie
/// (`ERROR COOKIE <c>`) makes it resend the request carrying the cookie.
pub fn request(
    server: SocketAddrV4,
    request: &[u8],
    timeout: Duration,
    tries: u32,
) -> Result<Vec<u8>, ToolError> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    sock.set_read_timeout(Some(timeout))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut request = request.to_vec();
    let mut cookies = 0;
    for _ in 0..tries.max(1) {
        sock.send_to(&request, server)?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => match with_cookie(&buf[..n], &request) {
                // At most twice (a cookie may expire between two sends).
                Some(again) if cookies < 2 => {
                    cookies += 1;
                    request = again;
                    sock.send_to(&request, server)?;
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        if with_cookie(&buf[..n], &request).is_none() {
                            return Ok(buf[..n].to_vec());
                        }
                    }
                }
                _ => return Ok(buf[..n].to_vec()),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ToolError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer from {server}"),
    )))
}

/// The `STATUS` JSON of one node.
pub fn status(server: SocketAddrV4, timeout: Duration) -> Result<serde_json::Value, ToolError> {
    admin(server, "STATUS", timeout, None)
}

/// An admin request (`STATUS`, `CHECKSUM`, `SNAPSHOT [after]`) and its JSON answer. With
/// `key` (a cluster key) it goes out authenticated (`RAUTH`, sealed afresh on every try),
/// which a node of that ring answers from any address; without, it proves our address
/// with the cookie round trip and needs a source in the node's `--admin-allow`.
pub fn admin(
    server: SocketAddrV4,
    what: &str,
    timeout: Duration,
    key: Option<&[u8; crate::server::KEY_LEN]>,
) -> Result<serde_json::Value, ToolError> {
    let reply = match key {
        None => {
            let mut req = COOKIE_PLACEHOLDER.to_vec();
            req.extend_from_slice(what.as_bytes());
            request(server, &req, timeout, 3)?
        }
        Some(k) => {
            let auth = crate::server::ClusterAuth::new(vec![*k]).expect("one key");
            let mut last = Err(ToolError::Protocol("no try".into()));
            for _ in 0..3 {
                let mut req = Vec::new();
                let ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                auth.seal(ms, what.as_bytes(), &mut req);
                last = request(server, &req, timeout, 1);
                if last.is_ok() {
                    break;
                }
            }
            last?
        }
    };
    match Frame::decode(&reply) {
        Ok(Frame::Ok(OkReply::Json(j))) => serde_json::from_str(&j)
            .map_err(|e| ToolError::Protocol(format!("bad {what} JSON: {e}"))),
        _ => Err(ToolError::Protocol(format!(
            "unexpected {what} reply: {}",
            String::from_utf8_lossy(&reply)
        ))),
    }
}

/// Every record `server` holds, walking `SNAPSHOT` pages: (user -> its JSON (ip, port,
/// version, owned), pages). Fails if a page does not come or the pages miss records.
pub fn snapshot(
    server: SocketAddrV4,
    timeout: Duration,
    key: Option<&[u8; crate::server::KEY_LEN]>,
) -> Result<(serde_json::Map<String, serde_json::Value>, usize), ToolError> {
    let mut all = serde_json::Map::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        let what = match &after {
            Some(a) => format!("SNAPSHOT {a}"),
            None => "SNAPSHOT".to_owned(),
        };
        let page = admin(server, &what, timeout, key)?;
        if let Some(users) = page.get("users").and_then(|u| u.as_object()) {
            all.extend(users.clone());
        }
        match page.get("next").and_then(|n| n.as_str()) {
            Some(n) if after.as_deref() != Some(n) && all.len() < 10_000_000 => {
                after = Some(n.to_owned());
            }
            _ => {
                let total = page.get("records").and_then(|r| r.as_u64()).unwrap_or(0);
                if (all.len() as u64) < total {
                    return Err(ToolError::Protocol(format!(
                        "SNAPSHOT pages held {} of {total} records",
                        all.len()
                    )));
                }
                return Ok((all, pages));
            }
        }
    }
}

fn field<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("?")
}

fn num(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// The ring as `server` sees it: its STATUS, then its successors' in turn (at most 256).
pub fn ring_walk(
    server: SocketAddrV4,
    timeout: Duration,
    key: Option<&[u8; crate::server::KEY_LEN]>,
) -> Vec<Result<serde_json::Value, (SocketAddrV4, ToolError)>> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let mut next = Some(server);
    while let Some(addr) = next.take() {
        if seen.contains(&addr) || seen.len() >= 256 {
            break;
        }
        seen.push(addr);
        match admin(addr, "STATUS", timeout, key) {
            Ok(v) => {
                // The node's own address as the ring knows it: a node asked through an
                // alias (127.0.0.1 for a node that advertises its LAN address) is not
                // walked, and counted, a second time.
                if let Some(me) = v
                    .get("node")
                    .and_then(|n| n.as_str())
                    .and_then(|n| n.parse::<SocketAddrV4>().ok())
                {
                    if !seen.contains(&me) {
                        seen.push(me);
                    }
                }
                next = v
                    .get("succs")
                    .and_then(|s| s.as_array())
                    .and_then(|s| s.first())
                    .and_then(|s| s.as_str())
                    .and_then(|s| s.parse().ok());
                out.push(Ok(v));
            }
            Err(e) => out.push(Err((addr, e))),
        }
    }
    out
}

/// Prints a ring walk as a table.
pub fn print_ring(
    server: SocketAddrV4,
    timeout: Duration,
    key: Option<&[u8; crate::server::KEY_LEN]>,
) -> Result<(), ToolError> {
    let walk = ring_walk(server, timeout, key);
    if let Some(Err((_, e))) = walk.first() {
        return Err(ToolError::Protocol(format!("{server}: {e}")));
    }
    println!(
        "{:<22} {:<12} {:>20} {:>20} {:>7} {:>6} {:>8}  {:<22} successors",
        "node", "name", "lo", "hi", "records", "owned", "replicas", "predecessor"
    );
    let mut total_owned = 0;
    for entry in &walk {
        match entry {
            Ok(v) => {
                let records = num(v, "records");
                let owned = num(v, "owned");
                total_owned += owned;
                let succs: Vec<&str> = v
                    .get("succs")
                    .and_then(|s| s.as_array())
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "{:<22} {:<12} {:>20} {:>20} {:>7} {:>6} {:>8}  {:<22} {}",
                    field(v, "node"),
                    field(v, "name"),
                    field(v, "lo"),
                    field(v, "hi"),
                    records,
                    owned,
                    records.saturating_sub(owned),
                    if field(v, "pred").is_empty() {
                        "-"
                    } else {
                        field(v, "pred")
                    },
                    succs.join(" "),
                );
            }
            Err((addr, e)) => println!("{addr:<22} (no answer: {e})"),
        }
    }
    println!("{} nodes, {} owned records", walk.len(), total_owned);
    Ok(())
}

/// `RESOLVE user` at `server`: the reply text.
pub fn resolve(server: SocketAddrV4, user: &str, timeout: Duration) -> Result<String, ToolError> {
    let frame = Frame::Resolve { user: user.into() };
    let reply = request(server, &frame.encode_to_vec(), timeout, 3)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

pub use crate::os_rng;

/// Loads `<keys>/<user>/private.pem`, or generates and saves a new RSA-2048 key.
pub fn load_or_create_key(keys: &PathBuf, user: &str) -> Result<PrivateKey, ToolError> {
    let dir = KeyDir::new(keys, user).map_err(|e| ToolError::Keys(e.to_string()))?;
    if let Some(pem) = dir
        .load_private_pem()
        .map_err(|e| ToolError::Keys(e.to_string()))?
    {
        return PrivateKey::from_pem(&pem).map_err(|e| ToolError::Keys(e.to_string()));
    }
    let key = PrivateKey::generate(&mut os_rng()).map_err(|e| ToolError::Keys(e.to_string()))?;
    let pem = key.to_pem().map_err(|e| ToolError::Keys(e.to_string()))?;
    dir.save_private_pem(&pem)
        .map_err(|e| ToolError::Keys(e.to_string()))?;
    dir.save_public_pem(key.public_key().to_pem())
        .map_err(|e| ToolError::Keys(e.to_string()))?;
    Ok(key)
}

/// A signed `REGISTER` for `user` at `ip:port`, version `version`.
pub fn signed_register(
    key: &PrivateKey,
    user: &str,
    ip: Ipv4Addr,
    port: u16,
    version: u64,
) -> Result<Vec<u8>, ToolError> {
    let pubkey_b64 = key.public_key().to_b64();
    let text = flock_proto::signed_text(user, ip, port, version, &pubkey_b64);
    let sig_b64 = flock_crypto::sign_b64(&mut os_rng(), key, text.as_bytes())
        .map_err(|e| ToolError::Keys(e.to_string()))?;
    let reg = Register {
        user: user.into(),
        ip,
        port,
        version,
        pubkey_b64: pubkey_b64.into(),
        sig_b64: sig_b64.into(),
    };
    Ok(Frame::Register(reg).encode_to_vec())
}

/// The current time in nanoseconds (a registration version, as the original's `time_ns`).
pub fn version_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        .max(1)
}

/// The address this host uses toward `server` (what a client registers by default),
/// loopback when the routing table has none ([`crate::server::local_ip_toward`]).
pub fn local_ip_toward(server: SocketAddrV4) -> Ipv4Addr {
    crate::server::local_ip_toward(server).unwrap_or(Ipv4Addr::LOCALHOST)
}

/// `RESOLVE` every user at once (one socket per user, since a reply does not name the
/// user), resending unanswered requests every `interval`, until `deadline` passes.
/// `None`: no answer.
pub fn resolve_many(
    server: SocketAddrV4,
    users: &[String],
    interval: Duration,
    deadline: Duration,
) -> Result<Vec<Option<String>>, ToolError> {
    let mut socks = Vec::with_capacity(users.len());
    let mut reqs = Vec::with_capacity(users.len());
    for user in users {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.set_nonblocking(true)?;
        socks.push(s);
        reqs.push(
            Frame::Resolve {
                user: user.as_str().into(),
            }
            .encode_to_vec(),
        );
    }
    let mut out: Vec<Option<String>> = vec![None; users.len()];
    let start = std::time::Instant::now();
    let mut next_send = start;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let now = std::time::Instant::now();
        if now >= next_send {
            for (i, s) in socks.iter().enumerate() {
                if out[i].is_none() {
                    let _ = s.send_to(&reqs[i], server);
                }
            }
            next_send = now + interval;
        }
        let mut got = false;
        for (i, s) in socks.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            match s.recv_from(&mut buf) {
                Ok((n, _)) => {
                    got = true;
                    if let Some(again) = with_cookie(&buf[..n], &reqs[i]) {
                        let _ = s.send_to(&again, server);
                        reqs[i] = again;
                    } else {
                        out[i] = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        if out.iter().all(Option::is_some) || start.elapsed() >= deadline {
            return Ok(out);
        }
        if !got {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Sends each message as one datagram to `to` and prints every datagram that comes back
/// within `wait` (as text, lossily). With `echo_cookie`, a `RING COOKIE rid c` answer to a
/// ring request makes it resend that request carrying cookie `c`, as a real peer would.
/// A testing and diagnosis aid: the tests use it to play a hostile non-member, from
/// `from` (`None`: any free port), e.g. a dead member's own address.
pub fn send_raw(
    to: SocketAddrV4,
    from: Option<SocketAddrV4>,
    messages: &[Vec<u8>],
    wait: Duration,
    echo_cookie: bool,
) -> Result<Vec<Vec<u8>>, ToolError> {
    use flock_proto::ring::RingFrame;
    let sock = UdpSocket::bind(from.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    sock.set_broadcast(true)?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for m in messages {
        sock.send_to(m, to)?;
    }
    let end = std::time::Instant::now() + wait;
    while std::time::Instant::now() < end && replies.len() < 10_000 {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let reply = buf[..n].to_vec();
        if echo_cookie {
            if let Ok(Frame::Ring(RingFrame::Cookie { rid, cookie })) = Frame::decode(&reply) {
                for m in messages {
                    if let Ok(Frame::Ring(mut rf)) = Frame::decode(m) {
                        if rf.rid() == rid {
                            rf.set_cookie(cookie);
                            sock.send_to(&Frame::Ring(rf).encode_to_vec(), to)?;
                        }
                    }
                }
            }
        }
        replies.push(reply);
    }
    Ok(replies)
}
