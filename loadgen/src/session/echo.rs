//! A session's machinery: the run's shared state, the echo loop over one socket, and exactly-once
//! counting of how each connection ended.
//!
//! The socket is driven by one `select!` over read, write and a timer, so echoes are read while
//! writes are pending (no deadlock when pipelined bytes exceed the socket buffers) and each echo
//! is timed when it arrives, not when the task next gets around to it. Every received byte is
//! compared with the deterministic payload; any failure ends the session and is counted by kind.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::stages::Stages;
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

/// Where a connection's task is, for counting it if it is aborted there.
pub(super) enum Stage {
    /// Waiting for its `--connect-rate` slot.
    Waiting,
    /// `connect()` has begun.
    Connecting,
    /// Established; its session holds the local counters.
    Session(Box<Session>),
    /// Counted already.
    Counted,
}

/// Counts how connection `conn` ended, exactly once: the task marks it [`Stage::Counted`]
/// when it ends by itself; if the runner aborts it (deadline, Ctrl-C) or it panics, the drop
/// counts it from the stage it was in, so no connection is in no counter or in two.
pub(super) struct Ending<'a> {
    pub shared: &'a RunShared,
    pub stage: Stage,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let stage = std::mem::replace(&mut self.stage, Stage::Counted);
        let cause = self.shared.stop.load(Ordering::Acquire);
        match stage {
            Stage::Counted => {}
            Stage::Waiting => self.shared.stats.local().counters.connections_not_started += 1,
            Stage::Connecting => {
                let mut shard = self.shared.stats.local();
                if cause == STOP_INTERRUPT {
                    shard.counters.connections_interrupted += 1;
                } else {
                    shard.counters.connections_failed += 1;
                    if cause == STOP_DEADLINE {
                        shard.errors.connect.run_deadline += 1;
                    } else {
                        shard.errors.connect.other += 1;
                    }
                }
            }
            Stage::Session(session) => match cause {
                STOP_INTERRUPT => session.finish_interrupted(self.shared),
                STOP_DEADLINE => session.finish(Some(&Failure::RunDeadline), self.shared),
                _ => session.finish(
                    Some(&Failure::Other("the session's task panicked".into())),
                    self.shared,
                ),
            },
        }
    }
}

/// Decrements `connecting` once, when the connect phase of a session is over however it ended.
pub(super) struct PhaseGuard<'a>(pub Option<&'a RunShared>);

impl PhaseGuard<'_> {
    pub(super) fn done(&mut self) {
        if let Some(shared) = self.0.take() {
            if shared.connecting.fetch_sub(1, Ordering::AcqRel) == 1 {
                shared.connect_phase_done.notify_one();
            }
        }
    }
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

/// Keeps the established-connections gauge right even if the task is aborted, and counts the
/// close in the timeline's second.
pub(super) struct EstablishedGuard<'a>(pub &'a RunShared);

impl Drop for EstablishedGuard<'_> {
    fn drop(&mut self) {
        self.0.stats.connection_closed();
        let second = Instant::now().duration_since(self.0.t0).as_secs();
        self.0.stats.local().second(second).closed += 1;
    }
}

/// Why a session ended early.
#[derive(Debug)]
pub(super) enum Failure {
    Mismatch(Mismatch),
    ShortEcho,
    ClosedEarly,
    EchoTimeout,
    Reset(String),
    Other(String),
    RunDeadline,
}

