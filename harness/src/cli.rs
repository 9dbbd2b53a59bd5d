//! The command line: clap types stay here and are turned into the validated options `run.rs`
//! uses. Exit codes: 0 ok, 1 a check or the load failed (or `compare` found a regression),
//! 2 usage or setup error (bad flag, missing or unusable server, unreadable report).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::checks::CheckOptions;
use crate::compare;
use crate::junit;
use crate::output;
use crate::report::{self, AnyReport};
use crate::run::{self, RunOptions};
use crate::server::ServerSpec;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_SETUP: i32 = 2;

/// Spawns an echo server, checks it, counts its child processes from /proc, loads it, and writes
/// JSON reports into results/.
#[derive(Debug, Parser)]
#[command(name = "harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every correctness case against the server; exit 1 if any fails.
    Check(CheckArgs),
    /// Quick checks, then a load through loadgen while the process tree is sampled; the main job.
    Run(RunArgs),
    /// Print the summary of a saved report again.
    Report(ReportArgs),
    /// Compare two reports; exit 1 on a regression beyond --max-regression.
    Compare(CompareArgs),
    /// Walk a ladder of connection counts, fit the capacity model, write the report and SVGs.
    Sweep(SweepArgs),
    /// Redraw the SVGs of a saved sweep report, or the timeline of a run report.
    Plot(PlotArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// A server binary speaking the fork echo server's contract (default: the built-in one).
    #[arg(long, value_name = "PATH", conflicts_with = "server_cmd")]
    server: Option<PathBuf>,
    /// Any echo server, e.g. 'socat TCP-LISTEN:{port},fork,reuseaddr PIPE' ({port} is filled in;
    /// split on spaces, no shell). Checks that need the contract are skipped.
    #[arg(long, value_name = "CMD")]
    server_cmd: Option<String>,
    /// Flags passed to the server, after `--` (e.g. `-- --max-children 64`).
    #[arg(last = true, value_name = "SERVER FLAGS")]
    server_flags: Vec<String>,
}

#[derive(Debug, Args)]
struct ReportOutArgs {
    /// Directory the JSON report is written into.
    #[arg(long, value_name = "DIR", default_value = "results")]
    results_dir: PathBuf,
    /// Also write the check results as JUnit XML to PATH.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Clients held at once by the concurrency cases.
    #[arg(long, default_value_t = 100, value_name = "N")]
    clients: usize,
    /// Connections made by the parent-fd case.
    #[arg(long, default_value_t = 500, value_name = "N")]
    fd_connections: usize,
    #[command(flatten)]
    out: ReportOutArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Concurrent connections of the load.
    #[arg(short = 'c', long, default_value_t = 1000, value_name = "N")]
    conns: usize,
    /// Length of the load after connecting.
    #[arg(short = 'd', long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "D")]
    duration: Duration,
    /// Messages per connection instead of a duration.
    #[arg(long, value_name = "N")]
    messages: Option<u64>,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Total messages per second, open loop (default: closed loop).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pipeline: usize,
    /// Clients held at once by the quick checks before the load.
    #[arg(long, default_value_t = 50, value_name = "N")]
    check_clients: usize,
    /// How often the server's process tree is sampled during the load.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, value_name = "D")]
    sample_interval: Duration,
    #[command(flatten)]
    out: ReportOutArgs,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// A JSON report written by `harness run` or `harness check`.
    file: PathBuf,
}

#[derive(Debug, Args)]
struct CompareArgs {
    base: PathBuf,
    new: PathBuf,
    /// How much worse echo p99, first-echo p99 or messages/s may get.
    #[arg(long, default_value = "10%", value_parser = compare::parse_percent, value_name = "PCT")]
    max_regression: f64,
}

/// A usage or setup problem: printed as one line, exit 2.
struct SetupError(String);

impl<E: std::fmt::Display> From<E> for SetupError {
    fn from(e: E) -> Self {
        SetupError(e.to_string())
    }
}

