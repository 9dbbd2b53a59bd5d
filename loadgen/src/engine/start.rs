//! When a run's measured phase starts: waiting for `--start-at` (parsed and checked in
//! `config::start_at`) and a split run's shared barrier (a worker says it has connected and waits
//! for the parent's go).

use std::time::SystemTime;

/// What a worker prints on stdout when its connect phase is over.
pub const CONNECTED_LINE: &str = "loadgen-worker: connected";

/// Waits until `start_at` (if it is later than `now`) and returns the instant the measured
/// phase may begin: the barrier itself when there is no start time or it has passed.
pub(crate) async fn hold_until_start_at(
    start_at: Option<SystemTime>,
    barrier: tokio::time::Instant,
) -> tokio::time::Instant {
    let Some(start_at) = start_at else {
        return barrier;
    };
    match start_at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            let at = tokio::time::Instant::now() + wait;
            tokio::time::sleep_until(at).await;
            at.max(barrier)
        }
        Err(_) => barrier,
    }
}

/// The worker's side of the shared barrier: when `enabled`, says [`CONNECTED_LINE`] on stdout
/// and waits for a line (or end of file) on stdin. Returns when the measured phase may begin.
pub(crate) async fn wait_for_go(
    enabled: bool,
    connected: tokio::time::Instant,
) -> tokio::time::Instant {
    if !enabled {
        return connected;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{CONNECTED_LINE}").and_then(|_| out.flush());
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)
    })
    .await;
    tokio::time::Instant::now().max(connected)
}