impl Failure {
    fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Failure::Reset(e.to_string())
            }
            io::ErrorKind::BrokenPipe => Failure::ClosedEarly,
            io::ErrorKind::TimedOut => Failure::EchoTimeout,
            _ => Failure::Other(e.to_string()),
        }
    }

    fn record(&self, shard: &mut ShardStats) {
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

/// How one stretch of a session sends.
pub(super) struct Plan {
    /// Send only sequence numbers below this.
    pub limit: Option<u64>,
    /// Send only messages intended before this.
    pub send_until: Option<Instant>,
    /// Open loop: when each message is intended.
    pub schedule: Option<Schedule>,
    /// Messages intended before this are warmup; `None` = all count.
    pub measure_start: Option<Instant>,
    /// Nothing outstanding survives this.
    pub deadline: Instant,
    /// Connect start, for the first-echo time of message 0.
    pub connect_start: Instant,
    /// Record the uncorrected latency too (open loop).
    pub uncorrected: bool,
}

/// Open loop: when message `seq` (from 1) of a connection is intended.
pub(super) enum Schedule {
    /// `--rate`: at `first + (seq - 1) * interval`.
    Even { first: Instant, interval: f64 },
    /// `--stages` of rates: message `(seq - 1) * conns + conn` of the whole plan, as it is due
    /// (see `Stages::due_at`), so the connections take turns and the total follows the ramp.
    Staged {
        start: Instant,
        stages: Stages,
        conns: u64,
        conn: u64,
    },
}

impl Plan {
    fn intended(&self, seq: u64) -> Option<Instant> {
        Some(match self.schedule.as_ref()? {
            Schedule::Even { first, interval } => {
                *first + Duration::from_secs_f64(interval * seq.saturating_sub(1) as f64)
            }
            Schedule::Staged {
                start,
                stages,
                conns,
                conn,
            } => {
                let n = seq.saturating_sub(1).saturating_mul(*conns) + conn;
                // Past the plan: after its end, which `send_until` stops at.
                let at = stages
                    .due_at(n)
                    .unwrap_or(stages.total().as_secs_f64() + 1.0);
                *start + Duration::from_secs_f64(at)
            }
        })
    }
}

/// A message written (or queued to be written) whose echo has not fully come back.
struct InFlight {
    intended: Instant,
    actual: Instant,
    /// Counted in the message counters (not warmup).
    counted: bool,
}

/// What one wake-up of the select loop brought.
enum Event {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
    Timer,
    /// The open-loop pacer's deadline came.
    Paced(io::Result<()>),
}

pub(super) struct Session {
    pub stream: TcpStream,
    conn: u64,
    size: usize,
    pipeline: usize,
    io_timeout: Duration,
    next_seq: u64,
    recv_seq: u64,
    recv_off: usize,
    expected: Vec<u8>,
    in_flight: VecDeque<InFlight>,
    out: Vec<u8>,
    out_off: usize,
    rbuf: Vec<u8>,
    sent: u64,
    bytes_sent: u64,
    bytes_received: u64,
    pub last_completion: Option<Instant>,
    /// When an echo last freed a slot of a full pipeline: a message due before then could not be
    /// sent on time because of the server (true coordinated omission), not because of loadgen.
    slot_freed_at: Option<Instant>,
}

impl Session {
    pub(super) fn new(stream: TcpStream, conn: u64, config: &Config) -> Self {
        let mut expected = vec![0; config.size];
        crate::session::payload::fill(conn, 0, &mut expected);
        let rbuf_len = (config.size.saturating_mul(config.pipeline)).clamp(4096, 256 << 10);
        Session {
            stream,
            conn,
            size: config.size,
            pipeline: config.pipeline,
            io_timeout: config.io_timeout,
            next_seq: 0,
            recv_seq: 0,
            recv_off: 0,
            expected,
            in_flight: VecDeque::with_capacity(config.pipeline),
            out: Vec::with_capacity(config.size * config.pipeline.min(64)),
            out_off: 0,
            rbuf: vec![0; rbuf_len],
            sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            last_completion: None,
            slot_freed_at: None,
        }
    }

    /// Queues message `next_seq` for writing.
    fn queue(&mut self, intended: Instant, now: Instant, plan: &Plan, shared: &RunShared) {
        let seq = self.next_seq;
        let start = self.out.len();
        self.out.resize(start + self.size, 0);
        crate::session::payload::fill(self.conn, seq, &mut self.out[start..]);
        let counted = seq == 0 || plan.measure_start.is_none_or(|m| intended >= m);
        if counted {
            self.sent += 1;
        }
        if counted && seq > 0 && plan.schedule.is_some() {
            // Lateness that is loadgen's own: from when the message could first be sent.
            let sendable = self.slot_freed_at.map_or(intended, |f| f.max(intended));
            let lag = micros(now.saturating_duration_since(sendable));
            shared.stats.local().send_lag.saturating_record(lag);
        }
        self.in_flight.push_back(InFlight {
            intended,
            actual: now,
            counted,
        });
        self.next_seq += 1;
    }

    /// Runs `plan` until it has nothing more to send and nothing outstanding, or fails.
    pub(super) async fn drive(&mut self, plan: &Plan, shared: &RunShared) -> Result<(), Failure> {
        // One timer for the whole plan. It is only moved earlier (or re-armed after firing):
        // a wake-up that comes too early just goes round the loop once, which is far cheaper
        // than re-registering a timer for every message.
        let timer = tokio::time::sleep_until(plan.deadline);
        tokio::pin!(timer);
        // Open loop sends on a timer precise to microseconds (see `pacer.rs`); tokio's timer
        // keeps the millisecond-grained deadlines (echo timeout, run deadline).
        let mut pacer = plan
            .schedule
            .as_ref()
            .and(shared.pacer.as_ref())
            .map(Pacer::session);
        loop {
            let now = Instant::now();
            let (next_send_at, more_to_send) = self.queue_due(now, plan, shared);
            if self.in_flight.is_empty() && !more_to_send {
                return Ok(());
            }

            let io_deadline = self.in_flight.front().map(|m| m.actual + self.io_timeout);
            if now >= plan.deadline {
                // With nothing outstanding the plan simply ran out of time to send.
                return match self.in_flight.is_empty() {
                    true => Ok(()),
                    false => Err(Failure::RunDeadline),
                };
            }
            if io_deadline.is_some_and(|d| now >= d) {
                return Err(Failure::EchoTimeout);
            }
            let wake = [io_deadline, Some(plan.deadline)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(plan.deadline);

            if wake < timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(wake);
            }
            let pending_write = self.out_off < self.out.len();
            let event = {
                let (mut rd, mut wr) = self.stream.split();
                let rbuf = &mut self.rbuf;
                let out = &self.out[self.out_off..];
                let next_send = async {
                    match (pacer.as_mut(), next_send_at) {
                        (Some(p), Some(at)) => p.sleep_until(at).await,
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = rd.read(rbuf) => Event::Read(r),
                    w = wr.write(out), if pending_write => Event::Wrote(w),
                    _ = &mut timer => Event::Timer,
                    p = next_send => Event::Paced(p),
                }
            };
            self.handle(event, plan, shared)?;
        }
    }

    /// Queues every message that is due now (pipeline room permitting). Returns when the next
    /// scheduled message is due, if one is waiting, and whether the plan has more to send.
    fn queue_due(
        &mut self,
        now: Instant,
        plan: &Plan,
        shared: &RunShared,
    ) -> (Option<Instant>, bool) {
        while self.in_flight.len() < self.pipeline {
            if plan.limit.is_some_and(|l| self.next_seq >= l) {
                return (None, false);
            }
            let intended = plan.intended(self.next_seq).unwrap_or(now);
            if plan.send_until.is_some_and(|u| intended >= u) {
                return (None, false);
            }
            if intended > now {
                return (Some(intended), true);
            }
            self.queue(intended, now, plan, shared);
        }
        (None, true)
    }

    /// Acts on one wake-up of [`Session::drive`]'s select loop.
    fn handle(&mut self, event: Event, plan: &Plan, shared: &RunShared) -> Result<(), Failure> {
        match event {
            Event::Timer | Event::Paced(Ok(())) => {}
            Event::Paced(Err(e)) => {
                return Err(Failure::Other(format!("send timer failed: {e}")));
            }
            Event::Wrote(Ok(0)) => return Err(Failure::Other("write returned 0".into())),
            Event::Wrote(Ok(n)) => {
                self.bytes_sent += n as u64;
                self.out_off += n;
                if self.out_off == self.out.len() {
                    self.out.clear();
                    self.out_off = 0;
                }
            }
            Event::Wrote(Err(e)) | Event::Read(Err(e)) => return Err(Failure::from_io(&e)),
            Event::Read(Ok(0)) => {
                return Err(if self.recv_off > 0 {
                    Failure::ShortEcho
                } else {
                    Failure::ClosedEarly
                });
            }
            Event::Read(Ok(n)) => {
                self.bytes_received += n as u64;
                self.absorb(n, Instant::now(), plan, shared)?;
            }
        }
        Ok(())
    }

    /// Verifies `rbuf[..n]` against the expected payloads and records every completed echo.
    fn absorb(
        &mut self,
        n: usize,
        now: Instant,
        plan: &Plan,
        shared: &RunShared,
    ) -> Result<(), Failure> {
        let mut shard = shared.stats.local();
        let since_t0 = now.duration_since(shared.t0);
        let (second, at_us) = (since_t0.as_secs(), micros(since_t0));
        let mut i = 0;
        while i < n {
            if self.in_flight.is_empty() {
                return Err(Failure::Mismatch(Mismatch {
                    connection: self.conn,
                    sequence: self.recv_seq,
                    offset: self.recv_off as u64,
                    expected: self.expected[self.recv_off],
                    got: self.rbuf[i],
                }));
            }
            let take = (self.size - self.recv_off).min(n - i);
            let got = &self.rbuf[i..i + take];
            let want = &self.expected[self.recv_off..self.recv_off + take];
            if got != want {
                let j = crate::session::payload::first_difference(want, got).unwrap_or(0);
                return Err(Failure::Mismatch(Mismatch {
                    connection: self.conn,
                    sequence: self.recv_seq,
                    offset: (self.recv_off + j) as u64,
                    expected: want[j],
                    got: got[j],
                }));
            }
            self.recv_off += take;
            i += take;
            if self.recv_off < self.size {
                continue;
            }
            // A whole message came back intact.
            if self.in_flight.len() == self.pipeline {
                self.slot_freed_at = Some(now);
            }
            let Some(msg) = self.in_flight.pop_front() else {
                break;
            };
            let seq = self.recv_seq;
            self.recv_seq += 1;
            self.recv_off = 0;
            crate::session::payload::fill(self.conn, self.recv_seq, &mut self.expected);
            self.last_completion = Some(now);
            let corrected = micros(now.duration_since(msg.intended));
            let bucket = shard.second(second);
            bucket.messages += 1;
            if seq == 0 {
                let first = micros(now.duration_since(plan.connect_start));
                shard.record_first_echo(at_us, first);
                shard.counters.first_echoes += 1;
                shard.counters.messages_verified += 1;
                shard.last_first_echo_us = shard.last_first_echo_us.max(at_us);
                continue;
            }
            bucket.echo.saturating_record(corrected);
            if msg.counted {
                shard.record_echo(at_us, corrected);
                if plan.uncorrected {
                    let actual = micros(now.duration_since(msg.actual));
                    shard.echo_uncorrected.saturating_record(actual);
                }
                shard.counters.messages_verified += 1;
                shard.counters.measured_messages += 1;
            } else {
                shard.counters.warmup_messages += 1;
            }
        }
        Ok(())
    }

    /// Adds this session's local counters (and its failure, if any) to the shard.
    pub(super) fn finish(&self, failure: Option<&Failure>, shared: &RunShared) {
        let failed = self.in_flight.iter().filter(|m| m.counted).count() as u64;
        let mut shard = shared.stats.local();
        shard.counters.messages_sent += self.sent;
        shard.counters.messages_failed += failed;
        shard.counters.bytes_sent += self.bytes_sent;
        shard.counters.bytes_received += self.bytes_received;
        if let Some(f) = failure {
            f.record(&mut shard);
            shard.counters.sessions_failed += 1;
            let second = Instant::now().duration_since(shared.t0).as_secs();
            shard.second(second).errors += 1;
        } else {
            shard.counters.sessions_completed += 1;
        }
    }

    /// Counts a session Ctrl-C stopped: not a failure; its messages still in flight were never
    /// answered or failed, so they leave the sent count instead of entering the failed one.
    fn finish_interrupted(&self, shared: &RunShared) {
        let in_flight = self.in_flight.iter().filter(|m| m.counted).count() as u64;
        let mut shard = shared.stats.local();
        shard.counters.messages_sent += self.sent.saturating_sub(in_flight);
        shard.counters.bytes_sent += self.bytes_sent;
        shard.counters.bytes_received += self.bytes_received;
        shard.counters.connections_interrupted += 1;
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}
