//! The command line: clap types stay here and are turned into the validated options each command
//! in `commands/` takes. Exit codes: 0 ok, 1 a check or the load failed (or `compare` found a
//! regression), 2 usage or setup error (bad flag, missing or unusable server, unreadable report).
//!
//! Layers it may import: `commands`, `report`, `subject`, `faults`.
//! Crates it may import: `clap`, `humantime`, `loadgen`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands::outcome::{SetupError, Verdict};
use crate::commands::run::RunOptions;
use crate::commands::save::ReportOutput;
use crate::commands::sweep::{self, SweepOptions};
use crate::commands::{check, compare, plot, proxy, report, run, save, soak};
use crate::faults::FaultPlan;
use crate::report::check::CheckOptions;
use crate::report::compare::parse_percent;
use crate::report::soak::SoakParameters;
use crate::subject::spec::ServerSpec;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_SETUP: i32 = 2;

/// The exit codes, as every `--help` lists them.
const EXIT_CODES_HELP: &str =
    "Exit codes:\n  0  ok: every check passed, the load ran clean, no regression\n  \
1  a check or the load failed, a sweep step failed, compare found a regression, or Ctrl-C\n     \
stopped the run (the report is written, marked interrupted)\n  \
2  usage or setup error: bad flag, missing or unusable server, unwritable output, limits too\n     \
low, unreadable or incomparable reports\n  \
130  a second Ctrl-C";

/// Spawns an echo server, checks it, counts its child processes from /proc, loads it, and writes
/// JSON reports into results/.
#[derive(Debug, Parser)]
#[command(name = "harness", version, after_help = EXIT_CODES_HELP)]
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
    /// Print a saved report (check, run or sweep) again: as text, Markdown, CSV or JSON.
    Report(ReportArgs),
    /// Compare two reports; exit 1 on a regression beyond --max-regression.
    Compare(CompareArgs),
    /// Walk a ladder of connection counts, fit the capacity model, write the report and SVGs.
    Sweep(SweepArgs),
    /// Redraw the SVGs of a saved sweep report, or the timeline of a run report.
    Plot(PlotArgs),
    /// Load the server through the fault proxy for a long time (by default 10% of connections
    /// reset or stalled), sampling it every second; exit 1 unless its fds and RSS stay flat.
    Soak(SoakArgs),
    /// Run the fault-injecting proxy on its own in front of a loopback server.
    Proxy(ProxyArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// A server binary speaking the fork echo server's contract (default: the built-in one).
    #[arg(long, value_name = "PATH", conflicts_with = "server_cmd")]
    server: Option<PathBuf>,
    /// Any echo server, e.g. 'socat TCP-LISTEN:{port},fork,reuseaddr PIPE' ({port} is filled in;
    /// split on spaces, no shell). `check` and `run` skip the checks that need the contract.
    #[arg(long, value_name = "CMD")]
    server_cmd: Option<String>,
    /// Flags passed to the server, after `--` (e.g. `-- --max-children 64`).
    #[arg(last = true, value_name = "SERVER FLAGS")]
    server_flags: Vec<String>,
}

