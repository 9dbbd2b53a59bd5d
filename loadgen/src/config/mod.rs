//! The validated configuration the core runs from. The CLI (`cli/`) turns flags into this;
//! the harness builds it directly. `Config::default()` matches the CLI defaults.
//!
//! Near the bottom: every other layer reads it.
//!
//! Layers it may import: `error`.
//! Crates it may import: `humantime`, `serde`.

pub mod stages;
pub(crate) mod start_at;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::config::stages::{StageUnit, Stages};
use crate::Error;

/// A percentile objective on echo latency, e.g. `p99=5ms`: the run fails if the echo latency at
/// `percentile` exceeds `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Percentile in (0, 100].
    pub percentile: f64,
    /// Highest acceptable latency at that percentile.
    pub max: Duration,
}

impl std::str::FromStr for Slo {
    type Err = String;

    /// Parses `pNN=DURATION`, e.g. `p99=5ms` or `p99.9=20ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, d) = s
            .split_once('=')
            .ok_or_else(|| format!("SLO {s:?} is not of the form p99=5ms"))?;
        let p = p
            .strip_prefix('p')
            .ok_or_else(|| format!("SLO {s:?}: percentile must look like p99"))?;
        let percentile: f64 = p
            .parse()
            .map_err(|_| format!("SLO {s:?}: {p:?} is not a number"))?;
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(format!("SLO {s:?}: percentile must be in (0, 100]"));
        }
        let max = humantime::parse_duration(d).map_err(|e| format!("SLO {s:?}: {e}"))?;
        Ok(Slo { percentile, max })
    }
}

impl std::fmt::Display for Slo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p{}={}",
            self.percentile,
            humantime::format_duration(self.max)
        )
    }
}

/// Which engine drives a run's connections (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// [`Engine::Tokio`] when a flag only it honours (`--rate`, `--threads`, `--stages`) is
    /// given; else decided by the server (`choose_engine`: uring or threads for a fork server,
    /// tokio for an in-process one), and [`Engine::Threads`] where nothing decided it.
    #[default]
    Auto,
    /// Connections as tasks on one `current_thread` tokio runtime per CPU (`engine::shards`).
    Tokio,
    /// One OS thread per connection, blocking sockets (`engine::threads`): against a
    /// fork-per-connection server it measures the server, not its own scheduling (BENCH.md).
    Threads,
    /// The threads engine's connect phase and first echo, then each steady plan on io_uring
    /// (`session::uring`): a batch of sends and receives per system call, one driver thread
    /// per CPU, about one context switch per echo against a fork server instead of two.
    Uring,
}

impl Engine {
    /// The name `--engine` takes and the report's `parameters.engine` shows.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Auto => "auto",
            Engine::Tokio => "tokio",
            Engine::Threads => "threads",
            Engine::Uring => "uring",
        }
    }

    /// Whether connections connect (and make their first echo) on threads of their own: the
    /// threads engine, and the uring engine until its steady phase.
    pub fn thread_per_connection(self) -> bool {
        matches!(self, Engine::Threads | Engine::Uring)
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Engine::Auto),
            "tokio" => Ok(Engine::Tokio),
            "threads" => Ok(Engine::Threads),
            "uring" => Ok(Engine::Uring),
            _ => Err(format!(
                "--engine {s:?} is not one of auto, threads, tokio, uring"
            )),
        }
    }
}

