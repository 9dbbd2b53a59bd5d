//! The admission gates beside `--max-children`: which clients count as one source for
//! `--max-per-source` (an IPv4 address; an IPv6 /64, since one host or customer usually holds a
//! whole /64 and could otherwise dodge the limit by picking addresses), and the token bucket
//! behind `--max-rate` (xinetd's `cps`).
//!
//! Layers it may import: none.
//! Crates it may import: none.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The unit `--max-per-source` counts sessions by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4(u32),
    /// The upper 64 bits of the address.
    V6Net64(u64),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.into()),
            // A `::` listener sees IPv4 clients as ::ffff:a.b.c.d: still one IPv4 source each.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.into()),
                None => SourceKey::V6Net64((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// At most `rate` new sessions per second on average, in bursts of at most `rate` (a bucket that
/// holds one second's worth of tokens, full at start).
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last_refill: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, now: Instant) -> TokenBucket {
        let per_second = f64::from(per_second.max(1));
        TokenBucket {
            per_second,
            capacity: per_second,
            tokens: per_second,
            last_refill: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last_refill = now;
    }

    /// `None` when a session may start now, else when the next token is due.
    pub fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return None;
        }
        let wait = (1.0 - self.tokens) / self.per_second;
        Some(now + Duration::from_secs_f64(wait))
    }

    /// Spends a token for a session that starts now; call after `ready_at` said `None`.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_mapped_ipv4_are_one_source_ipv6_counts_per_64() {
        let key = |s: &str| SourceKey::of(s.parse().unwrap());
        assert_eq!(key("127.0.0.2"), key("::ffff:127.0.0.2"));
        assert_ne!(key("127.0.0.2"), key("127.0.0.3"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(5, t0);
        for _ in 0..5 {
            assert_eq!(bucket.ready_at(t0), None);
            bucket.take(t0);
        }
        let next = bucket.ready_at(t0).expect("the burst is spent");
        assert_eq!(next.duration_since(t0), Duration::from_millis(200));
        assert_eq!(bucket.ready_at(next), None);
        // An idle minute refills at most one second's worth.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(bucket.ready_at(later), None);
            bucket.take(later);
        }
        assert!(bucket.ready_at(later).is_some());
    }
}
