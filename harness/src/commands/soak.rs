//! `harness soak`: the server under a long load through the fault proxy (by default 10% of
//! connections reset or stalled), sampled every second; a straight line fitted to its descriptors
//! and resident memory over time must be flat. Prints the summary, writes
//! `results/soak-<UTC time>.json`; exit 1 when a line is not flat, a fault was miscounted, the
//! server died, or something was left behind at shutdown.

use std::path::PathBuf;

use crate::commands::check::Session;
use crate::commands::outcome::{SetupError, Verdict};
use crate::commands::save::save_report;
use crate::faults::{FaultProxy, ProxyCounts};
use crate::probe::soak;
use crate::render::soak::soak_text;
use crate::report::parts::{ReportKind, ServerEnd};
use crate::report::soak::{SoakLoad, SoakParameters, SoakReport, SoakTrends};
use crate::report::SCHEMA_VERSION;
use crate::subject::process::STOP_GRACE;
use crate::subject::spec::ServerSpec;

/// The faults of a soak unless `--faults` says otherwise: 10% of connections, half of them
/// reset mid-echo, half stalled (one way or the other) until a timeout ends them.
pub const DEFAULT_FAULTS: [&str; 3] = [
    "down:reset-after=1000@0.05",
    "up:stall-after=1000@0.025",
    "down:stall-after=1000@0.025",
];

/// Validated options of `harness soak`.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub params: SoakParameters,
    pub results_dir: PathBuf,
}

pub fn execute(spec: &ServerSpec, opts: &SoakOptions) -> Result<Verdict, SetupError> {
    let params = &opts.params;
    let mut session = Session::start(spec)?;
    let listen = std::net::SocketAddr::new(session.server.addr().ip(), 0);
    let proxy = FaultProxy::start(listen, session.server.addr(), params.faults.clone())
        .map_err(|e| SetupError(format!("cannot start the fault proxy: {e}")))?;
    eprintln!(
        "soak: {:.0}s through the fault proxy on {}; samples every second",
        params.duration_secs,
        proxy.addr()
    );
    let run = soak::run(session.server.pid(), proxy.addr(), params);
    let died = session.server.try_exit();
    let proxy_counts = proxy.stop();
    let server_end = session.server.shut_down(STOP_GRACE);
    let trends = SoakTrends::of(&run.samples, params);
    let mut failures = Vec::new();
    if let Some(e) = &run.load_error {
        failures.push(format!("the load could not run: {e}"));
    }
    if let Some(exit) = died {
        failures.push(format!("the server died during the soak ({exit})"));
    }
    failures.extend(trend_failures(&trends));
    failures.extend(count_failures(&run.load, &proxy_counts));
    failures.extend(end_failures(&server_end));
    let report = SoakReport {
        schema_version: SCHEMA_VERSION,
        kind: ReportKind::Soak,
        started_at: session.started_at,
        duration_secs: session.t0.elapsed().as_secs_f64(),
        environment: session.environment,
        server: session.info,
        parameters: params.clone(),
        load: run.load,
        proxy: proxy_counts,
        samples: run.samples,
        trends,
        server_end,
        failures,
        interrupted: loadgen::interrupt::requested(),
    };
    print!("{}", soak_text(&report));
    save_report(&opts.results_dir, "soak", &report.started_at, &report)?;
    Ok(Verdict::failed_if(
        !report.failures.is_empty() || report.interrupted,
    ))
}

fn trend_failures(trends: &SoakTrends) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, trend, unit) in [
        ("open fds", &trends.fds, ""),
        ("RSS", &trends.rss_kib, " KiB"),
    ] {
        match (trend.flat, trend.growth, trend.limit) {
            (Some(true), ..) => {}
            (Some(false), Some(growth), Some(limit)) => failures.push(format!(
                "the server's {name} are not flat: the fitted line moves {growth:+.1}{unit} over the run (limit {limit:.1}{unit})"
            )),
            _ => failures.push(format!(
                "the server's {name} could not be fitted (fewer than two samples)"
            )),
        }
    }
    failures
}

/// A fault must show up as a failed session of the kind it is, never as a wrong byte; and every
/// failed session must be one the proxy cut (the server itself drops nobody).
fn count_failures(load: &SoakLoad, proxy: &ProxyCounts) -> Vec<String> {
    let mut failures = Vec::new();
    if load.rounds == 0 {
        failures.push("no loadgen round ran".into());
    }
    if load.mismatch > 0 {
        failures.push(format!(
            "{} sessions got bytes back that differ from what they sent",
            load.mismatch
        ));
    }
    if load.reset != proxy.resets {
        failures.push(format!(
            "the proxy reset {} sessions, loadgen counted {} resets",
            proxy.resets, load.reset
        ));
    }
    let cut = proxy.resets + proxy.stalls + proxy.closes;
    if load.sessions_failed + load.connections_failed != cut {
        failures.push(format!(
            "the proxy cut {cut} sessions, loadgen counted {} failed sessions and {} failed connects",
            load.sessions_failed, load.connections_failed
        ));
    }
    failures
}

fn end_failures(end: &ServerEnd) -> Vec<String> {
    let mut failures = Vec::new();
    if !end.leftovers.orphans.is_empty() {
        failures.push(format!(
            "{} processes of the server's session still ran 3s after it exited (orphans)",
            end.leftovers.orphans.len()
        ));
    }
    if end.needed_sigkill {
        failures.push("the server needed SIGKILL to stop".into());
    }
    failures
}
