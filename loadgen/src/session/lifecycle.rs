//! A connection's life as a tokio task: the plain one (ramp-up slot, connect, first echo, the
//! barrier, the measured phase, close) and the pieces a staged connection (`staged`) shares with
//! it: connecting and counting how that went, and the close.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::session::connect::{connect, count_connect};
use crate::session::echo::{Ending, EstablishedGuard, PhaseGuard, Session, Stage, BARRIER_GRACE};
use crate::session::plan::{first_plan, ramp_slot, source_of, steady_plan};
use crate::session::shared::RunShared;

/// Runs connection number `conn` from ramp-up to close. Returns when its last echo completed.
pub(super) async fn connection(shared: Arc<RunShared>, conn: u64) -> Option<Instant> {
    let shared = &*shared;
    let config = &shared.config;
    let mut phase = PhaseGuard(Some(shared));
    let mut ending = Ending {
        shared,
        stage: Stage::Waiting,
    };
    if let Some(slot) = ramp_slot(shared, conn) {
        tokio::time::sleep_until(slot).await;
    }
    let (stream, connect_start) = establish(shared, conn, &mut ending).await?;
    shared.stats.connection_opened();
    let _established = EstablishedGuard(shared);
    ending.stage = Stage::Session(Box::new(Session::new(stream, conn, config)));
    let Stage::Session(session) = &mut ending.stage else {
        unreachable!("the stage was set just above")
    };

    let first = first_plan(shared, connect_start);
    if let Err(f) = session.drive(&first, shared).await {
        session.finish(Some(&f), shared);
        let last = session.last_completion;
        ending.stage = Stage::Counted;
        return last;
    }
    phase.done();

    let mut steady_rx = shared.steady.clone();
    let steady = match tokio::time::timeout_at(
        shared.connect_deadline + BARRIER_GRACE,
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
    close(&mut ending).await
}

/// Ends a session that has counted itself: closes our side first (the server then sees a clean
/// EOF) and returns when its last echo completed.
pub(super) async fn close(ending: &mut Ending<'_, TcpStream>) -> Option<Instant> {
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
    ending: &mut Ending<'_, TcpStream>,
) -> Option<(TcpStream, Instant)> {
    let config = &shared.config;
    ending.stage = Stage::Connecting;
    shared.stats.local().counters.connections_attempted += 1;
    let connect_start = Instant::now();
    let result = connect(config.addr, source_of(config, conn), config.connect_timeout).await;
    let Some(stream) = count_connect(shared, connect_start, result) else {
        ending.stage = Stage::Counted;
        return None;
    };
    Some((stream, connect_start))
}