#[derive(Debug, Args)]
struct ReportOutArgs {
    /// Directory the JSON report is written into [default: results/ at the workspace root when
    /// run inside the repository, else ./results].
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// Also write the check results as JUnit XML to PATH.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct CheckArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Clients held at once by the concurrency cases.
    #[arg(long, default_value_t = 100, value_name = "N")]
    clients: usize,
    /// Connections made by the parent-fd case.
    #[arg(long, default_value_t = 500, value_name = "N")]
    fd_connections: usize,
    /// Run the fault suite instead: the server through a fault-injecting proxy (slices, latency,
    /// bandwidth, resets, FINs and stalls mid-echo).
    #[arg(long)]
    faults: bool,
    #[command(flatten)]
    out: ReportOutArgs,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
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
    /// Repeat the whole run N times (fresh server, checks, load): the report holds the median of
    /// each key figure and its spread (min..max, mean +- sd), which `compare` gates against.
    #[arg(long, default_value_t = 1, value_name = "N")]
    runs: usize,
    /// Fraction of the load's messages (of those sent) that may fail before the run fails.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    max_error_rate: f64,
    /// Fraction of the load's sessions (connections asked for) that may fail before the run
    /// fails.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    max_session_failures: f64,
    #[command(flatten)]
    out: ReportOutArgs,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct ReportArgs {
    /// A JSON report written by `harness check`, `harness run` or `harness sweep`.
    file: PathBuf,
    /// text: as the command printed it; markdown or csv: its tables, to paste into a PR or a
    /// spreadsheet; json: the report itself; html: one self-contained page (verdict, charts
    /// inline, tables, parameters, machine) to send to someone.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Text,
    Markdown,
    Csv,
    Json,
    Html,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct CompareArgs {
    /// The reference report (e.g. the committed baseline or the main branch's run).
    base: PathBuf,
    /// The report held against BASE; same kind (check, run or sweep) and parameters.
    new: PathBuf,
    /// How much worse echo p99, first-echo p99 or messages/s may get.
    #[arg(long, default_value = "10%", value_parser = parse_percent, value_name = "PCT")]
    max_regression: f64,
    /// Compare reports whose parameters differ (each difference is printed as a warning).
    #[arg(long)]
    allow_different_parameters: bool,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct SweepArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The ladder: concurrent connections of each step. The default has eight steps from 1, so
    /// the throughput model (three coefficients and a held-out step) is fitted on the small steps
    /// where throughput bends, and the memory and CPU models on the large ones.
    #[arg(
        short = 'c',
        long,
        default_value = "1,2,4,16,64,256,1000,4000",
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
    #[arg(long, default_value = "8GiB", value_parser = sweep::parse_bytes, value_name = "SIZE")]
    memory_budget: u64,
    /// How often the server's process tree is sampled.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, value_name = "D")]
    sample_interval: Duration,
    /// After the ladder, run one more step at N connections (not fitted) and compare its memory
    /// with the model's prediction; without N, 2.5x the largest step, within the machine's limits.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "auto", value_parser = sweep::parse_validate)]
    validate: Option<sweep::ValidateAt>,
    /// Directory the JSON report and SVGs are written into [default: results/ at the workspace
    /// root when run inside the repository, else ./results].
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// A connect slower than this is a connect timeout (raise it for bursts of tens of
    /// thousands: accept+fork runs at a few hundred per second on two cores).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "D")]
    connect_timeout: Duration,
    /// An echo slower than this is an echo timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "D")]
    io_timeout: Duration,
    /// Answer "how many cores": echoed messages per second to plan for (with the CPU model's
    /// fitted cost per message).
    #[arg(long, value_name = "MSG_PER_SEC")]
    target_rate: Option<f64>,
    /// Answer "how many cores": new connections per second to plan for (each accepted, forked,
    /// closed and reaped; with the fitted cost per connection).
    #[arg(long, value_name = "CONNS_PER_SEC")]
    target_conns: Option<f64>,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct PlotArgs {
    /// A JSON report written by `harness sweep` or `harness run`; or two to four sweep reports,
    /// drawn on one chart per question (throughput, CPU, memory) as `compare-*.svg`.
    #[arg(num_args = 1..=4, required = true)]
    files: Vec<PathBuf>,
    /// Where the SVGs go (default: beside the (first) report).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FaultArgs {
    /// A fault profile, `DIR:TOXIC=VALUE[+...][@FRACTION]` (DIR up or down; TOXIC slice=N[:DELAY],
    /// latency=D[:JITTER], bandwidth=BYTES, reset-after=BYTES, stall-after=BYTES,
    /// close-after=BYTES); repeat for disjoint shares of the connections.
    #[arg(long = "faults", value_name = "PROFILE")]
    faults: Vec<String>,
    /// Seed of the draws that pick the faulted connections and the jitter.
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct SoakArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How long the load runs.
    #[arg(short = 'd', long, default_value = "10m", value_parser = humantime::parse_duration, value_name = "D")]
    duration: Duration,
    /// Connections of each loadgen round (rounds follow each other until the duration is over).
    #[arg(short = 'c', long, default_value_t = 20, value_name = "N")]
    conns: usize,
    /// Messages per connection and round.
    #[arg(long, default_value_t = 100, value_name = "N")]
    messages: u64,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// An echo slower than this ends its session as an echo timeout (how stalls end).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "D")]
    io_timeout: Duration,
    /// Samples before this are left out of the fits [default: a tenth of the duration, at most 30s].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "D")]
    warmup: Option<Duration>,
    /// The most the fitted fd line may move over the run and still be flat.
    #[arg(long, default_value_t = 2.0, value_name = "N")]
    max_fd_growth: f64,
    /// The most the fitted RSS line may move over the run and still be flat.
    #[arg(long, default_value = "512KiB", value_parser = sweep::parse_bytes, value_name = "SIZE")]
    max_rss_growth: u64,
    #[command(flatten)]
    faults: FaultArgs,
    /// Directory the JSON report is written into [default: results/ at the workspace root].
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct ProxyArgs {
    /// The server to forward to (loopback).
    #[arg(long, value_name = "IP:PORT")]
    to: std::net::SocketAddr,
    /// Where clients connect (loopback; port 0 takes a free one, printed as `listening on`).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "IP:PORT")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    faults: FaultArgs,
    /// Stop after this long instead of on Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "D")]
    duration: Option<Duration>,
    /// Also write the final counts as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    counts: Option<PathBuf>,
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
    if matches!(
        cli.command,
        Command::Check(_) | Command::Run(_) | Command::Sweep(_) | Command::Soak(_)
    ) {
        // First Ctrl-C: stop the load (or the remaining checks or steps), print and save what
        // ran. Second: quit; the servers get SIGTERM from PR_SET_PDEATHSIG as the harness exits.
        loadgen::interrupt::install_ctrl_c_handler("harness", || {});
    }
    let result = match cli.command {
        Command::Check(a) => cmd_check(a),
        Command::Run(a) => cmd_run(a),
        Command::Report(a) => report::execute(
            &a.file,
            match a.format {
                FormatArg::Text => report::ReportFormat::Text,
                FormatArg::Markdown => report::ReportFormat::Markdown,
                FormatArg::Csv => report::ReportFormat::Csv,
                FormatArg::Json => report::ReportFormat::Json,
                FormatArg::Html => report::ReportFormat::Html,
            },
        ),
        Command::Compare(a) => compare::execute(
            &a.base,
            &a.new,
            compare::CompareOptions {
                max_regression_pct: a.max_regression,
                allow_different_parameters: a.allow_different_parameters,
            },
        ),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Plot(a) => plot::execute(&a.files, a.out_dir.as_deref()),
        Command::Soak(a) => cmd_soak(a),
        Command::Proxy(a) => cmd_proxy(a),
    };
    match result {
        Ok(Verdict::Passed) => EXIT_OK,
        Ok(Verdict::Failed) => EXIT_FAILED,
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

fn report_output(a: ReportOutArgs) -> ReportOutput {
    ReportOutput {
        results_dir: a.results_dir.unwrap_or_else(save::default_results_dir),
        junit: a.junit,
    }
}

fn cmd_check(a: CheckArgs) -> Result<Verdict, SetupError> {
    let spec = server_spec(&a.server)?;
    if a.clients == 0 || a.fd_connections == 0 {
        return Err(SetupError(
            "--clients and --fd-connections must be at least 1".into(),
        ));
    }
    let opts = CheckOptions {
        clients: a.clients,
        fd_connections: a.fd_connections,
        faults: a.faults,
    };
    let out = report_output(a.out);
    out.check_writable()?;
    check::execute(&spec, &opts, &out)
}

fn cmd_run(a: RunArgs) -> Result<Verdict, SetupError> {
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
        max_error_rate: a.max_error_rate,
        max_session_failures: a.max_session_failures,
        progress: std::io::stderr().is_terminal(),
        ..loadgen::Config::default()
    };
    // Bad load flags and a load this process's limits cannot hold are setup errors, found
    // before any server starts or check runs.
    loadgen::preflight_auto(&load, None)?;
    if a.check_clients == 0 {
        return Err(SetupError("--check-clients must be at least 1".into()));
    }
    if a.runs == 0 {
        return Err(SetupError("--runs must be at least 1".into()));
    }
    if a.sample_interval.is_zero() {
        return Err(SetupError("--sample-interval must be more than 0".into()));
    }
    let opts = RunOptions {
        load,
        checks: CheckOptions {
            clients: a.check_clients,
            fd_connections: 100,
            faults: false,
        },
        sample_interval: a.sample_interval,
        runs: a.runs,
    };
    let out = report_output(a.out);
    out.check_writable()?;
    run::execute(&spec, &opts, &out)
}

fn cmd_sweep(a: SweepArgs) -> Result<Verdict, SetupError> {
    let spec = server_spec(&a.server)?;
    let ladder = sweep::parse_ladder(&a.conns).map_err(|e| SetupError(format!("--conns: {e}")))?;
    if a.duration.is_zero() {
        return Err(SetupError("--duration must be more than 0".into()));
    }
    if a.size == 0 {
        return Err(SetupError("--size must be at least 1".into()));
    }
    if a.sample_interval.is_zero() {
        return Err(SetupError("--sample-interval must be more than 0".into()));
    }
    // The largest step decides whether the ladder fits this process's limits: found before
    // the small steps run, not after.
    if let Some(&largest) = ladder.last() {
        loadgen::preflight_auto(
            &loadgen::Config {
                conns: largest as usize,
                size: a.size.max(1),
                connect_timeout: a.connect_timeout,
                io_timeout: a.io_timeout,
                ..loadgen::Config::default()
            },
            None,
        )
        .map_err(|e| SetupError(format!("the largest sweep step: {e}")))?;
    }
    let target = sweep::cores_target(a.target_rate, a.target_conns).map_err(SetupError)?;
    let results_dir = a.results_dir.unwrap_or_else(save::default_results_dir);
    save::check_results_dir(&results_dir)?;
    let opts = SweepOptions {
        target,
        ladder,
        duration: a.duration,
        size: a.size,
        memory_budget_bytes: a.memory_budget,
        sample_interval: a.sample_interval,
        progress: true,
        validate: a.validate,
        results_dir,
        connect_timeout: a.connect_timeout,
        io_timeout: a.io_timeout,
    };
    sweep::execute(&spec, &opts)
}

fn fault_plan(a: &FaultArgs, default: &[&str]) -> Result<FaultPlan, SetupError> {
    let specs: Vec<String> = if a.faults.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        a.faults.clone()
    };
    Ok(FaultPlan::parse(&specs, a.seed)?)
}

fn cmd_soak(a: SoakArgs) -> Result<Verdict, SetupError> {
    let spec = server_spec(&a.server)?;
    if a.duration.is_zero() || a.io_timeout.is_zero() {
        return Err(SetupError(
            "--duration and --io-timeout must be more than 0".into(),
        ));
    }
    if a.max_fd_growth.is_nan() || a.max_fd_growth < 0.0 {
        return Err(SetupError("--max-fd-growth must be 0 or more".into()));
    }
    let load = loadgen::Config {
        conns: a.conns,
        duration: None,
        messages: Some(a.messages),
        size: a.size,
        io_timeout: a.io_timeout,
        ..loadgen::Config::default()
    };
    loadgen::preflight(&load)?;
    let warmup = a
        .warmup
        .unwrap_or_else(|| (a.duration / 10).min(Duration::from_secs(30)));
    let params = SoakParameters {
        duration_secs: a.duration.as_secs_f64(),
        conns: a.conns,
        messages: a.messages,
        size: a.size,
        io_timeout_secs: a.io_timeout.as_secs_f64(),
        faults: fault_plan(&a.faults, &soak::DEFAULT_FAULTS)?,
        warmup_secs: warmup.as_secs_f64(),
        max_fd_growth: a.max_fd_growth,
        max_rss_growth_kib: a.max_rss_growth as f64 / 1024.0,
    };
    let results_dir = a.results_dir.unwrap_or_else(save::default_results_dir);
    save::check_results_dir(&results_dir)?;
    soak::execute(
        &spec,
        &soak::SoakOptions {
            params,
            results_dir,
        },
    )
}

fn cmd_proxy(a: ProxyArgs) -> Result<Verdict, SetupError> {
    let plan = fault_plan(&a.faults, &[])?;
    proxy::execute(&proxy::ProxyOptions {
        listen: a.listen,
        upstream: a.to,
        plan,
        duration: a.duration,
        counts: a.counts,
    })
}
