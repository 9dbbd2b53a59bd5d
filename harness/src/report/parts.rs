//! The pieces more than one report kind is made of: the report's kind, the machine it was made
//! on, the server it is about and how that server ended, the kernel's listen-queue counters, and
//! one sample of the server's process tree. Plain data: the readers that fill these in live in
//! `sys` (environment, listen counters), `target` (how the server ended) and `probe::sampler`
//! (samples).

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// The server's stats line (`{"event":"stats",...}` on stderr): the server crate's own struct, so
/// the two cannot drift apart.
pub use fork_echo_server::stats::{ReapedByReason as ReapedCounts, Stats as ServerStats};

/// The `kind` field every report carries; [`crate::report::AnyReport::read`] dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    Check,
    Run,
    Sweep,
}

/// The machine a report was made on (read by `Environment::collect` in `sys::environment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub hostname: String,
    pub kernel: String,
    pub cpus: usize,
    pub harness_version: String,
    /// `net.core.somaxconn`: the kernel's cap on any listen backlog.
    pub somaxconn: Option<u64>,
    pub pid_max: Option<u64>,
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    /// `MemTotal` of `/proc/meminfo`, for chart titles; absent before schema 3.
    #[serde(default)]
    pub mem_total_kib: Option<u64>,
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

/// The kernel's listen-queue counters (`TcpExt` in `/proc/net/netstat`, read by
/// `ListenCounters::read` in `sys::procfs`). They count for the whole network namespace, so
/// anything else listening on this machine moves them too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenCounters {
    /// Times a completed connection found the accept queue full.
    pub listen_overflows: u64,
    /// SYNs or ACKs dropped at a listening socket (includes the overflows).
    pub listen_drops: u64,
}

impl ListenCounters {
    /// The change from `earlier` to `self` (counters only grow; a wrap reads as 0).
    pub fn since(&self, earlier: &ListenCounters) -> ListenCounters {
        ListenCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(earlier.listen_drops),
        }
    }
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

/// The system-wide memory counters a connection moves, read by `sys::memory` (absolute values;
/// a sweep step subtracts the ones read before its server started). They count for the whole
/// machine: other processes, and the load generator's own sockets, move them too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryCounters {
    /// `MemAvailable` of `/proc/meminfo`: what the kernel could hand out without swapping.
    pub mem_available_kib: u64,
    /// `KernelStack`: one fixed-size stack per task.
    pub kernel_stack_kib: u64,
    /// `PageTables`: each child's own page tables, copied at fork.
    pub page_tables_kib: u64,
    /// `Slab`: kernel objects (task, files, sockets, ...), reclaimable or not.
    pub slab_kib: u64,
    /// `SUnreclaim`: the part of `Slab` the kernel cannot give back under pressure.
    pub sunreclaim_kib: u64,
    /// `SReclaimable`: the part of `Slab` the kernel counts as reclaimable (dentries, inodes,
    /// socket inodes among them) and `MemAvailable` counts half of as available; absent before
    /// schema 3.
    #[serde(default)]
    pub sreclaimable_kib: Option<u64>,
    /// `MemFree`: pages nobody uses; absent before schema 3.
    #[serde(default)]
    pub mem_free_kib: Option<u64>,
    /// `mem` of the `TCP:` line of `/proc/net/sockstat` (pages, converted): socket buffers of
    /// both ends of every TCP connection on the machine.
    pub tcp_mem_kib: u64,
    /// `alloc` of the same line: TCP sockets allocated on the machine.
    pub tcp_sockets: u64,
    /// `VmRSS` of the harness itself, where the load generator runs.
    pub harness_rss_kib: Option<u64>,
    /// Resident memory of every other process on the machine (not the server's tree, not the
    /// harness), from `/proc/PID/stat`: builds running beside a sweep allocate and free hundreds of
    /// MiB, and this is how much of a `MemAvailable` change was theirs.
    #[serde(default)]
    pub others_rss_kib: Option<u64>,
}

impl MemoryCounters {
    /// The mean of two readings, one before a step's server started and one after it and its
    /// children were gone: the baseline a step's peak is measured against. Whatever else on the
    /// machine drifts steadily over the step cancels out, and a level shift (a build starting or
    /// ending) counts half. The harness's own RSS is the earlier one: the load generator's growth
    /// is measured from before it started.
    pub fn midpoint(before: &MemoryCounters, after: &MemoryCounters) -> MemoryCounters {
        let mid = |a: u64, b: u64| (a + b) / 2;
        MemoryCounters {
            mem_available_kib: mid(before.mem_available_kib, after.mem_available_kib),
            kernel_stack_kib: mid(before.kernel_stack_kib, after.kernel_stack_kib),
            page_tables_kib: mid(before.page_tables_kib, after.page_tables_kib),
            slab_kib: mid(before.slab_kib, after.slab_kib),
            sunreclaim_kib: mid(before.sunreclaim_kib, after.sunreclaim_kib),
            sreclaimable_kib: before
                .sreclaimable_kib
                .zip(after.sreclaimable_kib)
                .map(|(a, b)| mid(a, b)),
            mem_free_kib: before
                .mem_free_kib
                .zip(after.mem_free_kib)
                .map(|(a, b)| mid(a, b)),
            tcp_mem_kib: mid(before.tcp_mem_kib, after.tcp_mem_kib),
            tcp_sockets: mid(before.tcp_sockets, after.tcp_sockets),
            harness_rss_kib: before.harness_rss_kib,
            others_rss_kib: match (before.others_rss_kib, after.others_rss_kib) {
                (Some(a), Some(b)) => Some(mid(a, b)),
                (a, b) => a.or(b),
            },
        }
    }
}
