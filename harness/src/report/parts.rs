//! The pieces more than one report kind is made of: the report's kind, the server it is about and
//! how that server ended, and one sample of the server's process tree; the machine's counters
//! (environment, listen queue, memory) are `sys::counters`' types, re-exported here. Plain data:
//! the readers that fill these in live in `sys` (the counters), `subject` (how the server ended)
//! and `probe::sampler` (samples).

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// The server's stats line (`{"event":"stats",...}` on stderr): the server crate's own struct, so
/// the two cannot drift apart.
pub use fork_echo_server::stats::{ReapedByReason as ReapedCounts, Stats as ServerStats};

/// The machine's counters a report records, filled in by `sys`'s readers; their types live there,
/// below `report`, so the readers need nothing of the format.
pub use crate::sys::counters::{Environment, ListenCounters, MemoryCounters};

/// The `kind` field every report carries; [`crate::report::AnyReport::read`] dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    Check,
    Run,
    Sweep,
    /// `harness soak` (`report::soak`), which prints its own summary and is not read back by
    /// `report`, `compare` or `plot`.
    Soak,
}

/// The server a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The program and flags, or the `--server-cmd`.
    pub description: String,
    /// Whether it speaks the fork echo server's stdout/stats contract.
    pub speaks_contract: bool,
    pub pid: i32,
    pub addr: String,
}

/// How a server process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitSummary {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitSummary {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(sig)) => {
                let name = Signal::try_from(sig).map_or("?", |s| s.as_str());
                write!(f, "killed by signal {sig} ({name})")
            }
            (None, None) => write!(f, "unknown exit"),
        }
    }
}

/// Processes left in the server's session or process group after it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Still running: real orphans.
    pub orphans: Vec<i32>,
    /// Exited but not yet reaped by their new parent (init); not running, so not orphans.
    pub unreaped: Vec<i32>,
}

/// How the server ended at the end of a `check`, a `run` or a sweep step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEnd {
    pub exit: ExitSummary,
    /// SIGTERM was not enough within the grace period.
    pub needed_sigkill: bool,
    /// What was left of its session and process group 3 s after it exited.
    pub leftovers: Leftovers,
    /// The stats line it printed at exit (contract servers only).
    pub final_stats: Option<ServerStats>,
}

/// One observation of the server's process tree, taken by `probe::sampler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_secs: f64,
    pub live_children: usize,
    /// Children that exited and are not reaped yet. A few are normal for a moment while many
    /// clients leave at once; see `lingering_zombies`.
    pub zombies: usize,
    /// Zombies that have been zombies for at least a second: a server that does not reap.
    pub lingering_zombies: usize,
    pub server_pss_kib: u64,
    /// Sum over the live children (children not yet measured are counted at the mean of those
    /// that were; see `children_unmeasured`).
    pub children_pss_kib: u64,
    pub children_private_kib: u64,
    /// RSS counts every shared page in full for every child, so it overstates the tree's cost;
    /// kept for comparison with tools that only show RSS.
    pub children_rss_kib: u64,
    /// Server plus children.
    pub tree_pss_kib: u64,
    /// Mean PSS of the measured live children; `null` with none.
    pub pss_per_child_kib: Option<f64>,
    /// Live children whose memory has not been read yet (new since the budget ran out).
    pub children_unmeasured: usize,
    /// `smaps_rollup` files read for this sample.
    pub memory_reads: usize,
    /// The server's open descriptors; `null` if it could not be read.
    pub server_fds: Option<usize>,
    /// The server's own CPU time (user + system) so far.
    pub server_cpu_secs: f64,
    /// How long taking this sample took.
    pub sample_ms: f64,
    /// The machine's memory counters when the sample was taken; absent in reports of schema 1.
    #[serde(default)]
    pub memory: Option<MemoryCounters>,
}
