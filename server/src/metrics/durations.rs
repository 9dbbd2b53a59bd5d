//! The histogram of session durations that `--metrics-file` and `--metrics-addr` export: fixed
//! buckets, counted at reap time from the fork time the parent's child table keeps. A session's
//! duration is thus fork to reap as the parent saw it, which is what a client's connection cost
//! the server (reaping is prompt: every exit raises SIGCHLD, read in the same poll loop; with
//! many children live a reap waits up to 10 µs per live child, at most 100 ms, see `ReapPacing`).

use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket, `+Inf`, is implicit).
pub const BOUNDS_SECS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Cumulative-on-export bucket counts, a count and a sum: a few integer updates per reaped child.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionDurations {
    /// Non-cumulative: `counts[i]` holds durations in `(BOUNDS_SECS[i-1], BOUNDS_SECS[i]]`; the
    /// last slot holds those above every bound.
    counts: [u64; BOUNDS_SECS.len() + 1],
    count: u64,
    sum_micros: u128,
}

impl SessionDurations {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BOUNDS_SECS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS_SECS.len());
        self.counts[slot] += 1;
        self.count += 1;
        self.sum_micros += d.as_micros();
    }

    /// `(upper bound, cumulative count)` per bucket, `+Inf` (as `f64::INFINITY`) last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        BOUNDS_SECS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts)
            .map(|(bound, n)| {
                running += n;
                (bound, running)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum_secs(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let mut d = SessionDurations::default();
        for ms in [1, 2, 700, 400_000] {
            d.observe(Duration::from_millis(ms));
        }
        let c = d.cumulative();
        assert_eq!(c[0], (0.001, 1), "1 ms is in the le=0.001 bucket");
        assert_eq!(c[1], (0.005, 2));
        assert_eq!(c[6], (1.0, 3));
        assert_eq!(c[11], (300.0, 3));
        assert_eq!(c[12], (f64::INFINITY, 4));
        assert_eq!(d.count(), 4);
        assert!((d.sum_secs() - 400.703).abs() < 1e-9);
    }
}
