//! The fault suite of `harness check --faults`: the server reached through the fault proxy
//! (`faults`). Under slicing, latency and bandwidth limits every echo must still be exact and
//! every session end with EOF; under resets, FINs and stalls mid-stream the server must reap every
//! child, leak no descriptor, end stalled sessions when its idle timeout says, and leave nothing
//! behind when it is stopped. Each case is one check result (one JUnit test case), independent of
//! the others, with a one-line detail that names the numbers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::faults::{FaultPlan, FaultProxy, ProxyCounts};
use crate::probe::case_support::timed_case;
use crate::probe::checks::wait_until;
use crate::probe::client;
use crate::report::check::{CheckResult, CheckStatus};
use crate::subject::process::{ServerProcess, READY_TIMEOUT};
use crate::subject::spec::ServerSpec;
use crate::sys::procfs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCase {
    SlicedEchoExact,
    DelayedEchoExact,
    ThrottledEchoExact,
    ResetMidStreamReaped,
    CloseMidEchoReaped,
    StallEndedByIdleTimeout,
    ShutdownLeavesNothing,
}

impl FaultCase {
    /// Every case, in the order `harness check --faults` runs them.
    pub const ALL: [FaultCase; 7] = [
        FaultCase::SlicedEchoExact,
        FaultCase::DelayedEchoExact,
        FaultCase::ThrottledEchoExact,
        FaultCase::ResetMidStreamReaped,
        FaultCase::CloseMidEchoReaped,
        FaultCase::StallEndedByIdleTimeout,
        FaultCase::ShutdownLeavesNothing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultCase::SlicedEchoExact => "faults_sliced_echo_exact",
            FaultCase::DelayedEchoExact => "faults_delayed_echo_exact",
            FaultCase::ThrottledEchoExact => "faults_throttled_echo_exact",
            FaultCase::ResetMidStreamReaped => "faults_reset_mid_stream_reaped",
            FaultCase::CloseMidEchoReaped => "faults_close_mid_echo_reaped",
            FaultCase::StallEndedByIdleTimeout => "faults_stall_ended_by_idle_timeout",
            FaultCase::ShutdownLeavesNothing => "faults_shutdown_leaves_nothing",
        }
    }
}

/// A case's verdict: pass with a note, fail with why, skip with why.
type Verdict = (CheckStatus, Option<String>);

/// How long the server's tree may take to settle after the clients are gone.
const SETTLE: Duration = Duration::from_secs(5);
/// Connections each cutting case makes.
const CUT_CLIENTS: usize = 10;
/// Bytes each direction forwards before a cut.
const CUT_AFTER: usize = 1500;

/// Runs every fault case; `shared` serves every case that does not need a server of its own.
pub fn run_fault_cases(spec: &ServerSpec, shared: &mut ServerProcess) -> Vec<CheckResult> {
    FaultCase::ALL
        .iter()
        .map(|&case| timed_case(case.name(), || run_case(case, spec, shared)))
        .collect()
}

fn run_case(case: FaultCase, spec: &ServerSpec, shared: &mut ServerProcess) -> Verdict {
    let own_spec = spec.with_flag("--port", "0");
    match case {
        FaultCase::StallEndedByIdleTimeout => return stall_ended_by_idle_timeout(&own_spec),
        FaultCase::ShutdownLeavesNothing => return shutdown_leaves_nothing(&own_spec),
        _ => {}
    }
    if let Some(exit) = shared.try_exit() {
        return fail(format!("the server is no longer running ({exit})"));
    }
    let result = match case {
        FaultCase::SlicedEchoExact => exact_through(
            shared,
            "up:slice=1+down:slice=7:1ms",
            Sessions::new(4, 0, 2048),
        ),
        FaultCase::DelayedEchoExact => exact_through(
            shared,
            "up:latency=20ms:10ms+down:latency=20ms:10ms",
            Sessions::new(4, 5, 16 * 1024),
        ),
        FaultCase::ThrottledEchoExact => exact_through(
            shared,
            "up:bandwidth=256KiB+down:bandwidth=256KiB",
            Sessions::new(1, 0, 64 * 1024),
        ),
        FaultCase::ResetMidStreamReaped => cut_and_reaped(shared, "reset-after", "reset"),
        FaultCase::CloseMidEchoReaped => cut_and_reaped(shared, "close-after", "closed"),
        FaultCase::StallEndedByIdleTimeout | FaultCase::ShutdownLeavesNothing => {
            Err("internal: case needs its own server".into())
        }
    };
    match result {
        Ok(note) => (CheckStatus::Pass, Some(note)),
        Err(detail) => fail(detail),
    }
}

fn fail(detail: String) -> Verdict {
    (CheckStatus::Fail, Some(detail))
}

