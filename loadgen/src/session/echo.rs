//! A session's machinery, whichever engine drives it: the echo loop's state over one socket
//! ([`Session`], its tokio driver here, the blocking one in `blocking`) and exactly-once counting
//! of how each connection ended ([`Ending`]).
//!
//! The tokio driver watches the socket with one `select!` over read, write and a timer, so echoes
//! are read while writes are pending (no deadlock when pipelined bytes exceed the socket buffers)
//! and each echo is timed when it arrives, not when the task next gets around to it. Every
//! received byte is compared with the deterministic payload; any failure ends the session and is
//! counted by kind.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::report::Mismatch;
use crate::session::failure::Failure;
use crate::session::pacer::Pacer;
use crate::session::payload;
use crate::session::plan::Plan;
use crate::session::read_delay;
use crate::session::shared::{micros, RunShared, STOP_DEADLINE, STOP_INTERRUPT};
use crate::Config;

/// Where a connection's task is, for counting it if it is aborted there.
pub(super) enum Stage<S> {
    /// Waiting for its `--connect-rate` slot.
    Waiting,
    /// `connect()` has begun.
    Connecting,
    /// Established; its session holds the local counters.
    Session(Box<Session<S>>),
    /// Counted already.
    Counted,
}

/// Counts how connection `conn` ended, exactly once: the task marks it [`Stage::Counted`]
/// when it ends by itself; if the runner aborts it (deadline, Ctrl-C) or it panics, the drop
/// counts it from the stage it was in, so no connection is in no counter or in two.
pub(super) struct Ending<'a, S> {
    pub shared: &'a RunShared,
    pub stage: Stage<S>,
}

impl<S> Drop for Ending<'_, S> {
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

/// A message written (or queued to be written) whose echo has not fully come back.
struct InFlight {
    intended: Instant,
    actual: Instant,
    /// Counted in the message counters (not warmup).
    counted: bool,
}

/// What one wake-up of the select loop brought.
enum Event {
    /// Bytes read, and how long they had waited in the socket (see `read_delay`).
    Read(io::Result<(usize, Option<u64>)>),
    Wrote(io::Result<usize>),
    Timer,
    /// The open-loop pacer's deadline came.
    Paced(io::Result<()>),
}

/// One established connection's state, whatever drives its socket `S` (a tokio `TcpStream` here,
/// a blocking socket in `blocking`).
pub(super) struct Session<S> {
    pub stream: S,
    conn: u64,
    size: usize,
    pipeline: usize,
    io_timeout: Duration,
    next_seq: u64,
    recv_seq: u64,
    recv_off: usize,
    expected: Vec<u8>,
    in_flight: VecDeque<InFlight>,
    pub(super) out: Vec<u8>,
    pub(super) out_off: usize,
    pub(super) rbuf: Vec<u8>,
    sent: u64,
    bytes_sent: u64,
    bytes_received: u64,
    pub last_completion: Option<Instant>,
    /// When an echo last freed a slot of a full pipeline: a message due before then could not be
    /// sent on time because of the server (true coordinated omission), not because of loadgen.
    slot_freed_at: Option<Instant>,
    /// How long the bytes of the read being absorbed had waited in the socket (kernel receive
    /// timestamp to the read's return), recorded for each measured echo they complete. Set by
    /// the driver (either engine) before each read; `None` when the kernel gave no timestamp.
    pub(super) read_delay_us: Option<u64>,
}

/// What a session does next, decided before it waits on its socket.
pub(super) enum Next {
    /// The plan is over: nothing more to send and nothing outstanding.
    Done,
    Fail(Failure),
    /// Wait for the socket until `wake` (the echo timeout or the plan's deadline); in open loop
    /// the next send is due at `next_send_at`.
    Wait {
        wake: Instant,
        next_send_at: Option<Instant>,
    },
}

