//! The command line: clap types live only here. Flags become a validated [`Config`], the run's
//! [`Report`] is printed and exported, and the outcome becomes the exit code (0 ok, 1 the run
//! failed its checks, 2 usage or setup error). `loadgen merge` combines reports.
//!
//! The top layer: it may use every layer below it.
//!
//! Layers it may import: `workers`, `report`, `config`, `error`, `interrupt`, `engine_choice`.
//! Crates it may import: `clap`, `humantime`.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::stages::{StageUnit, Stages};
use crate::report::hlog::IntervalLog;
use crate::{report::output, Config, Error, Report, Slo};

/// The exit codes, as `--help` lists them.
const EXIT_CODES_HELP: &str = "Exit codes:\n  0  ok\n  \
1  the run failed its checks: no connection, more failed sessions or messages than \
--max-session-failures / --max-error-rate, an SLO missed, or Ctrl-C stopped it (the report is \
still written, marked interrupted)\n  \
2  usage or setup error: bad flag, unresolvable target, limits too low, unwritable output, \
unreadable report\n  \
130  a second Ctrl-C";

/// A tokio echo load generator that verifies every byte and records HdrHistograms.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    args_conflicts_with_subcommands = true,
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Merge reports from several loadgen processes or hosts into one (histograms added exactly,
    /// counters summed) and print it like a single run.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Target HOST:PORT (names resolve, IPv4 preferred; IPv6 as [::1]:8888).
    #[arg(long, default_value = "127.0.0.1:8888")]
    addr: String,
    /// Concurrent connections [default: 100; with connection --stages, their peak].
    #[arg(short = 'c', long)]
    conns: Option<usize>,
    /// Run length after connecting, e.g. 10s, 1m [default: 10s].
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, conflicts_with = "messages")]
    duration: Option<Duration>,
    /// Messages per connection (the first echo included) instead of a duration.
    #[arg(long)]
    messages: Option<u64>,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Total messages per second (open loop, latency from intended send times); default: closed
    /// loop. A list of stages ramps it, as --stages does: 10s:200/s,30s:2000/s.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<RateArg>,
    /// Ramp the load through stages (k6's model: each target reached linearly over its stage's
    /// duration, from the previous one, starting at 0): connections, 10s:100,30s:1000,10s:0; or
    /// the total rate over --conns connections, 10s:200/s,30s:2000/s. Sets the run's length.
    #[arg(long, conflicts_with_all = ["duration", "messages", "rate"])]
    stages: Option<Stages>,
    /// New connections per second during ramp-up; default: all at once.
    #[arg(long)]
    connect_rate: Option<f64>,
    /// A connect slower than this is a connect timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    connect_timeout: Duration,
    /// An echo slower than this is an echo timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    io_timeout: Duration,
    /// Time after connecting excluded from histograms and counters.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Local addresses to bind round-robin (IP[,IP...]), to get past one address's ephemeral ports.
    #[arg(long = "source-ip", value_delimiter = ',')]
    source_ip: Vec<IpAddr>,
    /// Percentiles shown in text and JSON: `50 90 99` or `50,90,99`.
    #[arg(long, num_args = 1.., value_delimiter = ',', default_values_t = [50.0, 90.0, 99.0, 99.9, 99.99])]
    percentiles: Vec<f64>,
    /// Hard cap on the whole run [default: connect phase + warmup + duration + the longer of 2s
    /// and twice the connect phase].
    #[arg(long, value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
    /// No progress bar (it is only ever drawn when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Event-loop threads of the tokio engine, connections sharded over them [default: one per
    /// CPU loadgen may use].
    #[arg(long)]
    threads: Option<usize>,
    /// What drives the connections: `threads` (one OS thread per connection, blocking sockets:
    /// measures a fork-per-connection server rather than loadgen's scheduling), `uring` (a
    /// thread per connection to connect, then every steady echo on io_uring, one driver thread
    /// per CPU: one context switch per echo against a fork server instead of two), `tokio` (event
    /// loops; needed for --rate, --threads and --stages), or `auto`: tokio if one of those is
    /// given, else one probe connection with one echoed byte to a server on this host: uring
    /// (threads where io_uring is refused) when a new process serves it (fork per connection) or
    /// the host cannot tell, tokio when the listening process serves it itself.
    #[arg(long, default_value = "auto", value_parser = str::parse::<crate::Engine>)]
    engine: crate::Engine,
    /// Start the measured phase at this wall-clock time (RFC 3339 or Unix seconds), after
    /// connecting; for loadgens on several hosts that should measure the same window.
    #[arg(long, value_parser = crate::config::start_at::parse_start_at)]
    start_at: Option<std::time::SystemTime>,
    /// Run id written into the report; give every loadgen of one multi-host run the same one.
    #[arg(long)]
    run_id: Option<String>,
    /// This loadgen's index among the loadgens of the run (e.g. the Kubernetes completion index).
    #[arg(long, default_value_t = 0)]
    worker_index: u64,
    /// Worker processes to split the connections over [default: as many as the descriptor
    /// limit requires].
    #[arg(long)]
    procs: Option<usize>,
    /// Write the HdrHistogram interval log (format 1.3: connect, first-echo and echo per
    /// interval, tagged) here at the end of the run.
    #[arg(long, value_name = "PATH")]
    hlog: Option<PathBuf>,
    /// Length of each --hlog interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", requires = "hlog")]
    hlog_interval: Duration,
    /// Internal, set by a splitting parent on its workers: wait for its go after connecting.
    #[arg(long, hide = true)]
    worker_barrier: bool,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
