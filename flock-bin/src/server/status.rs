//! The JSON answers to `STATUS`, `SNAPSHOT` and `CHECKSUM`, rendered once from typed
//! values: the node's [`Status`] and records, and the server's own counters.
//!
//! Compact, keys sorted (serde_json's map is ordered), the same fields `flock status`
//! and the tests read.

use flock_chord::{Node, Status};
use flock_store::Counts;
use serde_json::{Map, Value, json};

/// Most bytes of usernames (plus a fixed allowance per record) one `SNAPSHOT` page lists:
/// it must fit one datagram.
const SNAPSHOT_BUDGET: usize = 48_000;

/// The server's own counters (the ring machine keeps its own).
#[derive(Debug, Default, Clone)]
pub(crate) struct NetStats {
    pub(crate) datagrams_in: u64,
    pub(crate) decode_failed: u64,
    pub(crate) too_long: u64,
    pub(crate) not_utf8: u64,
    pub(crate) payload_errors: u64,
    pub(crate) rate_limited: u64,
    pub(crate) not_ipv4: u64,
    pub(crate) verify_queue_full: u64,
    pub(crate) send_failed: u64,
    pub(crate) store_batches: u64,
    pub(crate) store_ops: u64,
    pub(crate) store_failed: u64,
    pub(crate) largest_batch: u64,
    pub(crate) pings: u64,
    pub(crate) discovery_replies: u64,
    /// Proxied `DISCOVER_SERVER`s for an address outside the local subnets.
    pub(crate) discovery_refused: u64,
    /// Validated admin requests from outside `--admin-allow`.
    pub(crate) admin_refused: u64,
    /// Replies to unvalidated sources replaced by a cookie or dropped.
    pub(crate) amplification_limited: u64,
    pub(crate) cookies_sent: u64,
    pub(crate) cookies_valid: u64,
    /// Ring frames without a valid cluster-key tag (or replayed), dropped.
    pub(crate) ring_auth_failed: u64,
}

/// What the driver adds to the node's status.
#[derive(Debug, Clone)]
pub(crate) struct DriverStatus<'a> {
    pub(crate) net: &'a NetStats,
    /// (cache hits, RSA verifications) of the verifier.
    pub(crate) verifier: (u64, u64),
    /// The database's counts (`None`: could not be read).
    pub(crate) stored: Option<Counts>,
    pub(crate) uptime_ms: u64,
}

/// `STATUS`: the node's state, its counters, and the driver's.
pub(crate) fn status_json(s: &Status, d: &DriverStatus<'_>) -> String {
    let n = d.net;
    let counters: Map<String, Value> = s
        .counters
        .iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    let mut v = json!({
        "node": s.addr.to_string(),
        "name": s.name,
        "member": s.is_member(),
        "id": s.id.to_string(),
        "lo": s.range.0.to_string(),
        "hi": s.range.1.to_string(),
        "pred": s.predecessor.map(|p| p.addr.to_string()).unwrap_or_default(),
        "succs": s.successors.iter().map(|p| p.addr.to_string()).collect::<Vec<_>>(),
        "records": s.records,
        "owned": s.owned,
        "counters": counters,
        "net": {
            "datagrams_in": n.datagrams_in,
            "decode_failed": n.decode_failed,
            "too_long": n.too_long,
            "not_utf8": n.not_utf8,
            "payload_errors": n.payload_errors,
            "rate_limited": n.rate_limited,
            "not_ipv4": n.not_ipv4,
            "verify_queue_full": n.verify_queue_full,
            "send_failed": n.send_failed,
            "store_batches": n.store_batches,
            "store_ops": n.store_ops,
            "store_failed": n.store_failed,
            "largest_batch": n.largest_batch,
            "pings": n.pings,
            "discovery_replies": n.discovery_replies,
            "discovery_refused": n.discovery_refused,
            "admin_refused": n.admin_refused,
            "amplification_limited": n.amplification_limited,
            "cookies_sent": n.cookies_sent,
            "cookies_valid": n.cookies_valid,
            "ring_auth_failed": n.ring_auth_failed,
            "verify_cache_hits": d.verifier.0,
            "verifications": d.verifier.1,
        },
        "uptime_ms": d.uptime_ms,
    });
    if let (Some(c), Some(obj)) = (&d.stored, v.as_object_mut()) {
        obj.insert(
            "stored".into(),
            json!({ "owned": c.owned, "replicas": c.replicas }),
        );
    }
    v.to_string()
}

/// `SNAPSHOT` (or `SNAPSHOT <after>`): one page of the records held, by user, starting
/// after user `<after>`; `next` names the user to ask after for the following page
/// (absent on the last page), `records` counts them all.
pub(crate) fn snapshot_json(node: &Node, after: Option<&str>) -> String {
    let mut users = Map::new();
    let mut size = 0usize;
    let mut total = 0usize;
    let mut next = None;
    for (r, owned) in node.records() {
        total += 1;
        if next.is_some() || after.is_some_and(|a| r.user.as_str() <= a) {
            continue;
        }
        size += r.user.len() + 64;
        if size > SNAPSHOT_BUDGET && !users.is_empty() {
            next = users.keys().next_back().cloned();
            continue;
        }
        users.insert(
            r.user.clone(),
            json!({
                "ip": r.ip.to_string(),
                "port": r.port,
                "version": r.version,
                "owned": owned,
            }),
        );
    }
    let mut v = json!({
        "node": node.addr().to_string(),
        "records": total,
        "users": users,
    });
    if let (Some(n), Some(obj)) = (next, v.as_object_mut()) {
        obj.insert("next".into(), n.into());
    }
    v.to_string()
}

