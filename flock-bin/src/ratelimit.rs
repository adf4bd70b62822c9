//! Per-source token buckets: bound the work any one address can cause.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

/// A token bucket per source address, with a bounded number of tracked sources.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<Ipv4Addr, Bucket>,
    /// Requests refused so far.
    pub refused: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once, tracking at most
    /// `max_sources` addresses (idle ones are forgotten first when the table is full).
    pub fn new(rate: f64, burst: f64, max_sources: usize) -> Self {
        Self {
            rate,
            burst,
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            refused: 0,
        }
    }

    /// Takes `cost` tokens from `src`'s bucket; `false` means drop the request.
    pub fn allow(&mut self, src: Ipv4Addr, cost: f64, now: Instant) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.max_sources {
            self.evict(now);
            if self.buckets.len() >= self.max_sources {
                self.refused += 1;
                return false;
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// Forgets sources whose buckets have refilled (they behave as new sources).
    fn evict(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let dt = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + dt * rate < burst
        });
    }

    /// Number of tracked sources.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10.0, 5.0, 16);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!((0..8).filter(|_| rl.allow(a, 1.0, t0)).count(), 5);
        assert_eq!(rl.refused, 3);
        // 0.5 s later, 5 more tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..8).filter(|_| rl.allow(a, 1.0, t1)).count(), 5);
        // Another source is independent.
        assert!(rl.allow(Ipv4Addr::new(10, 0, 0, 2), 1.0, t1));
    }

    #[test]
    fn table_is_bounded() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1.0, 2.0, 4);
        for i in 0..4 {
            assert!(rl.allow(Ipv4Addr::new(10, 0, 0, i), 1.0, t0));
        }
        // Full, nobody idle long enough: a fifth source is refused, table stays bounded.
        assert!(!rl.allow(Ipv4Addr::new(10, 0, 0, 9), 1.0, t0));
        assert_eq!(rl.tracked(), 4);
        // After the others refill, the newcomer gets in.
        let t1 = t0 + Duration::from_secs(5);
        assert!(rl.allow(Ipv4Addr::new(10, 0, 0, 9), 1.0, t1));
        assert!(rl.tracked() <= 4);
    }
}
