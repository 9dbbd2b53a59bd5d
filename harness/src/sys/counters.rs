//! The machine's counters as plain serde data: the [`Environment`] a report records, the kernel's
//! [`ListenCounters`] and the [`MemoryCounters`] a connection moves. The readers beside this file
//! fill them in; they live here, below `report` (which embeds them, re-exported from
//! `report::parts`), so that `sys` imports nothing of the harness.

use serde::{Deserialize, Serialize};

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
