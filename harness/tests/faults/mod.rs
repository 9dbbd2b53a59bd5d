//! loadgen through the fault proxy: every fault the proxy injects shows up in loadgen's report as
//! the kind it should (never as a mismatch), the per-connection states still add up to `--conns`,
//! and an injected latency is in the measured echo latency. Also `harness check --faults` and
//! `harness soak` against the fork echo server, the careful C server and the broken fixture.

mod suite;
mod tools;

use std::net::SocketAddr;
use std::time::Duration;

use harness::faults::{FaultPlan, FaultProxy, ProxyCounts};
use harness::subject::process::{ServerProcess, READY_TIMEOUT};
use harness::subject::spec::ServerSpec;

use crate::util::fork_lock;

/// The workspace's fork echo server, run from the harness binary as `harness __serve`.
pub fn fork_echo_server(flags: &[&str]) -> ServerProcess {
    let spec = ServerSpec::Contract {
        program: assert_cmd::cargo::cargo_bin("harness"),
        pre_args: vec!["__serve".into(), "--".into()],
        flags: ["--port", "0"]
            .iter()
            .chain(flags)
            .map(|s| s.to_string())
            .collect(),
        builtin: true,
    };
    ServerProcess::spawn(&spec, READY_TIMEOUT).expect("start the fork echo server")
}

fn proxy(server: SocketAddr, faults: &[&str], seed: u64) -> FaultProxy {
    let specs: Vec<String> = faults.iter().map(|s| s.to_string()).collect();
    let plan = FaultPlan::parse(&specs, seed).expect("fault plan");
    FaultProxy::start("127.0.0.1:0".parse().expect("addr"), server, plan).expect("proxy")
}

const CONNS: usize = 20;
const MESSAGES: u64 = 30;
const SIZE: usize = 64;

fn load(addr: SocketAddr, conns: usize, messages: u64) -> loadgen::Report {
    let config = loadgen::Config {
        addr,
        conns,
        duration: None,
        messages: Some(messages),
        size: SIZE,
        io_timeout: Duration::from_secs(1),
        progress: false,
        threads: Some(1),
        ..loadgen::Config::default()
    };
    loadgen::run(config).expect("loadgen runs")
}

/// Which of loadgen's session error kinds a fault must show up as.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `errors.session.reset` equals the proxy's resets.
    Reset,
    /// `errors.session.short_echo` equals the proxy's closes (a FIN in the middle of a message).
    ShortEcho,
    /// `errors.session.closed_early` equals the proxy's closes (a FIN between messages).
    ClosedEarly,
    /// `errors.session.echo_timeout` equals the proxy's stalls.
    EchoTimeout,
    /// Nothing fails: every session completes, every message is verified.
    Clean,
}

fn assert_counts_match(spec: &str, expect: Expect, report: &loadgen::Report, proxy: &ProxyCounts) {
    let c = &report.counters;
    let e = &report.errors.session;
    let context = format!("{spec}: loadgen {c:?} {e:?}; proxy {proxy:?}");
    assert_eq!(e.mismatch, 0, "a fault is never a mismatch: {context}");
    assert_eq!(
        c.connections_not_started
            + c.connections_failed
            + c.sessions_failed
            + c.connections_interrupted
            + c.sessions_completed,
        CONNS as u64,
        "the states add up to --conns: {context}"
    );
    assert_eq!(proxy.connections, CONNS as u64, "{context}");
    let faulted = proxy.faulted();
    assert!(faulted > 0 && faulted < CONNS as u64, "{context}");
    let (kind, injected) = match expect {
        Expect::Reset => (e.reset, proxy.resets),
        Expect::ShortEcho => (e.short_echo, proxy.closes),
        Expect::ClosedEarly => (e.closed_early, proxy.closes),
        Expect::EchoTimeout => (e.echo_timeout, proxy.stalls),
        Expect::Clean => {
            assert_eq!(c.sessions_completed, CONNS as u64, "{context}");
            assert_eq!(c.messages_verified, CONNS as u64 * MESSAGES, "{context}");
            assert_eq!(proxy.resets + proxy.closes + proxy.stalls, 0, "{context}");
            return;
        }
    };
    assert_eq!(
        injected, faulted,
        "every faulted connection was cut: {context}"
    );
    assert_eq!(
        kind, injected,
        "loadgen counted what the proxy did: {context}"
    );
    assert_eq!(e.total(), injected, "and nothing else failed: {context}");
    assert_eq!(c.sessions_failed, injected, "{context}");
    assert_eq!(c.sessions_completed, CONNS as u64 - faulted, "{context}");
}

