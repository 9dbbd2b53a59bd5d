//! What a session shares with the runner and with its echo loop: the run's shared state
//! ([`RunShared`], the barrier's [`Steady`] timing, the stop causes) and why a session failed
//! ([`Failure`], counted by kind). Apart from `session/mod.rs` so that the echo loop (`echo`)
//! and the connection's life (`mod.rs`) do not import each other.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::report::Mismatch;
use crate::session::pacer::Pacer;
use crate::session::stats::{ShardStats, Stats};
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
    /// ([`Ending`]) counts it under the right cause. 0 while nobody is stopping them.
    pub stop: AtomicU8,
}

/// `RunShared::stop`: the hard run deadline passed.
pub(crate) const STOP_DEADLINE: u8 = 1;
/// `RunShared::stop`: Ctrl-C.
pub(crate) const STOP_INTERRUPT: u8 = 2;

/// Why a session ended early.
#[derive(Debug)]
pub(crate) enum Failure {
    Mismatch(Mismatch),
    ShortEcho,
    ClosedEarly,
    EchoTimeout,
    Reset(String),
    Other(String),
    RunDeadline,
}

impl Failure {
    pub(crate) fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Failure::Reset(e.to_string())
            }
            io::ErrorKind::BrokenPipe => Failure::ClosedEarly,
            io::ErrorKind::TimedOut => Failure::EchoTimeout,
            _ => Failure::Other(e.to_string()),
        }
    }

    pub(crate) fn record(&self, shard: &mut ShardStats) {
        let s = &mut shard.errors.session;
        let (kind, example) = match self {
            Failure::Mismatch(m) => {
                s.mismatch += 1;
                shard.note_mismatch(m.clone());
                ("mismatch", m.to_string())
            }
            Failure::ShortEcho => {
                s.short_echo += 1;
                (
                    "short_echo",
                    "server closed in the middle of an echo".into(),
                )
            }
            Failure::ClosedEarly => {
                s.closed_early += 1;
                ("closed_early", "server closed while echoes were due".into())
            }
            Failure::EchoTimeout => {
                s.echo_timeout += 1;
                ("echo_timeout", "no echo within --io-timeout".into())
            }
            Failure::Reset(e) => {
                s.reset += 1;
                ("reset", e.clone())
            }
            Failure::Other(e) => {
                s.other += 1;
                ("other", e.clone())
            }
            Failure::RunDeadline => {
                s.run_deadline += 1;
                (
                    "run_deadline",
                    "outstanding at the hard run deadline".into(),
                )
            }
        };
        shard
            .errors
            .examples
            .entry(format!("session.{kind}"))
            .or_insert(example);
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}