/// Everything a run needs, already validated by [`Config::validate`] (which `run` calls).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Target address (names are resolved by the caller; the CLI takes the first address).
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub conns: usize,
    /// Length of the measured phase after connecting (plus `warmup`). Exclusive with `messages`.
    pub duration: Option<Duration>,
    /// Messages per connection, the first-echo message included. Exclusive with `duration`.
    pub messages: Option<u64>,
    /// Message size in bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Total messages per second over all connections (open loop); `None` = closed loop.
    pub rate: Option<f64>,
    /// New connections per second during ramp-up; `None` = all at once.
    pub connect_rate: Option<f64>,
    /// A connect slower than this counts as a connect timeout.
    pub connect_timeout: Duration,
    /// An echo slower than this counts as an echo timeout and ends that connection.
    pub io_timeout: Duration,
    /// Time after connecting whose messages are excluded from histograms and counters.
    pub warmup: Duration,
    /// Local addresses bound round-robin, one per connection; empty = the kernel chooses.
    pub source_ips: Vec<IpAddr>,
    /// Percentiles shown in text and JSON, each in (0, 100].
    pub percentiles: Vec<f64>,
    /// Show a progress bar on stderr (only ever drawn when stderr is a terminal).
    pub progress: bool,
    /// Fraction of failed messages (of those sent) tolerated before the run counts as failed.
    pub max_error_rate: f64,
    /// Fraction of failed sessions (of the connections asked for: connect failed, session
    /// failed, or never started) tolerated before the run counts as failed.
    pub max_session_failures: f64,
    /// Percentile objectives on echo latency.
    pub slos: Vec<Slo>,
    /// Hard cap on the whole run; `None` = computed (connect phase + warmup + duration + margin).
    pub deadline: Option<Duration>,
    /// Event-loop threads of [`crate::run`] (connections are sharded over them); `None` = one per
    /// CPU this process may run on. Ignored by [`crate::run_async`], which uses the caller's runtime.
    pub threads: Option<usize>,
    /// The engine asked for; [`Config::engine`] resolves [`Engine::Auto`].
    pub engine: Engine,
    /// Wall-clock instant the measured phase starts (`--start-at`): connections are made first,
    /// then held until this instant, so loadgens on several hosts measure the same window.
    pub start_at: Option<SystemTime>,
    /// Run id written into the report (`--run-id`); `None` = made up at start.
    pub run_id: Option<String>,
    /// This process's index among the workers of the run (`--worker-index`).
    pub worker_index: u64,
    /// A worker of a split run: after connecting it says so on stdout and waits for the parent's
    /// go on stdin, so every worker's measured phase starts once all of them have connected.
    pub stdio_barrier: bool,
    /// `--hlog`: write the HdrHistogram interval log of the run here (atomically, at the end).
    pub hlog: Option<PathBuf>,
    /// Length of each `--hlog` interval.
    pub hlog_interval: Duration,
    /// `--stages`: the load ramps through these (see `engine::stages`). With connection targets
    /// `conns` is the peak and `duration` the plan's length; with rate targets `rate` is the
    /// peak rate and `duration` the plan's length.
    pub stages: Option<Stages>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8888),
            conns: 100,
            duration: Some(Duration::from_secs(10)),
            messages: None,
            size: 64,
            pipeline: 1,
            rate: None,
            connect_rate: None,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            warmup: Duration::ZERO,
            source_ips: Vec::new(),
            percentiles: vec![50.0, 90.0, 99.0, 99.9, 99.99],
            progress: true,
            max_error_rate: 0.0,
            max_session_failures: 0.0,
            slos: Vec::new(),
            deadline: None,
            threads: None,
            engine: Engine::Auto,
            start_at: None,
            run_id: None,
            worker_index: 0,
            stdio_barrier: false,
            hlog: None,
            hlog_interval: DEFAULT_HLOG_INTERVAL,
            stages: None,
        }
    }
}

/// The default `--hlog-interval`.
pub const DEFAULT_HLOG_INTERVAL: Duration = Duration::from_secs(1);

/// Extra time past the planned end of a run before outstanding work is cut off, at least.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// The margin past the planned end of a run: [`DEADLINE_MARGIN`], or twice as long as the
/// connect burst took if that is longer. Ending tens of thousands of sessions costs the server
/// about what starting them did (each child exits and is reaped, starving the sessions still
/// waiting for their last echo), on top of an echo tail that already grows with the load. Measured
/// on two busy cores, 50,000 sessions: with a fixed 2 s margin 39,632 sessions were cut off as
/// `run_deadline` after a 32 s burst; with a margin of one burst (23 s), 378 still were.
pub(crate) fn end_margin(connect_burst: Duration) -> Duration {
    DEADLINE_MARGIN.max(connect_burst.saturating_mul(2))
}

