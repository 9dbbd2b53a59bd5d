//! Open-loop send pacing precise to tens of microseconds, for `--rate`.
//!
//! tokio's timer wheel has millisecond resolution and rounds every deadline up to the next tick,
//! so a session that slept on it sent each message 1-2 ms after its intended time, and the
//! coordinated-omission-corrected latency charged that lateness to the server. A `timerfd`
//! (an hrtimer, nanosecond resolution) registered with tokio's reactor wakes the worker thread
//! from `epoll_wait` at the deadline itself, without spinning, so an idle connection costs
//! nothing between its messages. One timer per open-loop session: the fd is created once and
//! re-armed per message (one `timerfd_settime` and one `read` per send).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// `TimerFd` only implements `AsFd`; tokio's `AsyncFd` wants `AsRawFd`.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A precise one-shot timer for one session.
pub(crate) struct Pacer {
    fd: AsyncFd<Timer>,
    /// The deadline the timerfd is armed for, so that waking for another reason and coming back
    /// to wait for the same message does not re-arm it (`select!` drops the waiting future).
    armed_for: Option<Instant>,
}

impl Pacer {
    pub fn new() -> io::Result<Pacer> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Timer` owns the timerfd's `OwnedFd` and is itself owned by the `AsyncFd`, so
        // the descriptor stays open and the same for the registration's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Pacer {
            fd,
            armed_for: None,
        })
    }

    /// Returns at `at` (immediately if it has passed). Cancel-safe: dropping the future leaves
    /// the timer armed, and a later call for the same `at` completes as soon as it has fired.
    pub async fn sleep_until(&mut self, at: Instant) -> io::Result<()> {
        if self.armed_for != Some(at) {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            // Relative, not absolute: tokio's `Instant` does not expose its CLOCK_MONOTONIC value,
            // and the few hundred nanoseconds between `now()` and the syscall do not matter here.
            self.fd.get_ref().0.set(
                Expiration::OneShot(TimeSpec::from_duration(left)),
                TimerSetTimeFlags::empty(),
            )?;
            self.armed_for = Some(at);
        }
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.get_inner().0.wait() {
                Ok(()) => {
                    self.armed_for = None;
                    return Ok(());
                }
                // Readiness left over from an expiry that a re-arm has since cleared.
                Err(Errno::EAGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
