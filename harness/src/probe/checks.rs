//! The named correctness cases of `harness check` (and the quick subset `harness run` starts with).
//! Each case is independent, returns pass / fail / skip with a one-line detail that names the
//! numbers, and never stops the others: a case that finds the shared server dead fails, and the
//! rest still run. Cases that end a server (SIGTERM, SIGKILL) or need a flag (idle timeout) start
//! their own instance.

use std::time::Duration;

use nix::sys::signal::Signal;

pub use crate::probe::case_support::wait_until;
use crate::probe::case_support::{
    census, connect_and_echo, pid_list, timed_case, trip_past_exiting_children, Outcome,
};
use crate::probe::client;
use crate::probe::own_server_checks::{
    idle_client_ended, killed_leaves_no_orphans, per_source_limit,
};
use crate::report::check::{CheckOptions, CheckResult, CheckStatus};
use crate::subject::process::ServerProcess;
use crate::subject::spec::ServerSpec;
use crate::sys::procfs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    EchoRoundTrip,
    AllByteValues,
    Payload1Mib,
    HalfClose,
    RstCloseReaped,
    ConcurrentClients,
    ChildrenReaped,
    ParentFdsStable,
    SurvivesVanishingClients,
    IdleClientEnded,
    PerSourceLimit,
    SigtermNoOrphans,
    SigkillNoOrphans,
}

impl Case {
    /// Every case, in the order `harness check` runs them.
    pub const ALL: [Case; 13] = [
        Case::EchoRoundTrip,
        Case::AllByteValues,
        Case::Payload1Mib,
        Case::HalfClose,
        Case::RstCloseReaped,
        Case::ConcurrentClients,
        Case::ChildrenReaped,
        Case::ParentFdsStable,
        Case::SurvivesVanishingClients,
        Case::IdleClientEnded,
        Case::PerSourceLimit,
        Case::SigtermNoOrphans,
        Case::SigkillNoOrphans,
    ];

    /// The subset `harness run` checks on the server it is about to load (no case that ends it).
    pub const QUICK: [Case; 6] = [
        Case::EchoRoundTrip,
        Case::AllByteValues,
        Case::HalfClose,
        Case::ConcurrentClients,
        Case::ChildrenReaped,
        Case::ParentFdsStable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::EchoRoundTrip => "echo_round_trip",
            Case::AllByteValues => "all_byte_values",
            Case::Payload1Mib => "payload_1mib",
            Case::HalfClose => "half_close",
            Case::RstCloseReaped => "rst_close_reaped",
            Case::ConcurrentClients => "concurrent_clients",
            Case::ChildrenReaped => "children_reaped",
            Case::ParentFdsStable => "parent_fds_stable",
            Case::SurvivesVanishingClients => "survives_vanishing_clients",
            Case::IdleClientEnded => "idle_client_ended",
            Case::PerSourceLimit => "per_source_limit",
            Case::SigtermNoOrphans => "sigterm_no_orphans",
            Case::SigkillNoOrphans => "sigkill_no_orphans",
        }
    }

    /// Whether the case starts its own server instead of using the shared one.
    fn own_server(self) -> bool {
        matches!(
            self,
            Case::IdleClientEnded
                | Case::PerSourceLimit
                | Case::SigtermNoOrphans
                | Case::SigkillNoOrphans
        )
    }
}

/// How long a case waits for the server's process tree to settle.
const SETTLE: Duration = Duration::from_secs(5);

/// Runs `cases` in order; `shared` serves every case that does not need its own server.
pub fn run_cases(
    cases: &[Case],
    spec: &ServerSpec,
    shared: &mut ServerProcess,
    opts: &CheckOptions,
) -> Vec<CheckResult> {
    cases
        .iter()
        .map(|&case| {
            timed_case(case.name(), || {
                let outcome = if case.own_server() {
                    run_own(case, spec)
                } else if let Some(exit) = shared.try_exit() {
                    Outcome::Fail(format!("the server is no longer running ({exit})"))
                } else {
                    run_shared(case, spec, shared, opts)
                };
                match outcome {
                    Outcome::Pass(detail) => (CheckStatus::Pass, detail),
                    Outcome::Fail(detail) => (CheckStatus::Fail, Some(detail)),
                    Outcome::Skip(detail) => (CheckStatus::Skip, Some(detail)),
                }
            })
        })
        .collect()
}

