//! Per-source token buckets with time as an input.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Most source addresses tracked at once; beyond it the least recently used is forgotten.
const MAX_SOURCES: usize = 1_024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// `rate` tokens per second up to `burst`, per source address.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    buckets: BTreeMap<Ipv4Addr, Bucket>,
}

impl Limiter {
    pub(crate) fn new((rate, burst): (f64, f64)) -> Self {
        Self {
            rate: rate.max(0.0),
            burst: burst.max(1.0),
            buckets: BTreeMap::new(),
        }
    }

    /// Takes one token from `src`'s bucket; `false`: drop the request.
    pub(crate) fn allow(&mut self, src: Ipv4Addr, now_ms: u64) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= MAX_SOURCES {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last_ms)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.buckets.remove(&ip);
            }
        }
        let burst = self.burst;
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: burst,
            last_ms: now_ms,
        });
        let dt = now_ms.saturating_sub(b.last_ms) as f64 / 1_000.0;
        b.tokens = (b.tokens + dt * self.rate).min(burst);
        b.last_ms = b.last_ms.max(now_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
