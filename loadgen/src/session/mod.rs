//! One connection's life: wait for its ramp-up slot, connect, echo one message (the first echo),
//! wait at the barrier for every other connection, then run the measured phase and close.
//!
//! The socket is driven by one `select!` over read, write and a timer, so echoes are read while
//! writes are pending (no deadlock when pipelined bytes exceed the socket buffers) and each echo
//! is timed when it arrives, not when the task next gets around to it. Every received byte is
//! compared with the deterministic payload; any failure ends the session and is counted by kind.
//!
//! Below `engine`; it records into `report`'s types and reads the `config`.
//!
//! Layers it may import: `report`, `config`.
//! Crates it may import: `hdrhistogram`, `humantime`, `libc`, `nix`, `tokio`.

pub(crate) mod connect;
mod echo;
pub(crate) mod pacer;
pub mod payload;
mod shared;
pub(crate) mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::session::connect::{connect, ConnectFailure};
use crate::session::echo::{Plan, Session};
use crate::session::shared::{micros, Failure};
pub(crate) use crate::session::shared::{RunShared, Steady, STOP_DEADLINE, STOP_INTERRUPT};
use crate::session::stats::Stats;
use crate::Config;

/// Where a connection's task is, for counting it if it is aborted there.
enum Stage {
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
struct Ending<'a> {
    shared: &'a RunShared,
    stage: Stage,
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
struct PhaseGuard<'a>(Option<&'a RunShared>);

impl PhaseGuard<'_> {
    fn done(&mut self) {
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

/// Keeps the established-connections gauge right even if the task is aborted.
struct EstablishedGuard<'a>(&'a Stats);

impl Drop for EstablishedGuard<'_> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Counts the outcome of one connect (its error by kind, or its connect time); the stream when
/// it was established.
fn record_connect(
    shared: &RunShared,
    result: Result<TcpStream, (ConnectFailure, String)>,
    connect_start: Instant,
) -> Option<TcpStream> {
    let now = Instant::now();
    let second = now.duration_since(shared.t0).as_secs();
    let mut shard = shared.stats.local();
    match result {
        Err((kind, message)) => {
            shard.counters.connections_failed += 1;
            let c = &mut shard.errors.connect;
            match kind {
                ConnectFailure::Refused => c.refused += 1,
                ConnectFailure::Timeout => c.timeout += 1,
                ConnectFailure::Reset => c.reset += 1,
                ConnectFailure::AddressNotAvailable => c.address_not_available += 1,
                ConnectFailure::Other => c.other += 1,
            }
            shard
                .errors
                .examples
                .entry(format!("connect.{}", kind.name()))
                .or_insert(message);
            shard.second(second).errors += 1;
            None
        }
        Ok(stream) => {
            shard.counters.connections_established += 1;
            shard
                .connect
                .saturating_record(micros(now.duration_since(connect_start)));
            shard.second(second).established += 1;
            Some(stream)
        }
    }
}

/// The measured phase of connection `conn` once the barrier has opened: open loop spreads the
/// connections evenly over one send interval so the total rate is smooth.
fn steady_plan(config: &Config, steady: &Steady, conn: u64, connect_start: Instant) -> Plan {
    let schedule = config.rate.map(|rate| {
        let interval = config.conns as f64 / rate;
        // Spread connections evenly over one interval so the total rate is smooth.
        let offset = interval * (conn as f64 / config.conns as f64);
        (
            steady.schedule_start + Duration::from_secs_f64(offset),
            1,
            interval,
        )
    });
    Plan {
        limit: config.messages,
        send_until: steady.send_until,
        schedule,
        measure_start: Some(steady.measure_start),
        deadline: steady.deadline,
        connect_start,
        uncorrected: config.rate.is_some(),
    }
}

/// Runs connection number `conn` from ramp-up to close. Returns when its last echo completed.
pub(crate) async fn connection(shared: Arc<RunShared>, conn: u64) -> Option<Instant> {
    let shared = &*shared;
    let config = &shared.config;
    let mut phase = PhaseGuard(Some(shared));
    let mut ending = Ending {
        shared,
        stage: Stage::Waiting,
    };
    if let Some(rate) = config.connect_rate {
        tokio::time::sleep_until(shared.t0 + Duration::from_secs_f64(conn as f64 / rate)).await;
    }
    ending.stage = Stage::Connecting;
    shared.stats.local().counters.connections_attempted += 1;
    let source = (!config.source_ips.is_empty())
        .then(|| config.source_ips[conn as usize % config.source_ips.len()]);
    let connect_start = Instant::now();
    let result = connect(config.addr, source, config.connect_timeout).await;
    let Some(stream) = record_connect(shared, result, connect_start) else {
        ending.stage = Stage::Counted;
        return None;
    };
    shared.stats.connection_opened();
    let _established = EstablishedGuard(&shared.stats);
    ending.stage = Stage::Session(Box::new(Session::new(stream, conn, config)));
    let Stage::Session(session) = &mut ending.stage else {
        unreachable!("the stage was set just above")
    };

    let first = Plan {
        limit: Some(1),
        send_until: None,
        schedule: None,
        measure_start: None,
        deadline: shared.connect_deadline,
        connect_start,
        uncorrected: false,
    };
    if let Err(f) = session.drive(&first, shared).await {
        session.finish(Some(&f), shared);
        let last = session.last_completion;
        ending.stage = Stage::Counted;
        return last;
    }
    phase.done();

    let mut steady_rx = shared.steady.clone();
    let steady = match tokio::time::timeout_at(
        shared.connect_deadline + Duration::from_secs(1),
        steady_rx.wait_for(|s| s.is_some()),
    )
    .await
    {
        Ok(Ok(s)) => s.unwrap_or_else(|| unreachable!("wait_for returned a None")),
        // The barrier never opened (cannot happen unless the runner died): end cleanly.
        _ => {
            session.finish(None, shared);
            let last = session.last_completion;
            ending.stage = Stage::Counted;
            return last;
        }
    };
    let plan = steady_plan(config, &steady, conn, connect_start);
    let result = session.drive(&plan, shared).await;
    session.finish(result.as_ref().err(), shared);
    let last = session.last_completion;
    // Counted now: being aborted during the close below must not count it again.
    let Stage::Session(session) = std::mem::replace(&mut ending.stage, Stage::Counted) else {
        return last;
    };
    // Close our side first; the server then sees a clean EOF.
    let mut stream = session.stream;
    let _ = stream.shutdown().await;
    last
}