fn start_proxy(server: SocketAddr, faults: &[&str]) -> Result<FaultProxy, String> {
    let specs: Vec<String> = faults.iter().map(|s| s.to_string()).collect();
    // A fixed seed: the same connections get the same draws on every run.
    let plan = FaultPlan::parse(&specs, 1).map_err(|e| format!("internal: {e}"))?;
    let listen = SocketAddr::new(server.ip(), 0);
    FaultProxy::start(listen, server, plan).map_err(|e| format!("cannot start the proxy: {e}"))
}

/// Waits until the proxy has closed every connection, so a case ends with nothing in flight.
fn proxy_drained(proxy: &FaultProxy) -> Result<ProxyCounts, String> {
    let mut counts = proxy.counts();
    if !wait_until(SETTLE, || {
        counts = proxy.counts();
        counts.open == 0
    }) {
        return Err(format!(
            "{} of {} proxied sessions still open {}s after their clients finished",
            counts.open,
            counts.connections,
            SETTLE.as_secs()
        ));
    }
    Ok(counts)
}

/// What each session of [`exact_through`] does.
#[derive(Debug, Clone, Copy)]
struct Sessions {
    clients: usize,
    /// Request-response round trips of 100 bytes first.
    echoes: usize,
    /// Then this many bytes written while reading, a half-close, and everything read to EOF.
    stream_bytes: usize,
}

impl Sessions {
    fn new(clients: usize, echoes: usize, stream_bytes: usize) -> Sessions {
        Sessions {
            clients,
            echoes,
            stream_bytes,
        }
    }
}

/// `sessions` through `faults`: every byte must come back exact, and every session end in EOF.
fn exact_through(
    server: &ServerProcess,
    faults: &str,
    sessions: Sessions,
) -> Result<String, String> {
    let Sessions {
        clients,
        echoes,
        stream_bytes,
    } = sessions;
    let proxy = start_proxy(server.addr(), &[faults])?;
    let started = Instant::now();
    let mut slowest_echo = Duration::ZERO;
    for i in 0..clients {
        let mut stream = client::connect(proxy.addr()).map_err(|e| format!("client {i}: {e}"))?;
        for k in 0..echoes {
            let sent = Instant::now();
            client::echo(&mut stream, &client::payload_for(i * 100 + k, 100))
                .map_err(|e| format!("client {i} echo {k} through {faults}: {e}"))?;
            slowest_echo = slowest_echo.max(sent.elapsed());
        }
        let payload: Vec<u8> = (0..stream_bytes).map(|b| (b + i) as u8).collect();
        write_half_close_read_all(&mut stream, &payload)
            .map_err(|e| format!("client {i} through {faults}: {e}"))?;
    }
    let elapsed = started.elapsed();
    let counts = proxy_drained(&proxy)?;
    let mut note = format!(
        "{clients} sessions through {faults} exact and ended by EOF in {:.2}s ({} slices, {} chunks delayed)",
        elapsed.as_secs_f64(),
        counts.slices,
        counts.delayed_chunks
    );
    if echoes > 0 {
        note.push_str(&format!(
            "; slowest round trip {:.0} ms",
            slowest_echo.as_secs_f64() * 1000.0
        ));
    }
    Ok(note)
}

/// Writes `payload` from a second thread while this one reads (a server that echoes as it reads
/// must never deadlock a client), half-closes, and expects exactly `payload` back, then EOF.
fn write_half_close_read_all(stream: &mut TcpStream, payload: &[u8]) -> Result<(), String> {
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let to_send = payload.to_vec();
    let sender = std::thread::spawn(move || {
        writer
            .write_all(&to_send)
            .and_then(|()| writer.shutdown(Shutdown::Write))
            .map_err(|e| format!("write {} bytes and half-close: {e}", to_send.len()))
    });
    let mut got = Vec::with_capacity(payload.len());
    let read = read_to_eof(stream, &mut got);
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err("writer thread panicked".into()));
    sent?;
    read.map_err(|e| format!("{e} ({} of {} bytes back)", got.len(), payload.len()))?;
    client::compare(payload, &got)
}

