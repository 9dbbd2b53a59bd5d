//! `harness check` and `harness run` from start to end: start the server, run the cases, (for
//! `run`) load it while sampling its tree, stop it with SIGTERM, look for orphans, and assemble
//! the report. The CLI turns flags into the option structs here; nothing here parses flags.

use std::time::{Duration, Instant};

use crate::checks::{self, Case, CheckOptions, CheckResult, CheckStatus};
use crate::load;
use crate::procfs::ListenCounters;
use crate::report::{
    CheckCounts, CheckReport, Environment, PhaseListenQueue, ReportKind, RunParameters, RunReport,
    RunSummary, ServerInfo, SCHEMA_VERSION,
};
use crate::sampler;
use crate::server::{ServerEnd, ServerError, ServerProcess, ServerSpec};

/// How long a server may take to stop after SIGTERM before the group is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

fn server_info(spec: &ServerSpec, server: &ServerProcess) -> ServerInfo {
    ServerInfo {
        description: spec.describe(),
        speaks_contract: spec.speaks_contract(),
        pid: server.pid(),
        addr: server.addr().to_string(),
    }
}

/// `harness check`: every case against `spec`.
pub fn check(spec: &ServerSpec, opts: &CheckOptions) -> Result<CheckReport, ServerError> {
    let started_at = crate::report::now_rfc3339();
    let t0 = Instant::now();
    let environment = Environment::collect();
    let listen_before = ListenCounters::read().unwrap_or_default();
    let mut server = ServerProcess::spawn(spec, checks::READY_TIMEOUT)?;
    let info = server_info(spec, &server);
    let results = checks::run_cases(&Case::ALL, spec, &mut server, opts);
    let listen_queue = ListenCounters::read()
        .unwrap_or_default()
        .since(&listen_before);
    let server_end = server.shut_down(STOP_GRACE);
    Ok(CheckReport {
        schema_version: SCHEMA_VERSION,
        kind: ReportKind::Check,
        started_at,
        duration_secs: t0.elapsed().as_secs_f64(),
        environment,
        server: info,
        options: *opts,
        counts: CheckCounts::of(&results),
        checks: results,
        listen_queue,
        server_end,
    })
}

/// What `harness run` does besides the server choice.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The load; its `addr` is replaced by the server's.
    pub load: loadgen::Config,
    pub checks: CheckOptions,
    pub sample_interval: Duration,
}

/// The result of stopping the server, as a check: no orphan, and exit code 0 for contract servers.
fn shutdown_check(spec: &ServerSpec, end: &ServerEnd, secs: f64) -> CheckResult {
    let mut problems = Vec::new();
    if !end.leftovers.orphans.is_empty() {
        problems.push(format!(
            "{} orphans still running 3s after the server exited (pids {:?})",
            end.leftovers.orphans.len(),
            end.leftovers.orphans
        ));
    }
    if end.needed_sigkill {
        problems.push(format!(
            "did not exit within {}s of SIGTERM and was killed",
            STOP_GRACE.as_secs()
        ));
    } else if spec.speaks_contract() && !end.exit.success() {
        problems.push(format!(
            "ended with {} after SIGTERM, expected exit code 0",
            end.exit
        ));
    }
    CheckResult {
        name: "shutdown_no_orphans".into(),
        status: if problems.is_empty() {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        detail: if problems.is_empty() {
            Some(format!("{} after SIGTERM; no orphan", end.exit))
        } else {
            Some(problems.join("; "))
        },
        duration_secs: secs,
    }
}

/// `harness run`: quick checks, the load phase under the sampler, SIGTERM and the orphan check.
pub fn run(spec: &ServerSpec, opts: &RunOptions) -> Result<RunReport, ServerError> {
    let started_at = crate::report::now_rfc3339();
    let t0 = Instant::now();
    let environment = Environment::collect();
    let listen_before = ListenCounters::read().unwrap_or_default();
    let mut server = ServerProcess::spawn(spec, checks::READY_TIMEOUT)?;
    let info = server_info(spec, &server);
    let mut results = checks::run_cases(&Case::QUICK, spec, &mut server, &opts.checks);
    let listen_checks = ListenCounters::read()
        .unwrap_or_default()
        .since(&listen_before);

    let mut config = opts.load.clone();
    config.addr = server.addr();
    let phase = load::run_load(
        config,
        server.pid(),
        opts.sample_interval,
        Default::default(),
    );

    let stopping = Instant::now();
    let server_end = server.shut_down(STOP_GRACE);
    results.push(shutdown_check(
        spec,
        &server_end,
        stopping.elapsed().as_secs_f64(),
    ));

    let counts = CheckCounts::of(&results);
    let summary = summarize(&phase, &server_end, counts);
    let load_json = match &phase.report {
        Ok(report) => serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    };
    let p = &opts.load;
    Ok(RunReport {
        schema_version: SCHEMA_VERSION,
        kind: ReportKind::Run,
        started_at,
        duration_secs: t0.elapsed().as_secs_f64(),
        parameters: RunParameters {
            conns: p.conns,
            duration_secs: p.duration.map(|d| d.as_secs_f64()),
            messages: p.messages,
            size: p.size,
            pipeline: p.pipeline,
            rate: p.rate,
            sample_interval_ms: opts.sample_interval.as_millis() as u64,
            check_options: opts.checks,
        },
        environment,
        server: info,
        checks: results,
        load: load_json,
        timeline: phase.timeline,
        listen_queue: PhaseListenQueue {
            checks: listen_checks,
            load: phase.listen_queue,
        },
        server_end,
        summary,
    })
}

/// The key figures of one load phase and the server's end.
pub fn summarize(
    phase: &load::LoadPhase,
    server_end: &ServerEnd,
    checks: CheckCounts,
) -> RunSummary {
    let tree = sampler::summarize(&phase.timeline);
    let mut summary = RunSummary {
        peak_children: tree.peak_live_children,
        zombies_seen: tree.max_zombies,
        zombies_lingering: tree.max_lingering_zombies,
        peak_tree_pss_kib: tree.peak_tree_pss_kib,
        pss_per_child_kib: tree.pss_per_child_kib,
        private_per_child_kib: tree.private_per_child_kib,
        connect_p99_us: None,
        first_echo_p99_us: None,
        echo_p50_us: None,
        echo_p99_us: None,
        messages_per_sec: 0.0,
        connections_established: 0,
        load_errors: 0,
        load_ok: false,
        load_failure: None,
        listen_overflows: phase.listen_queue.listen_overflows,
        listen_drops: phase.listen_queue.listen_drops,
        orphans_after_stop: server_end.leftovers.orphans.len(),
        checks,
    };
    match &phase.report {
        Ok(report) => {
            let failures = load::failures(report);
            summary.connect_p99_us = load::percentile_us(&report.latency.connect, 99.0);
            summary.first_echo_p99_us = load::percentile_us(&report.latency.first_echo, 99.0);
            summary.echo_p50_us = load::percentile_us(&report.latency.echo, 50.0);
            summary.echo_p99_us = load::percentile_us(&report.latency.echo, 99.0);
            summary.messages_per_sec = report.messages_per_sec;
            summary.connections_established = report.counters.connections_established;
            summary.load_errors = report.errors.total();
            summary.load_ok = failures.is_empty();
            summary.load_failure = (!failures.is_empty()).then(|| failures.join("; "));
        }
        Err(e) => summary.load_failure = Some(format!("the load could not run: {e}")),
    }
    summary
}
