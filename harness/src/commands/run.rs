//! `harness run`: the quick checks, a `loadgen` load while the server's tree is sampled, SIGTERM
//! and the orphan check, then the report with its summary (and JUnit when asked). The CLI turns
//! flags into [`RunOptions`]; nothing here parses flags.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::commands::check::Session;
use crate::commands::outcome::{SetupError, Verdict};
use crate::commands::save::{save_junit, save_report, ReportOutput};
use crate::probe::checks::{self, Case};
use crate::probe::load::{self, LatencyFigures};
use crate::probe::sampler;
use crate::render::text;
use crate::report::check::{CheckCounts, CheckOptions, CheckResult, CheckStatus};
use crate::report::parts::{ReportKind, ServerEnd};
use crate::report::run::{
    FigureSpread, PhaseListenQueue, RunParameters, RunReport, RunSpread, RunSummary,
};
use crate::report::SCHEMA_VERSION;
use crate::subject::error::ServerError;
use crate::subject::process::STOP_GRACE;
use crate::subject::spec::ServerSpec;

/// What `harness run` does besides the server choice.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The load; its `addr` is replaced by the server's.
    pub load: loadgen::Config,
    pub checks: CheckOptions,
    pub sample_interval: Duration,
    /// Whole runs (fresh server, checks, load) to take the median and spread of; at least 1.
    pub runs: usize,
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
    // Before the server exists and after it is gone: the load's memory is measured against both.
    let memory_before = crate::sys::memory::read_baseline();
    let mut session = Session::start(spec)?;
    let mut results = checks::run_cases(&Case::QUICK, spec, &mut session.server, &opts.checks);
    let listen_checks = session.listen_queue_so_far();
    let mut server = session.server;

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
    let memory_after = crate::sys::memory::read_baseline();
    results.push(shutdown_check(
        spec,
        &server_end,
        stopping.elapsed().as_secs_f64(),
    ));

    let counts = CheckCounts::of(&results);
    let summary = summarize(&phase, &server_end, counts);
    let memory = load::load_memory(memory_before, memory_after, &phase, None);
    let p = &opts.load;
    Ok(RunReport {
        schema_version: SCHEMA_VERSION,
        kind: ReportKind::Run,
        started_at: session.started_at,
        duration_secs: session.t0.elapsed().as_secs_f64(),
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
        environment: session.environment,
        server: session.info,
        checks: results,
        load: phase.report.ok(),
        timeline: phase.timeline,
        listen_queue: PhaseListenQueue {
            checks: listen_checks,
            load: phase.listen_queue,
        },
        memory,
        server_end,
        spread: None,
        summary,
    })
}

/// Reads one key figure out of a run's summary.
type FigureOf = fn(&RunSummary) -> Option<f64>;

/// The key figures `--runs` takes the spread of, by `compare`'s names.
const SPREAD_FIGURES: [(&str, FigureOf); 5] = [
    ("echo p99", |s| s.echo_p99_us),
    ("first echo p99", |s| s.first_echo_p99_us),
    ("messages/s", |s| Some(s.messages_per_sec)),
    ("echo p50", |s| s.echo_p50_us),
    ("connect p99", |s| s.connect_p99_us),
];

/// One report of several runs: the run whose messages/s is the median, its key figures replaced
/// by the medians, the spread of each attached; it failed if any run failed.
pub fn combine_runs(mut runs: Vec<RunReport>) -> Option<RunReport> {
    if runs.len() < 2 {
        return runs.pop();
    }
    let figures: BTreeMap<String, FigureSpread> = SPREAD_FIGURES
        .iter()
        .filter_map(|(name, get)| {
            let values: Vec<f64> = runs
                .iter()
                .map(|r| get(&r.summary).unwrap_or(f64::NAN))
                .collect();
            FigureSpread::of(&values).map(|s| (name.to_string(), s))
        })
        .collect();
    // The first failed run, named with its own reason: the median run shown may be a good one.
    let first_load_failure = runs.iter().enumerate().find_map(|(i, r)| {
        (!r.summary.load_ok).then(|| {
            format!(
                "run {}/{} failed: {}",
                i + 1,
                runs.len(),
                r.summary
                    .load_failure
                    .as_deref()
                    .unwrap_or("its load failed")
            )
        })
    });
    let most_failed_checks = runs
        .iter()
        .map(|r| r.summary.checks)
        .max_by_key(|c| c.failed);
    let n = runs.len();
    let mut by_rate: Vec<usize> = (0..n).collect();
    by_rate.sort_by(|&a, &b| {
        runs[a]
            .summary
            .messages_per_sec
            .total_cmp(&runs[b].summary.messages_per_sec)
    });
    let mut report = runs.swap_remove(by_rate[n / 2]);
    let median = |name: &str| figures.get(name).map(|s| s.median);
    let s = &mut report.summary;
    s.echo_p99_us = median("echo p99");
    s.first_echo_p99_us = median("first echo p99");
    s.messages_per_sec = median("messages/s").unwrap_or(s.messages_per_sec);
    s.echo_p50_us = median("echo p50");
    s.connect_p99_us = median("connect p99");
    if let (Some(failure), true) = (first_load_failure, s.load_ok) {
        s.load_ok = false;
        s.load_failure = Some(failure);
    }
    if let Some(c) = most_failed_checks {
        s.checks = c;
    }
    report.spread = Some(RunSpread { runs: n, figures });
    Some(report)
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
            let latency = LatencyFigures::of(report);
            summary.connect_p99_us = latency.connect_p99_us;
            summary.first_echo_p99_us = latency.first_echo_p99_us;
            summary.echo_p50_us = latency.echo_p50_us;
            summary.echo_p99_us = latency.echo_p99_us;
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

/// Runs `run`, prints the summary, writes the report (and JUnit).
pub fn execute(
    spec: &ServerSpec,
    opts: &RunOptions,
    out: &ReportOutput,
) -> Result<Verdict, SetupError> {
    let mut runs = Vec::with_capacity(opts.runs);
    for i in 0..opts.runs.max(1) {
        let report = run(spec, opts)?;
        if opts.runs > 1 {
            println!(
                "run {}/{}: {:.0} messages/s, echo p99 {}",
                i + 1,
                opts.runs,
                report.summary.messages_per_sec,
                crate::render::units::micros(report.summary.echo_p99_us)
            );
        }
        runs.push(report);
        if loadgen::interrupt::requested() {
            break;
        }
    }
    let Some(report) = combine_runs(runs) else {
        return Err(SetupError("no run was made".into()));
    };
    print!("{}", text::run_report_text(&report));
    save_report(&out.results_dir, "run", &report.started_at, &report)?;
    save_junit(
        out.junit.as_deref(),
        "harness run",
        &report.started_at,
        &report.checks,
    )?;
    Ok(Verdict::failed_if(
        report.summary.checks.failed > 0
            || !report.summary.load_ok
            || loadgen::interrupt::requested(),
    ))
}