struct MergeArgs {
    /// Reports written with --json.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Merge reports whose target, message size, pipeline or open/closed-loop mode differ (the
    /// merged report lists the fields that do).
    #[arg(long)]
    allow_mixed: bool,
    /// Merge these hlogs (the runs' --hlog files) into --hlog, aligned by wall clock.
    #[arg(long, value_name = "PATH", num_args = 1.., requires = "hlog")]
    hlog_in: Vec<PathBuf>,
    /// Write the merged interval log here.
    #[arg(long, value_name = "PATH", requires = "hlog_in")]
    hlog: Option<PathBuf>,
    #[command(flatten)]
    report: ReportArgs,
}

/// What a run and `merge` both do with the finished report: export it, print it, check it.
#[derive(Debug, Args)]
struct ReportArgs {
    /// Write the JSON report here (`-` = stdout; the text then goes to stderr).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the echo latency's HdrHistogram percentile distribution here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Fraction of failed messages (of those sent) tolerated before exit 1.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    max_error_rate: f64,
    /// Fraction of failed sessions tolerated before exit 1: of the connections asked for, those
    /// whose connect or session failed or that never started before the run ended.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    max_session_failures: f64,
    /// Percentile objective on echo latency, e.g. p99=5ms (repeatable); a miss exits 1.
    #[arg(long)]
    slo: Vec<Slo>,
    /// Quiet: a one-line summary instead of the full text.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Resolves `target`, preferring an address of the source addresses' family, else IPv4.
fn resolve(target: &str, source_ips: &[IpAddr]) -> Result<SocketAddr, Error> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| Error::Resolve {
            target: target.into(),
            reason: e.to_string(),
        })?
        .collect();
    let want_v4 = source_ips.first().is_none_or(|ip| ip.is_ipv4());
    addrs
        .iter()
        .find(|a| a.is_ipv4() == want_v4)
        .or(addrs.first())
        .copied()
        .ok_or_else(|| Error::Resolve {
            target: target.into(),
            reason: "no addresses".into(),
        })
}

/// `--rate`: a number, or stages of rates.
#[derive(Debug, Clone)]
enum RateArg {
    Fixed(f64),
    Staged(Stages),
}

fn parse_rate(text: &str) -> Result<RateArg, String> {
    if !text.contains(':') {
        return text
            .parse()
            .map(RateArg::Fixed)
            .map_err(|_| format!("{text:?} is not a number nor stages like 10s:200/s,30s:2000/s"));
    }
    // Every target of a --rate list is a rate; `/s` is optional there.
    let rates: Vec<String> = text
        .split(',')
        .map(|p| match p.trim().ends_with("/s") {
            true => p.trim().to_owned(),
            false => format!("{}/s", p.trim()),
        })
        .collect();
    rates.join(",").parse().map(RateArg::Staged)
}

impl RunArgs {
    /// The stages, from --stages or a --rate list.
    fn stages(&self) -> Option<Stages> {
        match (&self.stages, &self.rate) {
            (Some(s), _) | (None, Some(RateArg::Staged(s))) => Some(s.clone()),
            _ => None,
        }
    }