/// `CHECKSUM`: the digest of the records in the owned range.
pub(crate) fn checksum_json(s: &Status) -> String {
    json!({
        "checksum": format!("{:016x}", s.digest),
        "records": s.digest_records,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    use flock_chord::{Config, FakeVerifier, Node};
    use flock_proto::{Frame, Record};

    use super::*;

    fn founder_with_alice() -> Node {
        let me: SocketAddrV4 = "10.0.0.1:12345".parse().expect("addr");
        let mut n = Node::new(
            Config::default(),
            me,
            7,
            Duration::ZERO,
            Box::new(FakeVerifier),
        );
        let r = record("alice");
        let c: SocketAddrV4 = "172.16.0.1:5000".parse().expect("addr");
        n.handle_datagram(Duration::from_millis(1), c, Frame::Register((&r).into()));
        while n.poll_action().is_some() {}
        n
    }

    /// `user` at 10.1.2.3:5000, version 10, under key "K1", signed for `FakeVerifier`.
    fn record(user: &str) -> Record {
        let mut r = Record {
            user: user.into(),
            ip: Ipv4Addr::new(10, 1, 2, 3),
            port: 5000,
            version: 10,
            pubkey_b64: "K1".into(),
            sig_b64: String::new(),
        };
        r.sig_b64 = FakeVerifier::sign(&r);
        r
    }

    fn assert_compact_sorted(j: &str) -> Value {
        assert!(!j.contains(' ') && !j.contains('\n'), "{j}");
        let v: Value = serde_json::from_str(j).expect("json");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{j}");
        v
    }

    /// What the driver adds: 4 cache hits, 5 verifications, 1 owned record, up 9 ms.
    fn driver(net: &NetStats) -> DriverStatus<'_> {
        DriverStatus {
            net,
            verifier: (4, 5),
            stored: Some(Counts {
                owned: 1,
                replicas: 0,
            }),
            uptime_ms: 9,
        }
    }

    #[test]
    fn snapshot_pages_cover_every_record_once() {
        let me: SocketAddrV4 = "10.0.0.1:12345".parse().expect("addr");
        let recs: Vec<Record> = (0..2000).map(|i| record(&format!("user{i:05}"))).collect();
        let mut n = Node::restore(
            Config::default(),
            me,
            7,
            Duration::ZERO,
            Box::new(FakeVerifier),
            recs,
        );
        while n.poll_action().is_some() {}
        let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let j = snapshot_json(&n, after.as_deref());
            assert!(j.len() < 60_000, "a page fits a datagram");
            let v: Value = serde_json::from_str(&j).expect("json");
            assert_eq!(v["records"], 2000);
            let page: Vec<String> = v["users"]
                .as_object()
                .expect("users")
                .keys()
                .cloned()
                .collect();
            assert!(!page.is_empty());
            seen.extend(page);
            pages += 1;
            match v.get("next").and_then(Value::as_str) {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
            assert!(pages < 100);
        }
        assert!(pages > 1, "{pages}");
        let mut unique = seen.clone();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (2000, 2000));
    }

    /// Moved from flock-chord's records test when the node stopped rendering JSON.
    #[test]
    fn admin_json_is_compact_with_sorted_keys() {
        let n = founder_with_alice();
        let s = n.status();
        let net = NetStats::default();
        let d = driver(&net);
        for j in [
            status_json(&s, &d),
            snapshot_json(&n, None),
            checksum_json(&s),
        ] {
            assert_compact_sorted(&j);
        }
        let j = checksum_json(&s);
        assert!(
            j.starts_with("{\"checksum\":\"") && j.ends_with(",\"records\":1}"),
            "{j}"
        );
    }

    #[test]
    fn status_has_the_fields_flock_status_reads() {
        let n = founder_with_alice();
        let net = NetStats {
            pings: 3,
            ..NetStats::default()
        };
        let d = driver(&net);
        let v = assert_compact_sorted(&status_json(&n.status(), &d));
        assert_eq!(v["node"], "10.0.0.1:12345");
        assert_eq!(v["name"], "flock");
        assert_eq!(v["member"], true);
        assert_eq!(v["id"], "0");
        assert_eq!(v["lo"], "0");
        assert_eq!(v["pred"], "");
        assert_eq!(v["succs"], json!([]));
        assert_eq!(
            (v["records"].as_u64(), v["owned"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["counters"]["register_stored"], 1);
        assert_eq!(v["net"]["pings"], 3);
        assert_eq!(v["net"]["verify_cache_hits"], 4);
        assert_eq!(v["net"]["verifications"], 5);
        assert_eq!(v["stored"]["owned"], 1);
        assert_eq!(v["uptime_ms"], 9);
        let snap: Value = serde_json::from_str(&snapshot_json(&n, None)).expect("json");
        assert_eq!(snap["users"]["alice"]["port"], 5000);
        assert_eq!(snap["users"]["alice"]["owned"], true);
        assert_eq!(snap["records"], 1);
    }
}
