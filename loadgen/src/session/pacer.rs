//! Open-loop send pacing precise to tens of microseconds, for `--rate`.
//!
//! tokio's timer wheel has millisecond resolution and rounds every deadline up to the next tick,
//! so a session that slept on it sent each message 1-2 ms after its intended time, and the
//! coordinated-omission-corrected latency charged that lateness to the server. Here one `timerfd`
//! per run (an hrtimer, nanosecond resolution, registered with tokio's reactor) is armed for the
//! earliest send any session is waiting for; it wakes a worker from `epoll_wait` at that moment,
//! without spinning, and the driver task then wakes every session whose send is due. Sharing one
//! timer batches sends that fall due together into one wake-up and costs one descriptor per run:
//! at 1000 connections a timerfd per session cost 20-45 % more CPU than tokio's timer, this one
//! about the same (loadgen/BENCH.md).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `TimerFd` only implements `AsFd`; tokio's `AsyncFd` wants `AsRawFd`.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A session waiting for its send time.
struct Waiting {
    at: Instant,
    waker: Waker,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

struct State {
    /// Sessions waiting, earliest send first. An entry whose session has since moved on only
    /// causes one spurious wake-up (the session re-checks the time), so entries are never removed
    /// early; each session registers a deadline once, so there are about as many as sessions.
    waiting: BinaryHeap<Reverse<Waiting>>,
    /// The deadline the timerfd is armed for, `None` when disarmed. Only changed under the lock,
    /// together with the timerfd itself, so the timer is always armed for the earliest entry.
    armed: Option<Instant>,
    /// The timerfd failed; every wait returns the error instead of hanging until the deadline.
    failed: Option<String>,
}

struct Shared {
    timer: AsyncFd<Timer>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms the timerfd for `at` (at once if it has passed; a zero timeout would disarm it).
    fn arm(&self, state: &mut State, at: Instant) -> io::Result<()> {
        let left = at
            .saturating_duration_since(Instant::now())
            .max(std::time::Duration::from_nanos(1));
        // Relative, not absolute: tokio's `Instant` does not expose its CLOCK_MONOTONIC value,
        // and the microsecond between `now()` and the syscall only ever makes the wake-up later.
        self.timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        )?;
        state.armed = Some(at);
        Ok(())
    }

    /// Wakes every session whose time has come and re-arms for the next one.
    fn fire(&self) -> io::Result<()> {
        let mut due = Vec::new();
        let result = {
            let mut state = self.lock();
            state.armed = None;
            let now = Instant::now();
            while state.waiting.peek().is_some_and(|w| w.0.at <= now) {
                if let Some(Reverse(w)) = state.waiting.pop() {
                    due.push(w.waker);
                }
            }
            match state.waiting.peek().map(|w| w.0.at) {
                Some(next) => self.arm(&mut state, next),
                None => Ok(()),
            }
        };
        // Wake outside the lock: a woken session may register its next send at once.
        due.into_iter().for_each(Waker::wake);
        result
    }

    fn fail(&self, e: &io::Error) {
        let wakers: Vec<Waker> = {
            let mut state = self.lock();
            state.failed = Some(e.to_string());
            state.waiting.drain().map(|w| w.0.waker).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The run's send timer; cheap to clone, one [`SessionPacer`] per session.
#[derive(Clone)]
pub(crate) struct Pacer {
    shared: Arc<Shared>,
}

impl Pacer {
    /// Creates the timer and spawns the task that fires it; abort the task when the run is over.
    pub fn start() -> io::Result<(Pacer, JoinHandle<()>)> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Timer` owns the timerfd's `OwnedFd` and is itself owned by the `AsyncFd`, so
        // the descriptor stays open and the same for the registration's whole life.
        let timer = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(io::Error::from)?;
        let shared = Arc::new(Shared {
            timer,
            state: Mutex::new(State {
                waiting: BinaryHeap::new(),
                armed: None,
                failed: None,
            }),
        });
        let driver = tokio::spawn(drive(shared.clone()));
        Ok((Pacer { shared }, driver))
    }

    pub fn session(&self) -> SessionPacer {
        SessionPacer {
            shared: self.shared.clone(),
            registered: None,
        }
    }
}

/// Reads the timerfd's expirations and fires the due sessions, for as long as the run lasts.
async fn drive(shared: Arc<Shared>) {
    loop {
        let expired = match shared.timer.readable().await {
            Ok(mut ready) => match ready.get_inner().0.wait() {
                // The expiry is consumed: clear readiness now rather than find out with one more
                // read (EAGAIN) per fire. tokio keeps readiness that a newer event set meanwhile.
                Ok(()) => {
                    ready.clear_ready();
                    Ok(true)
                }
                // Readiness left over from an expiry that a re-arm has since cleared.
                Err(Errno::EAGAIN) => {
                    ready.clear_ready();
                    Ok(false)
                }
                Err(e) => Err(io::Error::from(e)),
            },
            Err(e) => Err(e),
        };
        let fired = match expired {
            Ok(true) => shared.fire(),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = fired {
            shared.fail(&e);
            return;
        }
    }
}

/// One session's handle on the run's send timer.
pub(crate) struct SessionPacer {
    shared: Arc<Shared>,
    /// The deadline this session has an entry for, so that waking for another reason (an echo)
    /// and coming back to wait for the same send does not add a second entry.
    registered: Option<Instant>,
}

impl SessionPacer {
    /// Returns at `at` (at once if it has passed). Cancel-safe: dropping the future keeps the
    /// entry, and waiting again for the same `at` completes when it fires.
    pub async fn sleep_until(&mut self, at: Instant) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            if Instant::now() >= at {
                self.registered = None;
                return Poll::Ready(Ok(()));
            }
            let mut state = self.shared.lock();
            if let Some(e) = &state.failed {
                return Poll::Ready(Err(io::Error::other(e.clone())));
            }
            if self.registered != Some(at) {
                state.waiting.push(Reverse(Waiting {
                    at,
                    waker: cx.waker().clone(),
                }));
                if state.armed.is_none_or(|armed| at < armed) {
                    if let Err(e) = self.shared.arm(&mut state, at) {
                        return Poll::Ready(Err(e));
                    }
                }
                self.registered = Some(at);
            }
            Poll::Pending
        })
        .await
    }
}