    /// `(conns, duration, rate)` as the flags and stages decide them.
    fn load_shape(&self) -> Result<(usize, Option<Duration>, Option<f64>), Error> {
        let stages = self.stages();
        let rate = match (&self.rate, &stages) {
            (Some(RateArg::Fixed(r)), _) => Some(*r),
            (_, Some(s)) if s.unit == StageUnit::MessagesPerSec => Some(s.peak()),
            _ => None,
        };
        let duration = match (&stages, self.duration, self.messages) {
            (Some(s), _, _) => Some(s.total()),
            (None, None, None) => Some(Duration::from_secs(10)),
            (None, d, _) => d,
        };
        let conns = match &stages {
            Some(s) if s.unit == StageUnit::Connections => {
                if self.conns.is_some() {
                    return Err(Error::Config(
                        "--stages of connections sets the connection count; drop --conns".into(),
                    ));
                }
                s.peak() as usize
            }
            _ => self.conns.unwrap_or(100),
        };
        Ok((conns, duration, rate))
    }

    fn to_config(&self) -> Result<Config, Error> {
        let (conns, duration, rate) = self.load_shape()?;
        // Validated by `preflight_auto` before the engine probe connects, and again by
        // `run_auto` (which library callers call alone); both cheap next to the run.
        Ok(Config {
            addr: resolve(&self.addr, &self.source_ip)?,
            conns,
            duration,
            messages: self.messages,
            size: self.size,
            pipeline: self.pipeline,
            rate,
            connect_rate: self.connect_rate,
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            warmup: self.warmup,
            source_ips: self.source_ip.clone(),
            percentiles: self.percentiles.clone(),
            progress: !self.no_progress && !self.report.quiet,
            max_error_rate: self.report.max_error_rate,
            max_session_failures: self.report.max_session_failures,
            slos: self.report.slo.clone(),
            deadline: self.deadline,
            threads: self.threads,
            engine: self.engine,
            start_at: self.start_at,
            run_id: self.run_id.clone(),
            worker_index: self.worker_index,
            stdio_barrier: self.worker_barrier,
            hlog: self.hlog.clone(),
            hlog_interval: self.hlog_interval,
            stages: self.stages(),
        })
    }
}

