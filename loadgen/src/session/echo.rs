//! One established connection's echo loop: a [`Session`] sends the messages a [`Plan`] says are
//! due, verifies every echoed byte against the payload, times each echo when it arrives and
//! records it. `session::connection` drives it through the first echo and the measured phase.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::report::Mismatch;
use crate::session::pacer::Pacer;
use crate::session::payload;
use crate::session::shared::{micros, Failure, RunShared};
use crate::Config;

/// How one stretch of a session sends.
pub(super) struct Plan {
    /// Send only sequence numbers below this.
    pub(super) limit: Option<u64>,
    /// Send only messages intended before this.
    pub(super) send_until: Option<Instant>,
    /// Open loop: message `seq` is intended at `first + (seq - first_seq) * interval`.
    pub(super) schedule: Option<(Instant, u64, f64)>,
    /// Messages intended before this are warmup; `None` = all count.
    pub(super) measure_start: Option<Instant>,
    /// Nothing outstanding survives this.
    pub(super) deadline: Instant,
    /// Connect start, for the first-echo time of message 0.
    pub(super) connect_start: Instant,
    /// Record the uncorrected latency too (open loop).
    pub(super) uncorrected: bool,
}

impl Plan {
    fn intended(&self, seq: u64) -> Option<Instant> {
        self.schedule.map(|(first, first_seq, interval)| {
            first + Duration::from_secs_f64(interval * (seq - first_seq) as f64)
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
    pub(super) stream: TcpStream,
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
    pub(super) last_completion: Option<Instant>,
    /// When an echo last freed a slot of a full pipeline: a message due before then could not be
    /// sent on time because of the server (true coordinated omission), not because of loadgen.
    slot_freed_at: Option<Instant>,
}

impl Session {
    pub(super) fn new(stream: TcpStream, conn: u64, config: &Config) -> Self {
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

    /// Runs `plan` until it has nothing more to send and nothing outstanding, or fails.
    pub(super) async fn drive(&mut self, plan: &Plan, shared: &RunShared) -> Result<(), Failure> {
        // One timer for the whole plan. It is only moved earlier (or re-armed after firing):
        // a wake-up that comes too early just goes round the loop once, which is far cheaper
        // than re-registering a timer for every message.
        let timer = tokio::time::sleep_until(plan.deadline);
        tokio::pin!(timer);
        // Open loop sends on a timer precise to microseconds (see `pacer.rs`); tokio's timer
        // keeps the millisecond-grained deadlines (echo timeout, run deadline).
        let mut pacer = plan.schedule.and(shared.pacer.as_ref()).map(Pacer::session);
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
        let second = now.duration_since(shared.t0).as_secs();
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
                shard.first_echo.saturating_record(first);
                shard.counters.first_echoes += 1;
                shard.counters.messages_verified += 1;
                let since_t0 = micros(now.duration_since(shared.t0));
                shard.last_first_echo_us = shard.last_first_echo_us.max(since_t0);
                continue;
            }
            bucket.echo.saturating_record(corrected);
            if msg.counted {
                shard.echo.saturating_record(corrected);
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
    pub(super) fn finish_interrupted(&self, shared: &RunShared) {
        let in_flight = self.in_flight.iter().filter(|m| m.counted).count() as u64;
        let mut shard = shared.stats.local();
        shard.counters.messages_sent += self.sent.saturating_sub(in_flight);
        shard.counters.bytes_sent += self.bytes_sent;
        shard.counters.bytes_received += self.bytes_received;
        shard.counters.connections_interrupted += 1;
    }
}
