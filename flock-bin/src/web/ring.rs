//! The ring page's data: the ring as the connected server sees it.
//!
//! With admin access (`flock web` on a host in the server's `--admin-allow`, loopback by
//! default) every node answers `STATUS` (its id, range, predecessor and successors) and
//! `SNAPSHOT` (the records it holds): the page walks the ring from the connected server
//! through every node's predecessor and successors, and finds the nodes that hold a
//! given username's record. Without it the server still answers `MEMBERS`: the page
//! shows the members, without ranges. Nodes named by others that do not answer are shown
//! as not answering (dead or unreachable). Blocking UDP: run it on a blocking thread.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

use flock_proto::space::{MODULUS, in_inclusive};
use serde_json::{Value, json};

use crate::tools;

/// Most nodes walked.
const MAX_NODES: usize = 64;
/// How long one node has to answer (twice).
const TIMEOUT: Duration = Duration::from_millis(250);
/// Most `SNAPSHOT` pages read per node when looking for a user.
const MAX_PAGES: usize = 4;

/// A node's position on the circle, `0.0..1.0` clockwise from the top.
fn frac(id: u64) -> f64 {
    // Ids are below 2^60: f64 loses only digits a drawing cannot show.
    #[allow(clippy::cast_precision_loss)]
    let f = id as f64 / MODULUS as f64;
    f
}

fn text_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn addrs(v: &Value, k: &str) -> Vec<SocketAddrV4> {
    match v.get(k) {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect(),
        Some(Value::String(s)) => s.parse().ok().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// `MEMBERS` of `server`.
fn members(server: SocketAddrV4) -> Result<Vec<SocketAddrV4>, String> {
    let reply = tools::request(server, flock_proto::MEMBERS_REQUEST, TIMEOUT, 2)
        .map_err(|e| e.to_string())?;
    flock_proto::decode_members_reply(&reply).map_err(|e| format!("{server}: {e:?}"))
}

/// Whether `server` holds `user`'s record: `Some(owned)` if it does.
fn holds(server: SocketAddrV4, user: &str) -> Option<bool> {
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut req = tools::COOKIE_PLACEHOLDER.to_vec();
        req.extend_from_slice(b"SNAPSHOT");
        if let Some(a) = &after {
            req.push(b' ');
            req.extend_from_slice(a.as_bytes());
        }
        let reply = tools::request(server, &req, TIMEOUT, 2).ok()?;
        let json = match flock_proto::Frame::decode(&reply) {
            Ok(flock_proto::Frame::Ok(flock_proto::OkReply::Json(j))) => j,
            _ => return None,
        };
        let v: Value = serde_json::from_str(&json).ok()?;
        if let Some(r) = v.get("users").and_then(|u| u.get(user)) {
            return Some(r.get("owned").and_then(Value::as_bool).unwrap_or(false));
        }
        after = Some(v.get("next")?.as_str()?.to_owned());
    }
    None
}

/// Remembers members learned from `server` (for "try another server").
pub(crate) fn learn_members(server: SocketAddrV4) -> Vec<SocketAddrV4> {
    members(server).unwrap_or_default()
}

/// The ring as `server` sees it, and where `user`'s record lives.
pub(crate) fn view(server: SocketAddrV4, user: Option<&str>) -> Value {
    let mut nodes: Vec<Value> = Vec::new();
    let mut seen: Vec<SocketAddrV4> = Vec::new();
    let mut queue = VecDeque::from([server]);
    while let Some(addr) = queue.pop_front() {
        if seen.contains(&addr) || seen.len() >= MAX_NODES {
            continue;
        }
        seen.push(addr);
        match tools::status(addr, TIMEOUT) {
            Ok(v) => {
                let me: Option<SocketAddrV4> = text_field(&v, "node").parse().ok();
                if let Some(me) = me.filter(|m| !seen.contains(m)) {
                    seen.push(me);
                }
                for next in addrs(&v, "pred").into_iter().chain(addrs(&v, "succs")) {
                    queue.push_back(next);
                }
                let id: u64 = text_field(&v, "id").parse().unwrap_or(0);
                let range = (
                    text_field(&v, "lo").parse::<u64>().ok(),
                    text_field(&v, "hi").parse::<u64>().ok(),
                );
                nodes.push(json!({
                    "node": text_field(&v, "node"),
                    "name": text_field(&v, "name"),
                    "alive": true,
                    "member": v.get("member").cloned().unwrap_or(Value::Bool(true)),
                    "id": text_field(&v, "id"),
                    "frac": frac(id),
                    "lo": text_field(&v, "lo"),
                    "hi": text_field(&v, "hi"),
                    "arc": match range {
                        (Some(lo), Some(hi)) => json!([frac(lo), frac(hi)]),
                        _ => Value::Null,
                    },
                    "pred": text_field(&v, "pred"),
                    "succs": v.get("succs").cloned().unwrap_or(json!([])),
                    "records": v.get("records").cloned().unwrap_or(json!(0)),
                    "owned": v.get("owned").cloned().unwrap_or(json!(0)),
                }));
            }
            Err(e) if addr == server => {
                // Not an admin of it (or it is gone): what any client may ask.
                return match members(server) {
                    Ok(list) => json!({
                        "server": server.to_string(),
                        "admin": false,
                        "note": format!(
                            "{server} does not answer STATUS to this host ({e}); showing \
                             the members it names, without ranges"
                        ),
                        "nodes": list.iter().map(|m| json!({
                            "node": m.to_string(), "alive": true, "member": true,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(m) => json!({
                        "server": server.to_string(),
                        "admin": false,
                        "error": format!("{server} does not answer: {m}"),
                        "nodes": [],
                    }),
                };
            }
            Err(e) => nodes.push(json!({
                "node": addr.to_string(),
                "alive": false,
                "error": e.to_string(),
            })),
        }
    }
    nodes.sort_by(|a, b| {
        let fa = a.get("frac").and_then(Value::as_f64).unwrap_or(2.0);
        let fb = b.get("frac").and_then(Value::as_f64).unwrap_or(2.0);
        fa.total_cmp(&fb)
    });
    let mut out = json!({
        "server": server.to_string(),
        "admin": true,
        "nodes": nodes,
    });
    if let Some(user) = user {
        out["user"] = user_place(user, &out["nodes"]);
    }
    out
}

/// Where `user`'s record belongs (the node whose range holds its hash) and which nodes
/// hold it (owner and replicas, as their `SNAPSHOT`s say).
fn user_place(user: &str, nodes: &Value) -> Value {
    let hash = flock_proto::ring_hash(user);
    let empty = Vec::new();
    let nodes = nodes.as_array().unwrap_or(&empty);
    let alive = nodes
        .iter()
        .filter(|n| n.get("alive").and_then(Value::as_bool) == Some(true));
    let owner = alive
        .clone()
        .find(|n| {
            let lo = text_field(n, "lo").parse::<u64>();
            let hi = text_field(n, "hi").parse::<u64>();
            matches!((lo, hi), (Ok(lo), Ok(hi)) if in_inclusive(hash, lo, hi))
        })
        .map(|n| text_field(n, "node").to_owned());
    let holders: Vec<Value> = alive
        .filter_map(|n| {
            let addr: SocketAddrV4 = text_field(n, "node").parse().ok()?;
            holds(addr, user).map(|owned| json!({ "node": addr.to_string(), "owned": owned }))
        })
        .collect();
    json!({
        "name": user,
        "hash": hash.to_string(),
        "frac": frac(hash),
        "owner": owner,
        "holders": holders,
    })
}