/// Entry point of the `loadgen` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match &cli.command {
        Some(Command::Merge(m)) => merge(m),
        None => run(&cli.run),
    };
    match outcome {
        Ok(failed) if failed.is_empty() => ExitCode::SUCCESS,
        Ok(failed) => {
            for line in failed {
                eprintln!("loadgen: FAILED: {line}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &RunArgs) -> Result<Vec<String>, Error> {
    let mut config = args.to_config()?;
    args.report.check_outputs()?;
    if let Some(path) = &args.hlog {
        output::check_writable(path)?;
    }
    // Usage and limit errors first: the engine probe connects to the server.
    crate::preflight_auto(&config, args.procs)?;
    // On a terminal, say which engine `auto` chose and why (the report's `engine` says it always).
    if let Some(model) = crate::choose_engine(&mut config) {
        if !args.report.quiet && std::io::stderr().is_terminal() {
            eprintln!(
                "loadgen: engine {} (auto: {})",
                config.engine.name(),
                model.describe()
            );
        }
    }
    // First Ctrl-C stops the load; the summary is printed and the report written as usual,
    // marked `interrupted`. A second one quits.
    crate::interrupt::install_ctrl_c_handler("loadgen", || {});
    let exe = std::env::current_exe().ok();
    let report = crate::run_auto(config.clone(), args.procs, exe.as_deref())?;
    present(&report, &args.report)?;
    Ok(report.failed_checks_for(&config))
}

fn merge(args: &MergeArgs) -> Result<Vec<String>, Error> {
    for (flag, v) in [
        ("--max-error-rate", args.report.max_error_rate),
        ("--max-session-failures", args.report.max_session_failures),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::Config(format!("{flag} must be between 0 and 1")));
        }
    }
    args.report.check_outputs()?;
    let reports = args
        .reports
        .iter()
        .map(|p| Report::read_json(p))
        .collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<String> = args
        .reports
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let merged = Report::merge_with(&reports, &labels, args.allow_mixed)?;
    if let Some(path) = &args.hlog {
        let logs = args
            .hlog_in
            .iter()
            .map(|p| IntervalLog::read(p))
            .collect::<Result<Vec<_>, _>>()?;
        IntervalLog::merge(&logs)?.write(path)?;
    }
    present(&merged, &args.report)?;
    Ok(merged.failed_checks(
        args.report.max_error_rate,
        args.report.max_session_failures,
        &args.report.slo,
    ))
}

impl ReportArgs {
    /// Fails before any work when `--json` or `--hgrm` could not be written afterwards.
    fn check_outputs(&self) -> Result<(), Error> {
        for path in [&self.json, &self.hgrm].into_iter().flatten() {
            output::check_writable(path)?;
        }
        Ok(())
    }
}

/// Writes the exports, then the text (to stderr when the JSON goes to stdout).
fn present(report: &Report, args: &ReportArgs) -> Result<(), Error> {
    if let Some(path) = &args.json {
        output::write_json(report, path)?;
    }
    if let Some(path) = &args.hgrm {
        output::write_hgrm(&report.latency.echo.histogram()?, path)?;
    }
    let json_on_stdout = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let out: &mut dyn Write = if json_on_stdout {
        &mut stderr
    } else {
        &mut stdout
    };
    let written = if args.quiet {
        output::write_quiet(report, out)
    } else {
        output::write_text(report, out)
    };
    written.and_then(|_| out.flush()).map_err(|e| Error::File {
        path: PathBuf::from(if json_on_stdout {
            "<stderr>"
        } else {
            "<stdout>"
        }),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::time::SystemTime;

    /// A config with every field away from its default, written as a full struct literal: a field
    /// added to `Config` does not compile here until this test covers it.
    fn every_field_set(duration: Option<Duration>, messages: Option<u64>) -> Config {
        let start_at = SystemTime::now() + Duration::from_nanos(60_000_000_123);
        Config {
            addr: "127.0.0.9:4321".parse().expect("addr"),
            conns: 12,
            duration,
            messages,
            size: 100,
            pipeline: 3,
            rate: Some(1200.0),
            connect_rate: Some(300.0),
            connect_timeout: Duration::from_millis(1500),
            io_timeout: Duration::from_millis(2500),
            warmup: Duration::from_millis(250),
            source_ips: vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            ],
            percentiles: vec![50.0, 99.5],
            progress: true,
            max_error_rate: 0.01,
            max_session_failures: 0.02,
            slos: vec!["p99=5ms".parse().expect("slo")],
            deadline: Some(Duration::from_secs(40)),
            threads: Some(2),
            // `--threads` runs on the tokio engine (the threads engine refuses it).
            engine: crate::Engine::Tokio,
            start_at: Some(start_at),
            run_id: Some("parent".into()),
            worker_index: 1,
            stdio_barrier: false,
            hlog: Some("/tmp/parent.hlog".into()),
            hlog_interval: Duration::from_millis(500),
            // --stages runs in one process: `run_auto` refuses to split it over workers.
            stages: None,
        }
    }

    /// What the worker flags say must be the parent's config with the worker's share: a setting
    /// forgotten in `worker_args` would run the worker with the default instead, and differ here.
    #[test]
    fn worker_args_parse_back_to_the_workers_config() {
        for (duration, messages) in [(Some(Duration::from_millis(3500)), None), (None, Some(9))] {
            let parent = every_field_set(duration, messages);
            parent.validate().expect("the parent's config is valid");
            let report = Path::new("/tmp/worker-7.json");
            let args = crate::workers::worker_args(&parent, 3, 4, "rid", 7, report);
            let cli = Cli::try_parse_from(std::iter::once("loadgen".to_string()).chain(args))
                .expect("worker flags parse");
            let worker = cli.run.to_config().expect("worker config");
            worker.validate().expect("the worker's config is valid");
            let expected = Config {
                conns: 4,
                rate: Some(400.0),
                connect_rate: Some(100.0),
                run_id: Some("rid".into()),
                worker_index: 7,
                stdio_barrier: true,
                progress: false,
                // The parent judges the merged run: a worker tolerates everything, has no SLO.
                max_error_rate: 1.0,
                max_session_failures: 1.0,
                slos: Vec::new(),
                // Each worker logs beside its report; the parent merges the logs into its own.
                hlog: Some(report.with_extension("hlog")),
                ..parent
            };
            assert_eq!(worker, expected);
            assert_eq!(cli.run.procs, Some(1), "a worker never splits again");
            assert!(cli.run.report.quiet);
            assert_eq!(cli.run.report.json.as_deref(), Some(report));
        }
    }
}