/// Reads until EOF into `got`; an error or a timeout comes back as text.
fn read_to_eof(stream: &mut TcpStream, got: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if client::is_timeout(&e) => {
                return Err(format!("no EOF within {}s", client::IO_TIMEOUT.as_secs()))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The server's children and open descriptors before a case, to hold the end against (zombies
/// an earlier case left are that case's finding, not this one's).
struct TreeBaseline {
    live: Vec<i32>,
    zombies: Vec<i32>,
    fds: usize,
}

impl TreeBaseline {
    fn take(server: &ServerProcess) -> Result<TreeBaseline, String> {
        // One clean session first, so lazily opened descriptors are in the baseline.
        client::round_trip(server.addr(), b"warm-up")?;
        let pid = server.pid();
        let census = procfs::census(pid).map_err(|e| format!("reading /proc: {e}"))?;
        let fds = procfs::open_fd_count(pid).map_err(|e| format!("reading /proc/{pid}/fd: {e}"))?;
        Ok(TreeBaseline {
            live: census.live,
            zombies: census.zombies,
            fds,
        })
    }

    /// Waits up to `within` for every child not in the baseline to be gone, no zombie, and the
    /// descriptors back at (or below) the baseline; otherwise says what is left.
    fn settled(&self, server: &ServerProcess, within: Duration) -> Result<(), String> {
        let pid = server.pid();
        let (mut live, mut zombies, mut fds) = (Vec::new(), Vec::new(), self.fds);
        let settled = wait_until(within, || {
            let Ok(now) = procfs::census(pid) else {
                return false;
            };
            live = now
                .live
                .into_iter()
                .filter(|p| !self.live.contains(p))
                .collect();
            zombies = now
                .zombies
                .into_iter()
                .filter(|p| !self.zombies.contains(p))
                .collect();
            fds = procfs::open_fd_count(pid).unwrap_or(usize::MAX);
            live.is_empty() && zombies.is_empty() && fds <= self.fds
        });
        if settled {
            return Ok(());
        }
        let mut left = Vec::new();
        if !live.is_empty() {
            left.push(format!("{} children still running", live.len()));
        }
        if !zombies.is_empty() {
            left.push(format!(
                "{} zombies (pids {})",
                zombies.len(),
                pids(&zombies)
            ));
        }
        if fds > self.fds {
            left.push(format!(
                "the server's open fds went from {} to {fds} (+{})",
                self.fds,
                fds - self.fds
            ));
        }
        Err(left.join(", "))
    }
}

fn pids(pids: &[i32]) -> String {
    let shown: Vec<String> = pids.iter().take(5).map(|p| p.to_string()).collect();
    shown.join(", ") + if pids.len() > 5 { ", ..." } else { "" }
}

/// `CUT_CLIENTS` sessions cut by `toxic` (`reset-after` or `close-after`) after `CUT_AFTER` bytes
/// of echo: each client gets at most that much back and then the cut; afterwards the server's
/// children are reaped, its descriptors are back where they were, and it still echoes.
fn cut_and_reaped(server: &ServerProcess, toxic: &str, done: &str) -> Result<String, String> {
    let baseline = TreeBaseline::take(server)?;
    let faults = format!("down:{toxic}={CUT_AFTER}");
    let proxy = start_proxy(server.addr(), &[faults.as_str()])?;
    for i in 0..CUT_CLIENTS {
        let mut stream = client::connect(proxy.addr()).map_err(|e| format!("client {i}: {e}"))?;
        let payload = client::payload_for(i, 4 * CUT_AFTER);
        let mut got = Vec::new();
        // A cut is the expected end here: an error or an EOF, after the budget at most.
        let _ = stream.write_all(&payload);
        let _ = read_to_eof(&mut stream, &mut got);
        if got.len() > CUT_AFTER || client::compare(&payload[..got.len()], &got).is_err() {
            return Err(format!(
                "client {i} got {} bytes back through {faults}, not the first {CUT_AFTER} or fewer of its own",
                got.len()
            ));
        }
    }
    let counts = proxy_drained(&proxy)?;
    let cuts = counts.resets + counts.closes;
    if cuts != CUT_CLIENTS as u64 {
        return Err(format!(
            "internal: the proxy cut {cuts} of {CUT_CLIENTS} sessions"
        ));
    }
    baseline.settled(server, SETTLE).map_err(|left| {
        format!(
            "{}s after {CUT_CLIENTS} sessions were {done} mid-echo: {left}",
            SETTLE.as_secs()
        )
    })?;
    client::round_trip(server.addr(), b"still there?")
        .map_err(|e| format!("after {CUT_CLIENTS} sessions were {done} mid-echo: {e}"))?;
    Ok(format!(
        "{CUT_CLIENTS} sessions {done} after {CUT_AFTER} bytes of echo; every child reaped, {} fds before and after",
        baseline.fds
    ))
}

/// Sessions each own-server case stalls.
const STALLED: usize = 6;

/// Connects `n` clients through `proxy`, each writing `bytes` (a stalled path may refuse part of
/// it: the write gives up after 200 ms), and waits for the proxy to stall them all and, for a
/// contract server (one child per connection), for their `n` children.
fn stalled_clients(
    server: &ServerProcess,
    spec: &ServerSpec,
    proxy: &FaultProxy,
    n: usize,
    bytes: usize,
) -> Result<Vec<TcpStream>, String> {
    let children = if spec.speaks_contract() { n } else { 0 };
    let before = procfs::census(server.pid())
        .map_err(|e| format!("reading /proc: {e}"))?
        .live;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = client::connect(proxy.addr()).map_err(|e| format!("client {i}: {e}"))?;
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = stream.write_all(&client::payload_for(i, bytes));
        clients.push(stream);
    }
    let mut new = 0;
    let appeared = wait_until(SETTLE, || {
        new = procfs::census(server.pid())
            .map_or(0, |c| c.live.iter().filter(|p| !before.contains(p)).count());
        new >= children && proxy.counts().stalls >= n as u64
    });
    if !appeared {
        return Err(format!(
            "{new} new children and {} stalls for {n} sessions through the proxy",
            proxy.counts().stalls
        ));
    }
    Ok(clients)
}

/// With `--idle-timeout 1`, sessions stalled mid-echo (half of them client to server, half
/// server to client) end within the timeout and a few seconds: their children reaped, no fd left.
fn stall_ended_by_idle_timeout(spec: &ServerSpec) -> Verdict {
    if !spec.speaks_contract() {
        let why = "needs the fork echo server's --idle-timeout flag";
        return (CheckStatus::Skip, Some(why.into()));
    }
    if !spec.supports_flag("--idle-timeout") {
        let why = "the server has no --idle-timeout flag: a stalled session holds its child until its client leaves";
        return (CheckStatus::Skip, Some(why.into()));
    }
    let server = match ServerProcess::spawn(&spec.with_flag("--idle-timeout", "1"), READY_TIMEOUT) {
        Ok(server) => server,
        Err(e) => {
            return fail(format!(
                "could not start a server with --idle-timeout 1: {e}"
            ))
        }
    };
    let result = (|| {
        let baseline = TreeBaseline::take(&server)?;
        let faults = ["up:stall-after=100@0.5", "down:stall-after=100@0.5"];
        let proxy = start_proxy(server.addr(), &faults)?;
        let clients = stalled_clients(&server, spec, &proxy, STALLED, 300)?;
        let stalled_at = Instant::now();
        let within = Duration::from_secs(1) + SETTLE;
        baseline.settled(&server, within).map_err(|left| {
            format!(
                "{}s after {STALLED} sessions stalled with --idle-timeout 1: {left}",
                within.as_secs()
            )
        })?;
        let took = stalled_at.elapsed();
        drop(clients);
        let per_profile = proxy.counts().per_profile;
        Ok(format!(
            "{STALLED} stalled sessions ({} client to server, {} server to client) ended {:.1}s after the stall",
            per_profile.first().unwrap_or(&0),
            per_profile.get(1).unwrap_or(&0),
            took.as_secs_f64()
        ))
    })();
    match result {
        Ok(note) => (CheckStatus::Pass, Some(note)),
        Err(detail) => fail(detail),
    }
}

/// SIGTERM to a server whose sessions are stalled mid-echo (its children blocked on a peer that
/// reads nothing): it exits (with 0 for a contract server) and nothing of its session is left.
fn shutdown_leaves_nothing(spec: &ServerSpec) -> Verdict {
    let (spec, exit_wait) = if spec.supports_flag("--shutdown-grace") {
        (
            spec.with_flag("--shutdown-grace", "1"),
            Duration::from_secs(6),
        )
    } else {
        (spec.clone(), Duration::from_secs(15))
    };
    let mut server = match ServerProcess::spawn(&spec, READY_TIMEOUT) {
        Ok(server) => server,
        Err(e) => return fail(format!("could not start a server: {e}")),
    };
    let proxy = match start_proxy(server.addr(), &["down:stall-after=0"]) {
        Ok(proxy) => proxy,
        Err(e) => return fail(e),
    };
    let clients = match stalled_clients(&server, &spec, &proxy, STALLED, 1 << 20) {
        Ok(clients) => clients,
        Err(e) => return fail(e),
    };
    if let Err(e) = server.signal(Signal::SIGTERM) {
        return fail(format!("cannot send SIGTERM: {e}"));
    }
    let Some(exit) = server.wait_exit(exit_wait) else {
        return fail(format!(
            "the server was still running {}s after SIGTERM with {STALLED} stalled sessions",
            exit_wait.as_secs()
        ));
    };
    let left = server.leftovers(Duration::from_secs(3));
    drop(clients);
    if !left.orphans.is_empty() {
        return fail(format!(
            "after SIGTERM with {STALLED} stalled sessions the server exited ({exit}) but {} of its processes still run 3s later (orphans, pids {})",
            left.orphans.len(),
            pids(&left.orphans)
        ));
    }
    if spec.speaks_contract() && !exit.success() {
        return fail(format!(
            "after SIGTERM the server ended with {exit}, expected exit code 0"
        ));
    }
    let note = format!("{exit} with {STALLED} stalled sessions; nothing left after it");
    (CheckStatus::Pass, Some(note))
}
