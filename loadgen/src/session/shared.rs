//! The state every session of one run shares with the others and with the runner: the measured
//! phase's timing ([`Steady`]), the run's counters and barrier ([`RunShared`]) and why the runner
//! is stopping sessions. Apart from the sessions that use it, so the session's helpers
//! (`connect`, `plan`) reach it without importing the session itself.

use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::session::pacer::Pacer;
use crate::session::stats::Stats;
use crate::Config;

/// The measured phase's timing, decided once at the barrier and shared by every session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steady {
    /// When the measured phase's sending starts: the barrier (every connection had connected and
    /// echoed once, or failed) plus, in open loop, [`Config::schedule_lead`].
    pub schedule_start: Instant,
    /// `schedule_start + warmup`: messages intended before this are warmup.
    pub measure_start: Instant,
    /// Duration mode: no message is intended at or after this.
    pub send_until: Option<Instant>,
    /// Hard deadline: whatever is outstanding then is counted as cut off.
    pub deadline: Instant,
}

/// State shared by all sessions of one run.
pub(crate) struct RunShared {
    pub config: Config,
    pub stats: Stats,
    /// Start of the connect phase; timeline seconds count from here.
    pub t0: Instant,
    /// Deadline of the connect phase (first echo included).
    pub connect_deadline: Instant,
    /// Sessions still connecting or waiting for their first echo. Each session decrements it
    /// exactly once (through `PhaseGuard`, so also when aborted); whoever takes it to zero
    /// notifies `connect_phase_done`, which opens the barrier.
    pub connecting: AtomicUsize,
    pub connect_phase_done: Notify,
    /// `None` until the barrier opens; then the measured phase's timing.
    pub steady: watch::Receiver<Option<Steady>>,
    /// Open loop: the run's microsecond send timer (closed loop: `None`).
    pub pacer: Option<Pacer>,
    /// Why the runner is aborting the sessions still going ([`STOP_DEADLINE`] or
    /// [`STOP_INTERRUPT`]); set before `abort_all`, so each aborted session's drop guard
    /// (`session::Ending`) counts it under the right cause. 0 while nobody is stopping them.
    pub stop: AtomicU8,
}

/// `RunShared::stop`: the hard run deadline passed.
pub(crate) const STOP_DEADLINE: u8 = 1;
/// `RunShared::stop`: Ctrl-C.
pub(crate) const STOP_INTERRUPT: u8 = 2;

/// `d` in whole microseconds, the unit of every histogram (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}
