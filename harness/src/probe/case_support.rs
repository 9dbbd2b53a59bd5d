//! What the check cases share: their outcome, the server's live children from /proc, and a
//! batch of clients that each echo their own bytes. Apart from `checks` so that the cases with a
//! server of their own (`own_server_checks`) use them without the two files importing each other.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::probe::client;
use crate::report::check::{CheckResult, CheckStatus};
use crate::subject::process::ServerProcess;
use crate::sys::procfs;

pub(super) enum Outcome {
    Pass(Option<String>),
    Fail(String),
    Skip(String),
}

/// Runs one named case on the clock. A case not yet started when Ctrl-C came is skipped, not run.
pub(super) fn timed_case(
    name: &str,
    run: impl FnOnce() -> (CheckStatus, Option<String>),
) -> CheckResult {
    let started = Instant::now();
    let (status, detail) = if loadgen::interrupt::requested() {
        (
            CheckStatus::Skip,
            Some("not run: interrupted by Ctrl-C".into()),
        )
    } else {
        run()
    };
    CheckResult {
        name: name.to_string(),
        status,
        detail,
        duration_secs: started.elapsed().as_secs_f64(),
    }
}

pub(super) fn census(server: &ServerProcess) -> Result<procfs::ChildCensus, String> {
    procfs::census(server.pid()).map_err(|e| format!("reading /proc: {e}"))
}

pub(super) fn pid_list(pids: &[i32]) -> String {
    let shown: Vec<String> = pids.iter().take(5).map(|p| p.to_string()).collect();
    if pids.len() > 5 {
        format!("{}, ...", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

pub(super) fn connect_and_echo(server: &ServerProcess, n: usize) -> Result<Vec<TcpStream>, String> {
    use std::io::Write;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let stream = client::connect(server.addr()).map_err(|e| format!("client {i}: {e}"))?;
        clients.push(stream);
    }
    // Everyone writes first, then everyone reads: each must get back its own bytes only.
    for (i, stream) in clients.iter_mut().enumerate() {
        stream
            .write_all(&client::payload_for(i, 100))
            .map_err(|e| format!("client {i}: write: {e}"))?;
    }
    for (i, stream) in clients.iter_mut().enumerate() {
        let got = client::read_n(stream, 100).map_err(|e| format!("client {i}: {e}"))?;
        client::compare(&client::payload_for(i, 100), &got)
            .map_err(|e| format!("client {i}: {e}"))?;
    }
    Ok(clients)
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One client's round trip made by a case that connects one client after another. A server run
/// with `--max-children N --at-limit close` closes a client at once while N earlier children
/// are still exiting (on a busy machine an exit can wait a while for the CPU): that is the
/// server keeping its limit, not a failed echo. So a trip that fails while children from before
/// it were still alive is made once more, after one of them is gone; a server that fails it
/// again fails the case.
pub(super) fn trip_past_exiting_children(
    server: &ServerProcess,
    trip: impl Fn() -> Result<(), String>,
) -> Result<(), String> {
    // A child that has exited but is not yet reaped (a zombie) still counts against the limit.
    let held = |c: procfs::ChildCensus| c.live.into_iter().chain(c.zombies).collect::<Vec<_>>();
    let earlier = held(census(server)?);
    let first = trip();
    if first.is_ok() || earlier.is_empty() {
        return first;
    }
    let one_left = wait_until(Duration::from_secs(5), || {
        census(server).is_ok_and(|now| {
            let now = held(now);
            earlier.iter().any(|p| !now.contains(p))
        })
    });
    if one_left {
        trip()
    } else {
        first
    }
}