fn run_shared(
    case: Case,
    spec: &ServerSpec,
    server: &mut ServerProcess,
    opts: &CheckOptions,
) -> Outcome {
    // Each case starts on a server that holds no children of the cases before it: a child still
    // exiting holds its slot, so under `--max-children N --at-limit close` this case's first
    // clients could be closed at once (the server lowers its children's priority, so on a busy
    // machine an exit can wait a while for the CPU). Whether children go at all is
    // `children_reaped`'s question, so this wait is bounded and its outcome ignored.
    let _ = wait_until(SETTLE, || {
        census(server).is_ok_and(|now| now.live.is_empty() && now.zombies.is_empty())
    });
    let result = match case {
        Case::EchoRoundTrip => {
            client::round_trip(server.addr(), b"hello, fork server\n").map(|_| None)
        }
        Case::AllByteValues => {
            let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
            client::round_trip(server.addr(), &bytes).map(|_| None)
        }
        Case::Payload1Mib => payload_1mib(server),
        Case::HalfClose => {
            client::half_close(server.addr(), &client::payload_for(0, 64 * 1024)).map(|_| None)
        }
        Case::RstCloseReaped => rst_close_reaped(spec, server),
        Case::ConcurrentClients => concurrent_clients(spec, server, opts.clients),
        Case::ChildrenReaped => children_reaped(server, opts.clients),
        Case::ParentFdsStable => parent_fds_stable(server, opts.fd_connections),
        Case::SurvivesVanishingClients => survives_vanishing_clients(server),
        Case::IdleClientEnded
        | Case::PerSourceLimit
        | Case::SigtermNoOrphans
        | Case::SigkillNoOrphans => Err("internal: case needs its own server".into()),
    };
    match result {
        Ok(note) => Outcome::Pass(note),
        Err(detail) => Outcome::Fail(detail),
    }
}

/// The cases that start their own instance live in `own_server_checks`.
fn run_own(case: Case, spec: &ServerSpec) -> Outcome {
    // The shared server may hold a port the user chose; a second instance takes a free one.
    let spec = &spec.with_flag("--port", "0");
    match case {
        Case::IdleClientEnded => idle_client_ended(spec),
        Case::PerSourceLimit => per_source_limit(spec),
        Case::SigtermNoOrphans => killed_leaves_no_orphans(spec, Signal::SIGTERM),
        Case::SigkillNoOrphans => killed_leaves_no_orphans(spec, Signal::SIGKILL),
        _ => Outcome::Fail("internal: case uses the shared server".into()),
    }
}

fn payload_1mib(server: &ServerProcess) -> Result<Option<String>, String> {
    let payload = client::payload_for(1, 1 << 20);
    let mut stream = client::connect(server.addr())?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let to_send = payload.clone();
    // Written from a second thread while this one reads: a server that echoes as it reads would
    // deadlock a client that wrote everything first.
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        writer
            .write_all(&to_send)
            .map_err(|e| format!("write 1 MiB: {e}"))
    });
    let got = client::read_n(&mut stream, payload.len());
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err("writer thread panicked".into()));
    let got = got?;
    sent?;
    client::compare(&payload, &got).map(|_| None)
}

fn rst_close_reaped(spec: &ServerSpec, server: &ServerProcess) -> Result<Option<String>, String> {
    let before = census(server)?.live;
    let mut stream = client::connect(server.addr())?;
    client::echo(&mut stream, b"reset me")?;
    let new = new_children(server, &before)?;
    client::close_with_reset(stream);
    if new.is_empty() {
        return if spec.speaks_contract() {
            Err("no child process appeared for the connection".into())
        } else {
            Ok(Some(
                "the server runs no child per connection; nothing to reap".into(),
            ))
        };
    }
    let pid = server.pid();
    let reaped = wait_until(SETTLE, || {
        new.iter()
            .all(|&c| procfs::read_stat(c).is_none_or(|s| s.ppid != pid))
    });
    if reaped {
        return Ok(None);
    }
    let states: Vec<String> = new
        .iter()
        .filter_map(|&c| procfs::read_stat(c).filter(|s| s.ppid == pid))
        .map(|s| {
            if s.is_zombie() {
                format!("child {} exited but was not reaped (zombie)", s.pid)
            } else {
                format!("child {} still running (state {})", s.pid, s.state)
            }
        })
        .collect();
    Err(format!(
        "{} {}s after the client reset the connection",
        states.join(", "),
        SETTLE.as_secs()
    ))
}

