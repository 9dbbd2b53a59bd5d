//! A connection of a `--stages` load of connections: it is opened and closed as the plan's
//! count ramps past it (`Stages::open_spans`), possibly several times, and in between runs the
//! closed loop like any session. Each opening is one connection in the counters (attempted,
//! established, and so on), its first echo a first echo.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::session::echo::{Ending, EstablishedGuard, Plan, RunShared, Session, Stage, Steady};
use crate::session::lifecycle::{close, establish};

/// Runs connection slot `conn` through every span the plan keeps it open. Returns when its last
/// echo completed.
pub(crate) async fn connection(shared: Arc<RunShared>, conn: u64) -> Option<Instant> {
    let shared = &*shared;
    let stages = shared.config.stages.as_ref()?;
    let mut steady_rx = shared.steady.clone();
    let steady = match steady_rx.wait_for(|s| s.is_some()).await {
        Ok(s) => (*s)?,
        Err(_) => return None,
    };
    let mut last = None;
    for (open, shut) in stages.open_spans(conn) {
        tokio::time::sleep_until(steady.schedule_start + Duration::from_secs_f64(open)).await;
        let until = steady.schedule_start + Duration::from_secs_f64(shut);
        last = last.max(one_span(shared, conn, until, &steady).await);
    }
    last
}

/// One opening of the connection: connect, first echo, closed loop until `until`, close.
async fn one_span(
    shared: &RunShared,
    conn: u64,
    until: Instant,
    steady: &Steady,
) -> Option<Instant> {
    let mut ending = Ending {
        shared,
        stage: Stage::Connecting,
    };
    let (stream, connect_start) = establish(shared, conn, &mut ending).await?;
    shared.stats.connection_opened();
    let _established = EstablishedGuard(shared);
    ending.stage = Stage::Session(Box::new(Session::new(stream, conn, &shared.config)));
    let Stage::Session(session) = &mut ending.stage else {
        unreachable!("the stage was set just above")
    };
    let first = Plan {
        limit: Some(1),
        send_until: None,
        schedule: None,
        measure_start: None,
        deadline: steady.deadline,
        connect_start,
        uncorrected: false,
    };
    let result = match session.drive(&first, shared).await {
        Ok(()) => {
            let plan = Plan {
                limit: None,
                send_until: Some(until),
                schedule: None,
                measure_start: Some(steady.measure_start),
                deadline: steady.deadline,
                connect_start,
                uncorrected: false,
            };
            session.drive(&plan, shared).await
        }
        Err(f) => Err(f),
    };
    session.finish(result.as_ref().err(), shared);
    close(&mut ending).await
}
