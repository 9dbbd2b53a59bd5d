//! Command-line flags and the validated `Config` the server core runs on. clap types stay here:
//! the rest of the crate never sees a parser type, only plain values that are already checked.
//!
//! Layers it may import: `log`.
//! Crates it may import: `clap`, `humantime`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What the accept loop does while `max_children` sessions are live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AtLimit {
    /// Stop accepting until a child exits: clients wait in the listen backlog, nothing is lost.
    Wait,
    /// Accept and close at once, so clients see EOF quickly instead of waiting.
    Close,
}

/// How the access log (one line per finished session, at `-v`) is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// logfmt: `event=session peer=… pid=… duration=…s bytes_in=… bytes_out=… end=…`.
    Text,
    /// One JSON object per line, like the stats line.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "fork-echo-server",
    version,
    about = "A fork-per-connection TCP echo server that reaps its children, bounds them, and shuts down cleanly",
    long_about = "A fork-per-connection TCP echo server that reaps its children, bounds them, and shuts down cleanly.\n\n\
The first line on stdout is `listening on IP:PORT`; everything else goes to stderr.\n\
Signals: SIGTERM/SIGINT drain then stop (a second SIGINT skips the grace period), SIGUSR1 prints a stats line.\n\
Exit codes: 0 clean shutdown, 2 usage or start-up error."
)]
pub struct Cli {
    /// Address to listen on (0.0.0.0 or :: for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 8888)]
    pub port: u16,
    /// Listen backlog (the kernel caps it at net.core.somaxconn; the effective value is logged).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub backlog: u32,
    /// Most live children (concurrent sessions).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_children: u32,
    /// What to do with new clients while at --max-children.
    #[arg(long, value_enum, default_value_t = AtLimit::Wait)]
    pub at_limit: AtLimit,
    /// Most live sessions per client address (IPv6: per /64); a client beyond it is accepted and
    /// closed at once, whatever --at-limit says, so one address cannot take every child.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_source: Option<u32>,
    /// Most new sessions per second (a token bucket holding one second's worth); connects beyond
    /// it wait in the listen backlog.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rate: Option<u32>,
    /// End a session once no byte has come from the client, or none of the echo could be sent to
    /// it, for this long (`60`, `30s`, `500ms`, `2m`; a bare number is seconds); 0 disables.
    #[arg(long, default_value = "60", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub idle_timeout: Duration,
    /// Echo buffer size in bytes.
    #[arg(long, default_value_t = 16384, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub buffer_size: u32,
    /// How long live sessions may finish after SIGTERM/SIGINT before children are terminated
    /// (`10`, `10s`, `500ms`).
    #[arg(long, default_value = "10", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub shutdown_grace: Duration,
    /// More logging: -v logs every accept, fork and reap; -vv adds escaped payload previews.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Format of the access log's per-session lines (written at -v).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Errors only.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Each child adds this to its nice value (the parent's plus N, at most 19), so the accepting
    /// parent wins the CPU over thousands of busy sessions during a connect burst; 0 keeps
    /// children at the parent's priority. Raising one's own nice value needs no privilege.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=19))]
    pub child_nice: u8,
    /// Rewrite this file with the metrics in OpenMetrics text (atomically: temp file + rename)
    /// every --metrics-interval and at exit, for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// How often --metrics-file is rewritten.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_interval_flag,
          requires = "metrics_file")]
    pub metrics_interval: Duration,
    /// Serve the same metrics at http://ADDR/metrics (IP:PORT; port 0 picks one, logged at start).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// `--metrics-interval`: a duration flag of at least 100 ms (a file rewritten more often is
/// I/O in the poll loop for no reader).
fn parse_interval_flag(text: &str) -> Result<Duration, String> {
    let interval = parse_duration_flag(text)?;
    if interval < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(interval)
}

/// The longest duration any flag takes. Deadlines are `Instant + duration`, which panics on
/// overflow; a week is far beyond any sensible timeout and far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a duration flag like loadgen and the harness do (`5s`, `500ms`, `2m`, `1h 30m`); a
/// bare integer stays seconds, as it always was. Values above `MAX_DURATION` are refused.
fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|err| format!("{err} (examples: 30, 30s, 500ms, 2m)"))?,
    };
    if duration > MAX_DURATION {
        return Err(format!(
            "{} is longer than the most this server takes (a week)",
            humantime::format_duration(duration)
        ));
    }
    Ok(duration)
}

/// The metrics flags, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsConfig {
    pub file: Option<std::path::PathBuf>,
    pub interval: Duration,
    pub addr: Option<SocketAddr>,
}

impl MetricsConfig {
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.addr.is_some()
    }
}