/// Live children of the server that were not in `before`.
fn new_children(server: &ServerProcess, before: &[i32]) -> Result<Vec<i32>, String> {
    Ok(census(server)?
        .live
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect())
}

fn concurrent_clients(
    spec: &ServerSpec,
    server: &ServerProcess,
    n: usize,
) -> Result<Option<String>, String> {
    // Children still exiting from earlier cases are in `before` and do not count.
    let before = census(server)?.live;
    let clients = connect_and_echo(server, n)?;
    let mut new = new_children(server, &before)?.len();
    if !spec.speaks_contract() && new == 0 {
        drop(clients);
        return Ok(Some(format!(
            "{n} clients echoed; the server runs no child per connection, so no child count"
        )));
    }
    let settled = wait_until(SETTLE, || {
        new = new_children(server, &before).map_or(usize::MAX, |c| c.len());
        new == n
    });
    drop(clients);
    if settled {
        Ok(None)
    } else {
        Err(format!(
            "/proc shows {new} new live children with {n} clients connected (expected {n})"
        ))
    }
}

fn children_reaped(server: &ServerProcess, n: usize) -> Result<Option<String>, String> {
    let before = census(server)?.live;
    let clients = connect_and_echo(server, n)?;
    let ours = new_children(server, &before)?;
    drop(clients);
    let (mut still_live, mut zombies) = (Vec::new(), Vec::new());
    let settled = wait_until(SETTLE, || {
        let Ok(now) = census(server) else {
            return false;
        };
        still_live = ours
            .iter()
            .copied()
            .filter(|p| now.live.contains(p))
            .collect();
        zombies = now.zombies;
        still_live.is_empty() && zombies.is_empty()
    });
    if settled {
        return Ok(Some(format!("{} children gone, no zombie", ours.len())));
    }
    let mut detail = format!(
        "{}s after {n} clients closed: {} of their {} children still running, {} zombies",
        SETTLE.as_secs(),
        still_live.len(),
        ours.len(),
        zombies.len()
    );
    if !zombies.is_empty() {
        detail.push_str(&format!(" (pids {})", pid_list(&zombies)));
    }
    Err(detail)
}

fn parent_fds_stable(server: &ServerProcess, n: usize) -> Result<Option<String>, String> {
    let pid = server.pid();
    let count = || procfs::open_fd_count(pid).map_err(|e| format!("reading /proc/{pid}/fd: {e}"));
    // One connection first, so lazily opened descriptors are in the baseline.
    trip_past_exiting_children(server, || client::round_trip(server.addr(), b"warm-up"))?;
    let before = count()?;
    for i in 0..n {
        let payload = client::payload_for(i, 16);
        trip_past_exiting_children(server, || client::round_trip(server.addr(), &payload))
            .map_err(|e| format!("connection {i}: {e}"))?;
    }
    let mut after = before;
    // Fewer is fine (a descriptor of the warm-up connection may still have been open); a leak
    // only ever adds.
    let settled = wait_until(SETTLE, || {
        after = count().unwrap_or(usize::MAX);
        after <= before
    });
    if settled {
        Ok(Some(format!(
            "{before} open fds before and after {n} connections"
        )))
    } else {
        Err(format!(
            "the server's open fds went from {before} to {after} ({:+}) over {n} connections",
            after as i64 - before as i64
        ))
    }
}

fn survives_vanishing_clients(server: &mut ServerProcess) -> Result<Option<String>, String> {
    use std::io::Write;
    const CLIENTS: usize = 10;
    let chunk = client::payload_for(7, 1 << 20);
    for i in 0..CLIENTS {
        let mut stream = client::connect(server.addr()).map_err(|e| format!("client {i}: {e}"))?;
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        // Writes until the buffers are full (the client never reads), then vanishes with a reset.
        let _ = stream.write_all(&chunk);
        client::close_with_reset(stream);
    }
    if let Some(exit) = server.try_exit() {
        return Err(format!(
            "the server died after {CLIENTS} clients vanished mid-write ({exit})"
        ));
    }
    client::round_trip(server.addr(), b"still there?")
        .map_err(|e| format!("after {CLIENTS} clients vanished mid-write: {e}"))?;
    Ok(None)
}