#[test]
fn loadgen_counts_each_toxic_as_what_the_proxy_injected() {
    let _lock = fork_lock();
    let server = fork_echo_server(&[]);
    // 30 messages of 64 bytes: 1920 bytes each way, so every budget below is reached.
    let cases: [(&str, Expect); 8] = [
        ("down:reset-after=1000@0.5", Expect::Reset),
        ("up:reset-after=1000@0.5", Expect::Reset),
        // 1000 is not a multiple of 64: the FIN lands in the middle of the 16th echo.
        ("down:close-after=1000@0.5", Expect::ShortEcho),
        // 1024 is: the FIN comes after the 16th echo, while the 17th is due.
        ("down:close-after=1024@0.5", Expect::ClosedEarly),
        ("down:stall-after=1000@0.5", Expect::EchoTimeout),
        ("up:stall-after=1000@0.5", Expect::EchoTimeout),
        ("up:slice=1+down:slice=5:1ms@0.5", Expect::Clean),
        (
            "up:latency=2ms:1ms+down:bandwidth=32KiB+down:latency=3ms:3ms@0.5",
            Expect::Clean,
        ),
    ];
    for (spec, expect) in cases {
        let proxy = proxy(server.addr(), &[spec], 7);
        let report = load(proxy.addr(), CONNS, MESSAGES);
        let counts = proxy.stop();
        assert_counts_match(spec, expect, &report, &counts);
        if spec.contains("slice") {
            assert!(counts.slices >= counts.faulted() * MESSAGES, "{counts:?}");
        }
        if spec.contains("latency") {
            assert!(
                counts.delayed_chunks >= counts.faulted() * MESSAGES,
                "{counts:?}"
            );
        }
    }
}

/// The echo p50 through a 50 ms latency toxic is the injected 50 ms plus the p50 through the
/// same proxy without it, within 10%. 50 ms dwarfs the loopback round trip (tens of
/// microseconds), so the machine's load moves neither side of the comparison by much.
#[test]
fn an_injected_latency_is_in_loadgens_echo_latency() {
    let _lock = fork_lock();
    let server = fork_echo_server(&[]);
    let p50_us = |faults: &[&str]| {
        let proxy = proxy(server.addr(), faults, 1);
        let report = load(proxy.addr(), 4, 40);
        let counts = proxy.stop();
        assert_eq!(report.counters.messages_verified, 160, "{faults:?}");
        // How much of it was loadgen's own wait to read, to tell a busy machine from the proxy.
        let read_delay = report.latency.read_delay.as_ref().map(|d| d.p50_us);
        ((report.latency.echo.p50_us as f64, read_delay), counts)
    };
    let ((clean, clean_delay), _) = p50_us(&[]);
    let ((delayed, delayed_delay), counts) = p50_us(&["down:latency=50ms"]);
    assert!(counts.delayed_chunks >= 160, "{counts:?}");
    let want = 50_000.0 + clean;
    assert!(
        (delayed - want).abs() <= 0.1 * want,
        "echo p50 {delayed} us through 50 ms of latency; clean p50 {clean} us (loadgen's read \
         delay p50 {delayed_delay:?} and {clean_delay:?} us)"
    );
}
