//! Admission with a cluster key: every ring frame between members carries an HMAC.
//!
//! With `--cluster-key FILE` a node sends every `RING ...` datagram as
//!
//! ```text
//! RAUTH <ms> <tag> RING ...
//! ```
//!
//! `<ms>`: the sender's wall clock in milliseconds since the Unix epoch; `<tag>`: 32 hex
//! digits, the first 16 bytes of HMAC-SHA256 over `<ms>` (8 bytes, big-endian) and the
//! ring frame's bytes, under the cluster key. The receiver accepts a frame only if the
//! tag checks out under one of its keys, `<ms>` is within [`WINDOW`] of its own clock, and
//! the (ms, tag) pair was not seen before (a bounded replay cache over the window).
//! Anything else that looks like a ring frame is counted and dropped before the ring
//! machine sees it: only key holders discover, join, rectify, replicate, fetch, transfer
//! or take over. Key rotation: a node holds a list of keys (one per line in the key
//! file), sends with the first and accepts any.

use std::collections::BTreeSet;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of an authenticated ring frame.
pub(crate) const PREFIX: &[u8] = b"RAUTH ";

/// Largest clock difference accepted between two members, in milliseconds.
pub(crate) const WINDOW: u64 = 30_000;

/// Most (ms, tag) pairs remembered against replays; when full, new frames are refused
/// until old ones leave the window (fail closed).
const MAX_SEEN: usize = 1 << 18;

/// Bytes of a cluster key.
pub const KEY_LEN: usize = 32;

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not of the `RAUTH <ms> <tag> ...` form.
    Malformed,
    /// The tag fits none of our keys.
    BadTag,
    /// Outside the clock window.
    Stale,
    /// Seen before (or the replay cache is full).
    Replay,
}

/// The cluster keys and the replay cache.
pub(crate) struct ClusterAuth {
    keys: Vec<[u8; KEY_LEN]>,
    seen: BTreeSet<(u64, [u8; 16])>,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAuth")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn tag(key: &[u8; KEY_LEN], ms: u64, frame: &[u8]) -> [u8; 16] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(&ms.to_be_bytes());
    m.update(frame);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&s[2 * i..2 * i + 2]).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Parses a key file: one key per line as 64 hex digits (the first is the sending key);
/// blank lines and `#` comments are skipped.
pub fn parse_keys(text: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = unhex::<KEY_LEN>(line.as_bytes())
            .ok_or_else(|| format!("line {}: a key is 64 hex digits", n + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("no key in the file".into());
    }
    Ok(keys)
}

/// Reads a key file ([`parse_keys`]).
pub fn read_keys(path: &Path) -> Result<Vec<[u8; KEY_LEN]>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_keys(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A new key file's text: one random key (from `fill`, e.g. OS randomness).
pub fn new_key_file(key: &[u8; KEY_LEN]) -> String {
    format!(
        "# Flock cluster key: every server of the ring needs this file (--cluster-key).\n{}\n",
        hex(key)
    )
}

impl ClusterAuth {
    /// Keys to accept; the first is used to send. `None` if the list is empty.
    pub(crate) fn new(keys: Vec<[u8; KEY_LEN]>) -> Option<Self> {
        (!keys.is_empty()).then(|| Self {
            keys,
            seen: BTreeSet::new(),
        })
    }

    /// Appends `RAUTH <ms> <tag> <frame>` to `out`.
    pub(crate) fn seal(&self, ms: u64, frame: &[u8], out: &mut Vec<u8>) {
        let t = tag(&self.keys[0], ms, frame);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(ms.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(hex(&t).as_bytes());
        out.push(b' ');
        out.extend_from_slice(frame);
    }

    /// The ring frame inside an authenticated datagram received at `now_ms`.
    pub(crate) fn open<'a>(&mut self, now_ms: u64, data: &'a [u8]) -> Result<&'a [u8], Refused> {
        let rest = data.strip_prefix(PREFIX).ok_or(Refused::Malformed)?;
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or(Refused::Malformed)?;
        let ms: u64 = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Refused::Malformed)?;
        let rest = &rest[sp + 1..];
        if rest.len() < 33 || rest[32] != b' ' {
            return Err(Refused::Malformed);
        }
        let got = unhex::<16>(&rest[..32]).ok_or(Refused::Malformed)?;
        let frame = &rest[33..];
        // Constant-time comparison through the MAC's own verify.
        let ok = self.keys.iter().any(|k| {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(k)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            m.update(&ms.to_be_bytes());
            m.update(frame);
            m.verify_truncated_left(&got).is_ok()
        });
        if !ok {
            return Err(Refused::BadTag);
        }
        if ms.abs_diff(now_ms) > WINDOW {
            return Err(Refused::Stale);
        }
        // Forget what left the window; refuse replays.
        let floor = now_ms.saturating_sub(2 * WINDOW);
        while self.seen.first().is_some_and(|(t, _)| *t < floor) {
            self.seen.pop_first();
        }
        if self.seen.len() >= MAX_SEEN || !self.seen.insert((ms, got)) {
            return Err(Refused::Replay);
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_frames_open_once_within_the_window_under_any_listed_key() {
        let old = [1u8; KEY_LEN];
        let new = [2u8; KEY_LEN];
        let sender = ClusterAuth::new(vec![new]).expect("a key");
        let mut receiver = ClusterAuth::new(vec![old, new]).expect("keys");
        let mut d = Vec::new();
        sender.seal(1_000_000, b"RING PING 1 0", &mut d);
        assert!(d.starts_with(b"RAUTH 1000000 "));
        assert_eq!(receiver.open(1_000_500, &d), Ok(&b"RING PING 1 0"[..]));
        // A replay is refused.
        assert_eq!(receiver.open(1_000_600, &d), Err(Refused::Replay));
        // Too old or too new.
        let mut d2 = Vec::new();
        sender.seal(1_000_000, b"RING PING 2 0", &mut d2);
        assert_eq!(receiver.open(1_040_001, &d2), Err(Refused::Stale));
        // Another key, or a changed frame: refused.
        let stranger = ClusterAuth::new(vec![[9u8; KEY_LEN]]).expect("a key");
        let mut d3 = Vec::new();
        stranger.seal(1_000_000, b"RING PING 3 0", &mut d3);
        assert_eq!(receiver.open(1_000_000, &d3), Err(Refused::BadTag));
        let mut d4 = Vec::new();
        sender.seal(1_000_000, b"RING PING 4 0", &mut d4);
        let n = d4.len();
        d4[n - 1] = b'1';
        assert_eq!(receiver.open(1_000_000, &d4), Err(Refused::BadTag));
        for bad in [&b"RAUTH"[..], b"RAUTH x y z", b"RAUTH 5 abc RING", b"PING"] {
            assert_eq!(receiver.open(0, bad), Err(Refused::Malformed));
        }
    }

    #[test]
    fn key_files_list_keys_first_one_sends() {
        let text = new_key_file(&[0xab; KEY_LEN]);
        let keys = parse_keys(&format!("{text}\n# old\n{}\n", "00".repeat(32))).expect("keys");
        assert_eq!(keys, vec![[0xab; KEY_LEN], [0; KEY_LEN]]);
        assert!(parse_keys("# nothing\n").is_err());
        assert!(parse_keys("abcd\n").is_err());
    }
}