/// The validated configuration the server core uses.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub backlog: i32,
    pub max_children: usize,
    pub at_limit: AtLimit,
    /// `None`: no per-source limit.
    pub max_per_source: Option<u32>,
    /// New sessions per second; `None`: unlimited.
    pub max_rate: Option<u32>,
    /// `None` when idle sessions are never ended.
    pub idle_timeout: Option<Duration>,
    pub buffer_size: usize,
    pub shutdown_grace: Duration,
    pub log_level: u8,
    pub log_format: LogFormat,
    /// Added to each child's nice value (0..=19).
    pub child_nice: u8,
    pub metrics: MetricsConfig,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        let log_level = if cli.quiet {
            crate::log::QUIET
        } else {
            crate::log::INFO + cli.verbose.min(2)
        };
        Config {
            addr: SocketAddr::new(cli.bind, cli.port),
            // clap bounds it to i32::MAX.
            backlog: i32::try_from(cli.backlog).unwrap_or(i32::MAX),
            max_children: cli.max_children as usize,
            at_limit: cli.at_limit,
            max_per_source: cli.max_per_source,
            max_rate: cli.max_rate,
            idle_timeout: (!cli.idle_timeout.is_zero()).then_some(cli.idle_timeout),
            buffer_size: cli.buffer_size as usize,
            shutdown_grace: cli.shutdown_grace,
            log_level,
            log_format: cli.log_format,
            child_nice: cli.child_nice,
            metrics: MetricsConfig {
                file: cli.metrics_file,
                interval: cli.metrics_interval,
                addr: cli.metrics_addr,
            },
        }
    }
}

impl Config {
    /// The configuration a command line gives (`args[0]` is the program name), parsed exactly as
    /// the server parses its own: for callers that start the server with flags and need to know
    /// what it will run with (the harness reads `max_children` from it). The error is clap's, so
    /// `--help`, `--version` and usage errors print and exit as the server's own would.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args).map(Config::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("fork-echo-server").chain(args.iter().copied()))
            .map(Config::from)
    }

    #[test]
    fn defaults_match_the_documented_table() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.addr, "127.0.0.1:8888".parse().unwrap());
        assert_eq!(config.backlog, 1024);
        assert_eq!(config.max_children, 4096);
        assert_eq!(config.at_limit, AtLimit::Wait);
        assert_eq!(config.max_per_source, None);
        assert_eq!(config.max_rate, None);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.buffer_size, 16384);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.log_level, crate::log::INFO);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.child_nice, 10);
    }

    #[test]
    fn zero_idle_timeout_disables_it_and_ipv6_binds() {
        let config = parse(&["--idle-timeout", "0", "--bind", "::", "--port", "0", "-vv"]).unwrap();
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.addr, "[::]:0".parse().unwrap());
        assert_eq!(config.log_level, crate::log::TRACE);
    }

    #[test]
    fn durations_take_units_and_bare_numbers_are_seconds() {
        let config = parse(&["--idle-timeout", "500ms", "--shutdown-grace", "2m"]).unwrap();
        assert_eq!(config.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(config.shutdown_grace, Duration::from_secs(120));
        let config = parse(&["--idle-timeout", "7", "--shutdown-grace", "5s"]).unwrap();
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(7)));
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
        let config = parse(&["--idle-timeout", "0s", "--shutdown-grace", "0"]).unwrap();
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.shutdown_grace, Duration::ZERO);
        assert_eq!(
            parse(&["--shutdown-grace", "7days"])
                .unwrap()
                .shutdown_grace,
            MAX_DURATION
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--max-children", "0"][..],
            &["--backlog", "0"],
            &["--buffer-size", "0"],
            &["--bind", "not-an-ip"],
            &["--at-limit", "drop"],
            &["--max-per-source", "0"],
            &["--max-rate", "0"],
            &["--log-format", "xml"],
            &["-q", "-v"],
            &["--shutdown-grace", "18446744073709551615"],
            &["--idle-timeout", "604801"],
            &["--shutdown-grace", "-1"],
            &["--shutdown-grace", "8days"],
            &["--idle-timeout", "5 parsecs"],
            &["--child-nice", "20"],
            &["--child-nice", "-1"],
            &["--metrics-interval", "5s"],
            &["--metrics-file", "m.prom", "--metrics-interval", "10ms"],
            &["--metrics-addr", "localhost"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn from_args_is_the_servers_own_parse() {
        let config = Config::from_args(["fork-echo-server", "--max-children=32", "--port", "0"])
            .expect("valid flags");
        assert_eq!(config.max_children, 32);
        assert_eq!(config.addr, "127.0.0.1:0".parse().unwrap());
        let err = Config::from_args(["fork-echo-server", "--max-children", "0"]).expect_err("0");
        assert_eq!(err.exit_code(), 2);
        let help = Config::from_args(["fork-echo-server", "--help"]).expect_err("help");
        assert_eq!(help.exit_code(), 0);
    }
}
