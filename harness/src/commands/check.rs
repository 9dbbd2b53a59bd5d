//! `harness check`: start the server, run every case against it, stop it with SIGTERM, and write
//! the report (and JUnit when asked). Also the start both `check` and `run` share ([`Session`]).

use std::time::Instant;

use crate::commands::outcome::{SetupError, Verdict};
use crate::commands::save::{save_junit, save_report, ReportOutput};
use crate::probe::checks::{self, Case};
use crate::probe::fault_checks;
use crate::render::text;
use crate::report::check::{CheckCounts, CheckOptions, CheckReport};
use crate::report::parts::{Environment, ListenCounters, ReportKind, ServerInfo};
use crate::report::write::now_rfc3339;
use crate::report::SCHEMA_VERSION;
use crate::subject::error::ServerError;
use crate::subject::process::{ServerProcess, READY_TIMEOUT, STOP_GRACE};
use crate::subject::spec::ServerSpec;

/// What `check` and `run` both do first: note the time and the machine, read the kernel's
/// listen-queue counters, and start the server.
pub struct Session {
    /// RFC 3339, UTC: the report's `started_at`.
    pub started_at: String,
    pub t0: Instant,
    pub environment: Environment,
    listen_before: ListenCounters,
    pub server: ServerProcess,
    pub info: ServerInfo,
}

impl Session {
    pub fn start(spec: &ServerSpec) -> Result<Session, ServerError> {
        let started_at = now_rfc3339();
        let t0 = Instant::now();
        let environment = Environment::collect();
        let listen_before = ListenCounters::read().unwrap_or_default();
        let server = ServerProcess::spawn(spec, READY_TIMEOUT)?;
        let info = ServerInfo {
            // The command as it ran, `{port}` filled in.
            description: spec
                .describe()
                .replace("{port}", &server.addr().port().to_string()),
            speaks_contract: spec.speaks_contract(),
            pid: server.pid(),
            addr: server.addr().to_string(),
        };
        Ok(Session {
            started_at,
            t0,
            environment,
            listen_before,
            server,
            info,
        })
    }

    /// Change of the listen-queue counters since the session started.
    pub fn listen_queue_so_far(&self) -> ListenCounters {
        ListenCounters::read()
            .unwrap_or_default()
            .since(&self.listen_before)
    }
}

/// `harness check`: every case against `spec` (with `faults`, every fault case).
pub fn check(spec: &ServerSpec, opts: &CheckOptions) -> Result<CheckReport, ServerError> {
    let mut session = Session::start(spec)?;
    let results = if opts.faults {
        fault_checks::run_fault_cases(spec, &mut session.server)
    } else {
        checks::run_cases(&Case::ALL, spec, &mut session.server, opts)
    };
    let listen_queue = session.listen_queue_so_far();
    let server_end = session.server.shut_down(STOP_GRACE);
    Ok(CheckReport {
        schema_version: SCHEMA_VERSION,
        kind: ReportKind::Check,
        started_at: session.started_at,
        duration_secs: session.t0.elapsed().as_secs_f64(),
        environment: session.environment,
        server: session.info,
        options: *opts,
        counts: CheckCounts::of(&results),
        checks: results,
        listen_queue,
        server_end,
    })
}

/// Runs `check`, prints the table, writes the report (and JUnit).
pub fn execute(
    spec: &ServerSpec,
    opts: &CheckOptions,
    out: &ReportOutput,
) -> Result<Verdict, SetupError> {
    let report = check(spec, opts)?;
    print!("{}", text::check_report_text(&report));
    save_report(&out.results_dir, "check", &report.started_at, &report)?;
    save_junit(
        out.junit.as_deref(),
        "harness check",
        &report.started_at,
        &report.checks,
    )?;
    Ok(Verdict::failed_if(
        report.counts.failed > 0 || loadgen::interrupt::requested(),
    ))
}