impl<S> Session<S> {
    pub(super) fn new(stream: S, conn: u64, config: &Config) -> Self {
        let mut expected = vec![0; config.size];
        payload::fill(conn, 0, &mut expected);
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
            read_delay_us: None,
        }
    }

    /// Queues message `next_seq` for writing.
    fn queue(&mut self, intended: Instant, now: Instant, plan: &Plan, shared: &RunShared) {
        let seq = self.next_seq;
        let start = self.out.len();
        self.out.resize(start + self.size, 0);
        payload::fill(self.conn, seq, &mut self.out[start..]);
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

    /// Queues whatever is due and checks the deadlines: what the session does next.
    pub(super) fn next_step(&mut self, plan: &Plan, shared: &RunShared) -> Next {
        let now = Instant::now();
        // Queue whatever is due; remember when the next scheduled message is.
        let mut next_send_at = None;
        let mut more_to_send = true;
        while self.in_flight.len() < self.pipeline {
            if plan.limit.is_some_and(|l| self.next_seq >= l) {
                more_to_send = false;
                break;
            }
            let intended = plan.intended(self.next_seq).unwrap_or(now);
            if plan.send_until.is_some_and(|u| intended >= u) {
                more_to_send = false;
                break;
            }
            if intended > now {
                next_send_at = Some(intended);
                break;
            }
            self.queue(intended, now, plan, shared);
        }
        if self.in_flight.is_empty() && !more_to_send {
            return Next::Done;
        }
        let io_deadline = self.in_flight.front().map(|m| m.actual + self.io_timeout);
        if now >= plan.deadline {
            // With nothing outstanding the plan simply ran out of time to send.
            return match self.in_flight.is_empty() {
                true => Next::Done,
                false => Next::Fail(Failure::RunDeadline),
            };
        }
        if io_deadline.is_some_and(|d| now >= d) {
            return Next::Fail(Failure::EchoTimeout);
        }
        let wake = io_deadline.map_or(plan.deadline, |d| d.min(plan.deadline));
        Next::Wait { wake, next_send_at }
    }

    /// Accounts for `n` bytes of the pending output written.
    pub(super) fn wrote(&mut self, n: usize) -> Result<(), Failure> {
        if n == 0 {
            return Err(Failure::Other("write returned 0".into()));
        }
        self.bytes_sent += n as u64;
        self.out_off += n;
        if self.out_off == self.out.len() {
            self.out.clear();
            self.out_off = 0;
        }
        Ok(())
    }

    /// Accounts for a read of `n` bytes into `rbuf` (0: the server closed).
    pub(super) fn read(
        &mut self,
        n: usize,
        plan: &Plan,
        shared: &RunShared,
    ) -> Result<(), Failure> {
        if n == 0 {
            return Err(if self.recv_off > 0 {
                Failure::ShortEcho
            } else {
                Failure::ClosedEarly
            });
        }
        self.bytes_received += n as u64;
        self.absorb(n, Instant::now(), plan, shared)
    }
}

impl Session<TcpStream> {
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
            let (wake, next_send_at) = match self.next_step(plan, shared) {
                Next::Done => return Ok(()),
                Next::Fail(f) => return Err(f),
                Next::Wait { wake, next_send_at } => (wake, next_send_at),
            };
            if wake < timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(wake);
            }
            let pending_write = self.out_off < self.out.len();
            let event = {
                let stream = &self.stream;
                let rbuf = &mut self.rbuf;
                let out = &self.out[self.out_off..];
                let next_send = async {
                    match (pacer.as_mut(), next_send_at) {
                        (Some(p), Some(at)) => p.sleep_until(at).await,
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = read_timestamped(stream, rbuf) => Event::Read(r),
                    w = write_some(stream, out), if pending_write => Event::Wrote(w),
                    _ = &mut timer => Event::Timer,
                    p = next_send => Event::Paced(p),
                }
            };
            match event {
                Event::Timer | Event::Paced(Ok(())) => {}
                Event::Paced(Err(e)) => {
                    return Err(Failure::Other(format!("send timer failed: {e}")))
                }
                Event::Wrote(Ok(n)) => self.wrote(n)?,
                Event::Read(Ok((n, delay_us))) => {
                    self.read_delay_us = delay_us;
                    self.read(n, plan, shared)?
                }
                Event::Wrote(Err(e)) | Event::Read(Err(e)) => return Err(Failure::from_io(&e)),
            }
        }
    }
}

/// Reads what is there once the socket is readable, with its receive timestamp: tokio's `read`
/// cannot take the control message that carries it, so the read is ours, in tokio's readiness.
async fn read_timestamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || read_delay::read(stream, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

/// Writes what the socket takes of `out` once it is writable (one `write`, like `AsyncWrite`'s).
async fn write_some(stream: &TcpStream, out: &[u8]) -> io::Result<usize> {
    loop {
        stream.writable().await?;
        match stream.try_write(out) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

impl<S> Session<S> {
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
                let j = payload::first_difference(want, got).unwrap_or(0);
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
            payload::fill(self.conn, self.recv_seq, &mut self.expected);
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
                if let Some(delay) = self.read_delay_us {
                    shard.read_delay.saturating_record(delay);
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

/// How long a session waits for the barrier after the connect phase's deadline before it gives
/// up on it (only if the runner died).
pub(super) const BARRIER_GRACE: Duration = Duration::from_secs(1);
