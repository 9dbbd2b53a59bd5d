//! A connection's life as a task: the plain one (ramp-up slot, connect, first echo, the barrier,
//! the measured phase, close) and the pieces a staged connection (`staged`) shares with it:
//! connecting and counting how that went, the open-loop schedule, and the close.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::stages::StageUnit;
use crate::session::connect::{connect, ConnectFailure};
use crate::session::echo::{
    micros, Ending, EstablishedGuard, PhaseGuard, Plan, RunShared, Schedule, Session, Stage,
};
use crate::Config;

/// Runs connection number `conn` from ramp-up to close. Returns when its last echo completed.
pub(super) async fn connection(shared: Arc<RunShared>, conn: u64) -> Option<Instant> {
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
    let (stream, connect_start) = establish(shared, conn, &mut ending).await?;
    shared.stats.connection_opened();
    let _established = EstablishedGuard(shared);
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
    let schedule = open_loop_schedule(config, conn, steady.schedule_start);
    let plan = Plan {
        limit: config.messages,
        send_until: steady.send_until,
        schedule,
        measure_start: Some(steady.measure_start),
        deadline: steady.deadline,
        connect_start,
        uncorrected: config.rate.is_some(),
    };
    let result = session.drive(&plan, shared).await;
    session.finish(result.as_ref().err(), shared);
    close(&mut ending).await
}

/// The open-loop schedule of connection `conn` from `start`: `--rate` spread evenly, or the
/// rate `--stages`; `None` in closed loop.
fn open_loop_schedule(config: &Config, conn: u64, start: Instant) -> Option<Schedule> {
    if let Some(stages) = config
        .stages
        .as_ref()
        .filter(|s| s.unit == StageUnit::MessagesPerSec)
    {
        return Some(Schedule::Staged {
            start,
            stages: stages.clone(),
            conns: config.conns as u64,
            conn,
        });
    }
    let rate = config.rate?;
    let interval = config.conns as f64 / rate;
    // Spread connections evenly over one interval so the total rate is smooth.
    let offset = interval * (conn as f64 / config.conns as f64);
    Some(Schedule::Even {
        first: start + Duration::from_secs_f64(offset),
        interval,
    })
}

/// Ends a session that has counted itself: closes our side first (the server then sees a clean
/// EOF) and returns when its last echo completed.
pub(super) async fn close(ending: &mut Ending<'_>) -> Option<Instant> {
    let Stage::Session(session) = &ending.stage else {
        return None;
    };
    let last = session.last_completion;
    // Counted already: being aborted during the close below must not count it again.
    let Stage::Session(session) = std::mem::replace(&mut ending.stage, Stage::Counted) else {
        return last;
    };
    let mut stream = session.stream;
    let _ = stream.shutdown().await;
    last
}

/// Connects connection `conn` and records how that went; `None` when it failed (counted).
pub(super) async fn establish(
    shared: &RunShared,
    conn: u64,
    ending: &mut Ending<'_>,
) -> Option<(TcpStream, Instant)> {
    let config = &shared.config;
    ending.stage = Stage::Connecting;
    shared.stats.local().counters.connections_attempted += 1;
    let source = (!config.source_ips.is_empty())
        .then(|| config.source_ips[conn as usize % config.source_ips.len()]);
    let connect_start = Instant::now();
    let result = connect(config.addr, source, config.connect_timeout).await;
    let now = Instant::now();
    let second = now.duration_since(shared.t0).as_secs();
    let stream = {
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
                ending.stage = Stage::Counted;
                return None;
            }
            Ok(stream) => {
                shard.counters.connections_established += 1;
                let at_us = micros(now.duration_since(shared.t0));
                shard.record_connect(at_us, micros(now.duration_since(connect_start)));
                shard.second(second).established += 1;
                stream
            }
        }
    };
    Some((stream, connect_start))
}