impl Config {
    /// Checks the combination of settings; every error names the offending flag.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.conns == 0 {
            return bad("--conns must be at least 1".into());
        }
        match (self.duration, self.messages) {
            (Some(_), Some(_)) => return bad("--duration and --messages are exclusive".into()),
            (None, None) => return bad("one of --duration or --messages is required".into()),
            (Some(d), None) if d.is_zero() => return bad("--duration must be above 0".into()),
            (None, Some(0)) => return bad("--messages must be at least 1".into()),
            _ => {}
        }
        if self.size == 0 {
            return bad("--size must be at least 1 byte".into());
        }
        if self.size > 64 << 20 {
            return bad("--size must be at most 64 MiB".into());
        }
        if self.pipeline == 0 {
            return bad("--pipeline must be at least 1".into());
        }
        for (flag, r) in [("--rate", self.rate), ("--connect-rate", self.connect_rate)] {
            if let Some(r) = r {
                if !(r.is_finite() && r > 0.0) {
                    return bad(format!("{flag} must be a positive number, got {r}"));
                }
            }
        }
        if self.connect_timeout.is_zero() || self.io_timeout.is_zero() {
            return bad("--connect-timeout and --io-timeout must be above 0".into());
        }
        for ip in &self.source_ips {
            if ip.is_ipv4() != self.addr.is_ipv4() {
                return bad(format!(
                    "--source-ip {ip} is not of the same address family as the target {}",
                    self.addr
                ));
            }
        }
        for p in self
            .percentiles
            .iter()
            .chain(self.slos.iter().map(|s| &s.percentile))
        {
            if !(*p > 0.0 && *p <= 100.0) {
                return bad(format!("percentile {p} is not in (0, 100]"));
            }
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return bad("--max-error-rate must be between 0 and 1".into());
        }
        if self.threads == Some(0) {
            return bad("--threads must be at least 1".into());
        }
        self.validate_engine()?;
        if !(0.0..=1.0).contains(&self.max_session_failures) {
            return bad("--max-session-failures must be between 0 and 1".into());
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return bad("--deadline must be above 0".into());
        }
        if self.hlog_interval < Duration::from_millis(1) {
            return bad("--hlog-interval must be at least 1ms".into());
        }
        if let Some(at) = self.start_at {
            start_at::check_start_at(at, SystemTime::now())?;
        }
        if let Some(stages) = &self.stages {
            self.validate_stages(stages)?;
        }
        Ok(())
    }

    /// The engine this run uses: the one asked for, or for [`Engine::Auto`] the threads engine
    /// unless a flag only the tokio engine honours is given.
    pub fn engine(&self) -> Engine {
        let tokio_only = self.rate.is_some() || self.threads.is_some() || self.stages.is_some();
        match self.engine {
            Engine::Auto if tokio_only => Engine::Tokio,
            Engine::Auto => Engine::Threads,
            chosen => chosen,
        }
    }

    /// `--engine threads` runs one closed-loop session per thread: flags only the tokio engine
    /// honours are refused.
    fn validate_engine(&self) -> Result<(), Error> {
        if !self.engine.thread_per_connection() {
            return Ok(());
        }
        let name = self.engine.name();
        let bad = |m: String| Err(Error::Config(m));
        if self.rate.is_some() {
            return bad(format!(
                "--rate needs --engine tokio (the {name} engine is closed loop)"
            ));
        }
        if self.threads.is_some() {
            return bad(format!(
                "--threads sets the tokio engine's event-loop threads; the {name} engine \
                 runs one thread per connection (use --engine tokio)"
            ));
        }
        if self.stages.is_some() {
            return bad(format!(
                "--stages needs --engine tokio (the {name} engine runs each connection once, \
                 from connect to the end of the run)"
            ));
        }
        Ok(())
    }

    /// `--stages` fixes what the plan decides; flags that would contradict it are refused.
    fn validate_stages(&self, stages: &Stages) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(format!("--stages: {m}")));
        if self.duration != Some(stages.total()) || self.messages.is_some() {
            return bad("the stages set the run's length; drop --duration and --messages");
        }
        match stages.unit {
            StageUnit::Connections => {
                if self.conns as f64 != stages.peak() {
                    return bad("connection stages set --conns (the peak); drop --conns");
                }
                if self.rate.is_some() || self.connect_rate.is_some() || !self.warmup.is_zero() {
                    return bad(
                        "connection stages ramp the connections themselves; drop --rate, \
                         --connect-rate and --warmup (rate stages: 10s:200/s,...)",
                    );
                }
            }
            StageUnit::MessagesPerSec => {
                if self.rate != Some(stages.peak()) {
                    return bad("rate stages set the rate; drop --rate");
                }
            }
        }
        Ok(())
    }

    /// Connection `--stages`: connections open and close on the plan, not in a connect phase.
    pub(crate) fn staged_connections(&self) -> bool {
        self.stages
            .as_ref()
            .is_some_and(|s| s.unit == StageUnit::Connections)
    }

    /// Upper bound of the connect phase: the ramp-up, one connect timeout and one echo timeout.
    pub(crate) fn connect_phase_bound(&self) -> Duration {
        let ramp = self
            .connect_rate
            .map(|r| Duration::from_secs_f64(self.conns as f64 / r))
            .unwrap_or_default();
        ramp + self.connect_timeout + self.io_timeout + Duration::from_secs(1)
    }

    /// Open loop: how long after the barrier the send schedule starts. Every session is woken by
    /// the barrier at once, and waking a thousand tasks on two cores takes milliseconds; messages
    /// intended during that stampede would be sent late by loadgen and charged to the server.
    /// Closed loop sends on echoes, not on a schedule, so it starts at once.
    pub(crate) fn schedule_lead(&self) -> Duration {
        match self.rate {
            Some(_) => Duration::from_millis(10) + Duration::from_micros(10 * self.conns as u64),
            None => Duration::ZERO,
        }
    }

    /// Time a connection spends sending after the schedule starts, when it is known up front.
    pub(crate) fn planned_send_time(&self) -> Option<Duration> {
        match (self.duration, self.messages, self.rate) {
            (Some(d), _, _) => Some(self.warmup + d),
            (None, Some(n), Some(r)) => {
                let per_conn = r / self.conns as f64;
                Some(self.warmup + Duration::from_secs_f64(n as f64 / per_conn))
            }
            // Closed loop with a message count: each message is bounded by the io timeout.
            (None, Some(n), None) => Some(
                self.io_timeout
                    .saturating_mul(n.min(u32::MAX as u64) as u32),
            ),
            (None, None, _) => None,
        }
    }
}

