//! When the parent walks its children for zombies.
//!
//! `waitpid(-1, WNOHANG)` costs the kernel a scan of the parent's list of children, and every
//! reap ends with a call that finds no zombie and so scans all of them: about 200 ns per live
//! child here (a `wait4` that found nothing took 198 us with 1,000 children live and 597 us with
//! 3,000). Reaping on every SIGCHLD (what the careful C server's handler does) therefore costs one
//! scan of all live children per wake-up, and a connect burst ends in an exit storm of hundreds of
//! wake-ups with hundreds of children live: in a profile of the parent during 1,000-connect
//! bursts that scan (`wait_consider_task`) was 5-8 % of its CPU and one of the largest
//! differences to C.
//!
//! So after a reap the next one waits until `live × PACE_PER_CHILD` has passed (at most
//! `MAX_DELAY`): the scans then cost the parent at most about 2 % of a CPU up to 10,000 live
//! children, while with a few children the delay is microseconds. While a reap waits, the
//! parent does not poll its signal fd either, so the storm's SIGCHLDs do not wake it; a SIGTERM
//! waits at most as long.
//!
//! Layers it may import: none.
//! Crates it may import: none.

use std::time::{Duration, Instant};

/// Delay before the next reap per live child; see the module docs.
const PACE_PER_CHILD: Duration = Duration::from_micros(10);
/// The longest a zombie waits, and so the most a session's measured duration (fork to reap)
/// may grow and the longest a slot under `--max-children` stays taken after its child exited.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct ReapPacing {
    /// A SIGCHLD was read and its children are not reaped yet.
    pending: bool,
    last_reap: Instant,
}

impl ReapPacing {
    pub fn new(now: Instant) -> ReapPacing {
        ReapPacing {
            pending: false,
            last_reap: now,
        }
    }

    /// A SIGCHLD was read: some child exited.
    pub fn child_exited(&mut self) {
        self.pending = true;
    }

    /// When the pending reap is due with `live` children; `None` when none is pending.
    pub fn due_at(&self, live: usize) -> Option<Instant> {
        let delay = PACE_PER_CHILD
            .saturating_mul(u32::try_from(live).unwrap_or(u32::MAX))
            .min(MAX_DELAY);
        self.pending.then(|| self.last_reap + delay)
    }

    /// Whether a reap is pending but not due yet at `now`.
    pub fn is_waiting(&self, now: Instant, live: usize) -> bool {
        self.due_at(live).is_some_and(|at| now < at)
    }

    /// Whether a reap is pending and due at `now`.
    pub fn is_due(&self, now: Instant, live: usize) -> bool {
        self.due_at(live).is_some_and(|at| now >= at)
    }

    /// The children were just reaped.
    pub fn reaped(&mut self, now: Instant) {
        self.pending = false;
        self.last_reap = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_due_without_an_exit() {
        let now = Instant::now();
        let pacing = ReapPacing::new(now);
        assert_eq!(pacing.due_at(1000), None);
        assert!(!pacing.is_due(now + MAX_DELAY, 1000));
        assert!(!pacing.is_waiting(now, 1000));
    }

    #[test]
    fn the_delay_grows_with_the_live_children_up_to_the_cap() {
        let now = Instant::now();
        let mut pacing = ReapPacing::new(now);
        pacing.reaped(now);
        pacing.child_exited();
        assert_eq!(pacing.due_at(0), Some(now));
        assert_eq!(pacing.due_at(1000), Some(now + Duration::from_millis(10)));
        assert_eq!(pacing.due_at(usize::MAX), Some(now + MAX_DELAY));
        assert!(pacing.is_waiting(now, 1000));
        assert!(!pacing.is_due(now, 1000));
        assert!(pacing.is_due(now + Duration::from_millis(10), 1000));
        pacing.reaped(now + Duration::from_millis(10));
        assert_eq!(pacing.due_at(1000), None);
    }
}