/// Parses `args` (program name first) and runs the subcommand; returns the exit code.
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_SETUP } else { EXIT_OK };
        }
    };
    let result = match cli.command {
        Command::Check(a) => cmd_check(a),
        Command::Run(a) => cmd_run(a),
        Command::Report(a) => cmd_report(&a.file),
        Command::Compare(a) => cmd_compare(a),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Plot(a) => cmd_plot(a),
    };
    match result {
        Ok(code) => code,
        Err(SetupError(msg)) => {
            eprintln!("harness: error: {msg}");
            EXIT_SETUP
        }
    }
}

fn server_spec(a: &ServerArgs) -> Result<ServerSpec, SetupError> {
    if let Some(cmd) = &a.server_cmd {
        if !a.server_flags.is_empty() {
            return Err(SetupError(
                "server flags after -- apply to contract servers, not to --server-cmd (put them in the command)".into(),
            ));
        }
        return Ok(ServerSpec::command(cmd)?);
    }
    match &a.server {
        Some(path) => Ok(ServerSpec::binary(path, &a.server_flags)?),
        None => Ok(ServerSpec::builtin(&a.server_flags)?),
    }
}

/// Writes a report into the results directory (temp file + rename) and says where it went.
fn save_report<T: serde::Serialize>(
    dir: &Path,
    kind: &str,
    started_at: &str,
    report: &T,
) -> Result<PathBuf, SetupError> {
    let path = report::write_report(dir, kind, started_at, report).map_err(|e| {
        SetupError(format!(
            "cannot write the report into {}: {e}",
            dir.display()
        ))
    })?;
    println!("report: {}", path.display());
    Ok(path)
}

/// Writes the check results as JUnit XML when `--junit` asked for it.
fn save_junit(
    path: Option<&Path>,
    suite: &str,
    started_at: &str,
    results: &[crate::checks::CheckResult],
) -> Result<(), SetupError> {
    let Some(path) = path else {
        return Ok(());
    };
    let xml = junit::to_junit_xml(suite, started_at, results);
    report::write_atomic(path, xml.as_bytes())
        .map_err(|e| SetupError(format!("cannot write {}: {e}", path.display())))?;
    println!("junit: {}", path.display());
    Ok(())
}