#[cfg(test)]
mod end_margin_tests {
    use super::*;

    #[test]
    fn end_margin_grows_with_a_long_connect_burst_but_never_below_the_fixed_margin() {
        assert_eq!(end_margin(Duration::from_millis(5)), DEADLINE_MARGIN);
        assert_eq!(end_margin(Duration::from_secs(32)), Duration::from_secs(64));
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;

    #[test]
    fn auto_is_threads_unless_a_tokio_only_flag_is_given() {
        let closed = Config::default();
        assert_eq!(closed.engine(), Engine::Threads);
        let open = Config {
            rate: Some(100.0),
            ..Config::default()
        };
        assert_eq!(open.engine(), Engine::Tokio);
        let sharded = Config {
            threads: Some(2),
            ..Config::default()
        };
        assert_eq!(sharded.engine(), Engine::Tokio);
        let staged = Config {
            stages: Some("2s:4".parse().unwrap()),
            ..Config::default()
        };
        assert_eq!(staged.engine(), Engine::Tokio);
        let chosen = Config {
            engine: Engine::Tokio,
            ..Config::default()
        };
        assert_eq!(chosen.engine(), Engine::Tokio);
    }

    #[test]
    fn the_thread_per_connection_engines_refuse_rate_threads_and_stages() {
        for engine in [Engine::Threads, Engine::Uring] {
            for config in [
                Config {
                    engine,
                    rate: Some(100.0),
                    ..Config::default()
                },
                Config {
                    engine,
                    threads: Some(2),
                    ..Config::default()
                },
                Config {
                    engine,
                    conns: 4,
                    duration: Some(Duration::from_secs(2)),
                    stages: Some("2s:4".parse().unwrap()),
                    ..Config::default()
                },
            ] {
                let e = config.validate().unwrap_err().to_string();
                assert!(e.contains("--engine tokio"), "{e}");
                assert!(e.contains(engine.name()), "{e}");
            }
        }
        for name in ["auto", "threads", "tokio", "uring"] {
            assert_eq!(name.parse::<Engine>().unwrap().name(), name);
        }
    }
}
