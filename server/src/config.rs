//! Command-line flags and the validated `Config` the server core runs on. clap types stay here:
//! the rest of the crate never sees a parser type, only plain values that are already checked.

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
    /// End a session whose client sends nothing, or reads nothing, for this many seconds; 0 disables.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Echo buffer size in bytes.
    #[arg(long, default_value_t = 16384, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub buffer_size: u32,
    /// Seconds live sessions may finish after SIGTERM/SIGINT before children are terminated.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub shutdown_grace: u64,
    /// More logging: -v logs every accept, fork and reap; -vv adds escaped payload previews.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Errors only.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Each child adds this to its nice value (the parent's plus N, at most 19), so the accepting
    /// parent wins the CPU over thousands of busy sessions during a connect burst; 0 keeps
    /// children at the parent's priority. Raising one's own nice value needs no privilege.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=19))]
    pub child_nice: u8,
}

/// The validated configuration the server core uses.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub backlog: i32,
    pub max_children: usize,
    pub at_limit: AtLimit,
    /// `None` when idle sessions are never ended.
    pub idle_timeout: Option<Duration>,
    pub buffer_size: usize,
    pub shutdown_grace: Duration,
    pub log_level: u8,
    /// Added to each child's nice value (0..=19).
    pub child_nice: u8,
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
            idle_timeout: (cli.idle_timeout > 0).then(|| Duration::from_secs(cli.idle_timeout)),
            buffer_size: cli.buffer_size as usize,
            shutdown_grace: Duration::from_secs(cli.shutdown_grace),
            log_level,
            child_nice: cli.child_nice,
        }
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
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.buffer_size, 16384);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.log_level, crate::log::INFO);
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
    fn bad_values_are_usage_errors() {
        for args in [
            &["--max-children", "0"][..],
            &["--backlog", "0"],
            &["--buffer-size", "0"],
            &["--bind", "not-an-ip"],
            &["--at-limit", "drop"],
            &["-q", "-v"],
            &["--child-nice", "20"],
            &["--child-nice", "-1"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