fn cmd_check(a: CheckArgs) -> Result<i32, SetupError> {
    let spec = server_spec(&a.server)?;
    if a.clients == 0 || a.fd_connections == 0 {
        return Err(SetupError(
            "--clients and --fd-connections must be at least 1".into(),
        ));
    }
    let opts = CheckOptions {
        clients: a.clients,
        fd_connections: a.fd_connections,
    };
    let report = run::check(&spec, &opts)?;
    print!("{}", output::check_report_text(&report));
    save_report(&a.out.results_dir, "check", &report.started_at, &report)?;
    save_junit(
        a.out.junit.as_deref(),
        "harness check",
        &report.started_at,
        &report.checks,
    )?;
    Ok(if report.counts.failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

fn cmd_run(a: RunArgs) -> Result<i32, SetupError> {
    let spec = server_spec(&a.server)?;
    let load = loadgen::Config {
        conns: a.conns,
        duration: if a.messages.is_some() {
            None
        } else {
            Some(a.duration)
        },
        messages: a.messages,
        size: a.size,
        pipeline: a.pipeline,
        rate: a.rate,
        progress: std::io::stderr().is_terminal(),
        ..loadgen::Config::default()
    };
    // Bad load flags are a usage error, found before any server starts.
    load.validate()?;
    if a.check_clients == 0 {
        return Err(SetupError("--check-clients must be at least 1".into()));
    }
    if a.sample_interval.is_zero() {
        return Err(SetupError("--sample-interval must be more than 0".into()));
    }
    let opts = RunOptions {
        load,
        checks: CheckOptions {
            clients: a.check_clients,
            fd_connections: 100,
        },
        sample_interval: a.sample_interval,
    };
    let report = run::run(&spec, &opts)?;
    print!("{}", output::run_report_text(&report));
    save_report(&a.out.results_dir, "run", &report.started_at, &report)?;
    save_junit(
        a.out.junit.as_deref(),
        "harness run",
        &report.started_at,
        &report.checks,
    )?;
    let failed = report.summary.checks.failed > 0 || !report.summary.load_ok;
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

fn cmd_report(file: &Path) -> Result<i32, SetupError> {
    if let Some(sweep) = crate::sweep_report::read_if_sweep(file).map_err(SetupError)? {
        print!("{}", crate::sweep_report::summary_text(&sweep));
        return Ok(EXIT_OK);
    }
    match report::read_report(file).map_err(SetupError)? {
        AnyReport::Check(r) => print!("{}", output::check_report_text(&r)),
        AnyReport::Run(r) => print!("{}", output::run_report_text(&r)),
    }
    Ok(EXIT_OK)
}

fn cmd_compare(a: CompareArgs) -> Result<i32, SetupError> {
    for file in [&a.base, &a.new] {
        if crate::sweep_report::read_if_sweep(file)
            .map_err(SetupError)?
            .is_some()
        {
            return Err(SetupError(format!(
                "{} is a sweep report; compare takes check or run reports",
                file.display()
            )));
        }
    }
    let base = report::read_report(&a.base).map_err(SetupError)?;
    let new = report::read_report(&a.new).map_err(SetupError)?;
    let comparison = compare::compare(&base, &new, a.max_regression);
    print!("{}", output::comparison_text(&comparison));
    Ok(if comparison.regressions.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

#[derive(Debug, Args)]
struct SweepArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The ladder: concurrent connections of each step.
    #[arg(
        short = 'c',
        long,
        default_value = "1,10,100,1000,4000",
        value_name = "N,N,..."
    )]
    conns: String,
    /// Length of each step's steady closed-loop phase (after its connect burst).
    #[arg(short = 'd', long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "D")]
    duration: Duration,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Memory the server may use, for the predicted maximum (e.g. 8GiB, 512MiB).
    #[arg(long, default_value = "8GiB", value_parser = crate::sweep::parse_bytes, value_name = "SIZE")]
    memory_budget: u64,
    /// How often the server's process tree is sampled.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, value_name = "D")]
    sample_interval: Duration,
    /// Directory the JSON report and SVGs are written into.
    #[arg(long, value_name = "DIR", default_value = "results")]
    results_dir: PathBuf,
}

#[derive(Debug, Args)]
struct PlotArgs {
    /// A JSON report written by `harness sweep` or `harness run`.
    file: PathBuf,
    /// Where the SVGs go (default: beside the report).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

fn cmd_sweep(a: SweepArgs) -> Result<i32, SetupError> {
    let spec = server_spec(&a.server)?;
    let ladder =
        crate::sweep::parse_ladder(&a.conns).map_err(|e| SetupError(format!("--conns: {e}")))?;
    if a.duration.is_zero() {
        return Err(SetupError("--duration must be more than 0".into()));
    }
    if a.size == 0 {
        return Err(SetupError("--size must be at least 1".into()));
    }
    if a.sample_interval.is_zero() {
        return Err(SetupError("--sample-interval must be more than 0".into()));
    }
    let opts = crate::sweep::SweepOptions {
        ladder,
        duration: a.duration,
        size: a.size,
        memory_budget_bytes: a.memory_budget,
        sample_interval: a.sample_interval,
        progress: true,
    };
    let report = crate::sweep::sweep(&spec, &opts)?;
    print!("{}", crate::sweep_report::summary_text(&report));
    let path = save_report(&a.results_dir, "sweep", &report.started_at, &report)?;
    // Drawn from the file just written, through the same code as `harness plot`, so a redraw
    // reproduces these files.
    for svg in crate::plot_cmd::plot_report(&path, None).map_err(SetupError)? {
        println!("plot: {}", svg.display());
    }
    Ok(if report.summary.steps_failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

fn cmd_plot(a: PlotArgs) -> Result<i32, SetupError> {
    for svg in crate::plot_cmd::plot_report(&a.file, a.out_dir.as_deref()).map_err(SetupError)? {
        println!("plot: {}", svg.display());
    }
    Ok(EXIT_OK)
}
