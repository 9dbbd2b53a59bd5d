//! Everything that bounds concurrent connections (memory, tasks, pids, descriptors, ports), each
//! turned into a connection count by [`predict_max`], which names the limit that binds first and
//! the knob that raises it. Pure arithmetic over [`Limits`]; `sys::limits` reads them.

use std::fmt;

/// Bytes in the units the limit details are written in, short enough for a 120-column line.
const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

use serde::{Deserialize, Serialize};

use super::fit::LinearFit;

/// Which limit a prediction says binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `--memory-budget` divided by the fitted bytes per connection.
    MemoryBudget,
    /// `MemAvailable` from `/proc/meminfo` divided by the fitted bytes per connection.
    AvailableMemory,
    /// `RLIMIT_NPROC` of the server's user (every child is a task of that user).
    RlimitNproc,
    /// `pids.max` of the cgroup the server runs in.
    CgroupPids,
    /// `kernel.pid_max`: every child takes a pid.
    PidMax,
    /// `kernel.threads-max`: every child is a task.
    ThreadsMax,
    /// The server's own `--max-children`.
    MaxChildren,
    /// `RLIMIT_NOFILE` of the load generator: one descriptor per connection.
    LoadgenNofile,
    /// `fs.file-max`: two open files (client and server side) per connection, system-wide.
    SystemFileMax,
    /// Ephemeral ports per source IP times the number of source IPs, towards one server port.
    EphemeralPorts,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LimitKind::MemoryBudget => "memory budget",
            LimitKind::AvailableMemory => "available memory",
            LimitKind::RlimitNproc => "RLIMIT_NPROC",
            LimitKind::CgroupPids => "cgroup pids.max",
            LimitKind::PidMax => "kernel.pid_max",
            LimitKind::ThreadsMax => "kernel.threads-max",
            LimitKind::MaxChildren => "server --max-children",
            LimitKind::LoadgenNofile => "load generator RLIMIT_NOFILE",
            LimitKind::SystemFileMax => "fs.file-max",
            LimitKind::EphemeralPorts => "ephemeral ports",
        };
        f.write_str(name)
    }
}

/// Everything that bounds the number of concurrent connections, as read before the server starts.
///
/// Every field is optional: `None` means unknown or unlimited, and that limit is left out of the
/// prediction rather than guessed. The server's own `RLIMIT_NOFILE` is deliberately absent: the
/// parent closes each client descriptor after forking, so it holds a constant number of descriptors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// The user's `--memory-budget`.
    pub memory_budget_bytes: Option<u64>,
    /// `MemAvailable` from `/proc/meminfo` when read.
    pub mem_available_bytes: Option<u64>,
    /// Soft `RLIMIT_NPROC`; `None` when unlimited.
    pub rlimit_nproc_soft: Option<u64>,
    /// Tasks (threads) the real uid already runs, counted from `/proc/*/status`.
    pub nproc_used: Option<u64>,
    /// False when the kernel does not apply `RLIMIT_NPROC` to this user: root, or a process with
    /// `CAP_SYS_ADMIN` or `CAP_SYS_RESOURCE`.
    pub nproc_enforced: bool,
    /// Smallest `pids.max - pids.current` over the cgroup the harness runs in and its ancestors.
    pub cgroup_pids_headroom: Option<u64>,
    pub pid_max: Option<u64>,
    pub threads_max: Option<u64>,
    /// Tasks alive system-wide (from `/proc/loadavg`); they use pids and count against threads-max.
    pub tasks_used: Option<u64>,
    /// The server's `--max-children`, when it has one.
    pub server_max_children: Option<u64>,
    /// Soft `RLIMIT_NOFILE` of the load generator (the harness process itself).
    pub loadgen_nofile_soft: Option<u64>,
    /// Hard `RLIMIT_NOFILE` of the load generator: the most `ulimit -n` can raise the soft limit to
    /// without privilege.
    pub loadgen_nofile_hard: Option<u64>,
    /// Descriptors the load generator already has open.
    pub loadgen_fds_used: Option<u64>,
    pub file_max: Option<u64>,
    /// Open files allocated system-wide (first field of `/proc/sys/fs/file-nr`).
    pub files_used: Option<u64>,
    /// Usable ports in `ip_local_port_range` minus `ip_local_reserved_ports`.
    pub ephemeral_ports_per_ip: Option<u64>,
    /// Source IPs the load generator spreads its connections over (at least 1).
    pub source_ips: u64,
}

/// One limit turned into a connection count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitCandidate {
    pub kind: LimitKind,
    pub max_connections: u64,
    /// The command or flag that raises it.
    pub knob: String,
    /// The arithmetic, for a reader to check.
    pub detail: String,
}

/// The predicted maximum of concurrent connections and the limit that binds first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    pub max_connections: u64,
    pub binding: LimitKind,
    /// The command or flag that raises the binding limit.
    pub knob: String,
    /// Every known limit, smallest first (ties in [`LimitKind`] order).
    pub candidates: Vec<LimitCandidate>,
}

/// Inputs of [`Limits::read_from_system`] that only the caller knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitInputs {
    pub memory_budget_bytes: Option<u64>,
    pub server_max_children: Option<u64>,
    /// Source IPs the load generator uses; 0 is taken as 1.
    pub source_ips: u64,
}

/// What one connection costs in memory, as fitted by the sweep: the memory limits divide by it.
/// Not part of [`Limits`]: a sweep report stores each fit once, in its capacity model
/// (`memory_fit`, `total_memory.total_fit`); reports of schema 1 and 2 also copied the slopes and
/// intercepts into `limits`, which readers now ignore.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryFits {
    /// Total memory (user space and kernel) against live connections; used when known.
    pub total: Option<LinearFit>,
    /// Total PSS (user space only) against live connections; used when `total` is unknown.
    pub pss: Option<LinearFit>,
}

/// Turns every known limit into a connection count and picks the smallest.
///
/// Each connection costs the server one child (one task, one pid), the load generator one descriptor
/// and one local port, and the system two open files; and the memory `fits` say. `None` when no
/// limit is known.
pub fn predict_max(limits: &Limits, fits: &MemoryFits) -> Option<Prediction> {
    let mut candidates = Vec::new();
    let mut add = |kind, max_connections: u64, knob: &str, detail: String| {
        candidates.push(LimitCandidate {
            kind,
            max_connections,
            knob: knob.to_owned(),
            detail,
        })
    };
    memory_limits(limits, fits, &mut add);
    task_limits(limits, &mut add);
    descriptor_and_port_limits(limits, &mut add);

    candidates.sort_by(|a, b| {
        a.max_connections
            .cmp(&b.max_connections)
            .then(a.kind.cmp(&b.kind))
    });
    let first = candidates.first()?;
    Some(Prediction {
        max_connections: first.max_connections,
        binding: first.kind,
        knob: first.knob.clone(),
        candidates,
    })
}

/// The memory limits (`--memory-budget`, `MemAvailable`) divided by the fitted cost per
/// connection.
fn memory_limits(
    limits: &Limits,
    fits: &MemoryFits,
    add: &mut impl FnMut(LimitKind, u64, &str, String),
) {
    // The total (user space + kernel) when the sweep measured it; PSS alone undercounts a fork
    // child about threefold, so a prediction from it says so in its detail.
    let costs = |fit: Option<LinearFit>| fit.filter(|f| f.slope > 0.0);
    let memory_model = match costs(fits.total) {
        Some(fit) => Some((fit, "total memory")),
        None => costs(fits.pss).map(|fit| (fit, "PSS, user space only")),
    };
    if let Some((
        LinearFit {
            slope, intercept, ..
        },
        what,
    )) = memory_model
    {
        let intercept = intercept.max(0.0);
        if let Some(budget) = limits.memory_budget_bytes {
            add(
                LimitKind::MemoryBudget,
                memory_connections(budget, intercept, slope),
                "--memory-budget / add RAM",
                format!(
                    "({:.0} MiB budget - {:.1} MiB base) / {:.1} KiB per connection ({what})",
                    budget as f64 / MIB,
                    intercept / MIB,
                    slope / KIB
                ),
            );
        }
        if let Some(available) = limits.mem_available_bytes {
            add(
                LimitKind::AvailableMemory,
                memory_connections(available, intercept, slope),
                "add RAM / stop other processes",
                format!(
                    "({:.0} MiB MemAvailable - {:.1} MiB base) / {:.1} KiB per connection ({what})",
                    available as f64 / MIB,
                    intercept / MIB,
                    slope / KIB
                ),
            );
        }
    }
}

/// The limits on tasks and pids: each connection is one more child of the server.
fn task_limits(limits: &Limits, add: &mut impl FnMut(LimitKind, u64, &str, String)) {
    if limits.nproc_enforced {
        if let Some(soft) = limits.rlimit_nproc_soft {
            let used = limits.nproc_used.unwrap_or(0);
            // One task is the server's parent.
            add(
                LimitKind::RlimitNproc,
                soft.saturating_sub(used).saturating_sub(1),
                "ulimit -u",
                format!("{soft} soft - {used} tasks of this user - 1 server parent"),
            );
        }
    }
    if let Some(headroom) = limits.cgroup_pids_headroom {
        add(
            LimitKind::CgroupPids,
            headroom.saturating_sub(1),
            "raise the cgroup's pids.max (systemd TasksMax=)",
            format!("{headroom} pids left in the cgroup - 1 server parent"),
        );
    }
    let tasks_used = limits.tasks_used.unwrap_or(0);
    if let Some(pid_max) = limits.pid_max {
        // Pids 0..=300 are never handed to user processes after wrap-around (RESERVED_PIDS).
        let usable = pid_max.saturating_sub(301);
        add(
            LimitKind::PidMax,
            usable.saturating_sub(tasks_used).saturating_sub(1),
            "sysctl kernel.pid_max",
            format!("{pid_max} pid_max - 301 reserved - {tasks_used} tasks - 1 server parent"),
        );
    }
    if let Some(threads_max) = limits.threads_max {
        add(
            LimitKind::ThreadsMax,
            threads_max.saturating_sub(tasks_used).saturating_sub(1),
            "sysctl kernel.threads-max",
            format!("{threads_max} threads-max - {tasks_used} tasks - 1 server parent"),
        );
    }
    if let Some(max_children) = limits.server_max_children {
        add(
            LimitKind::MaxChildren,
            max_children,
            "--max-children",
            format!("server --max-children {max_children}"),
        );
    }
}

/// The limits on descriptors and ports: each connection is one descriptor and one local port
/// of the load generator, and two open files of the system.
fn descriptor_and_port_limits(limits: &Limits, add: &mut impl FnMut(LimitKind, u64, &str, String)) {
    if let Some(soft) = limits.loadgen_nofile_soft {
        let used = limits.loadgen_fds_used.unwrap_or(0);
        let knob = match limits.loadgen_nofile_hard {
            Some(hard) if hard > soft => format!("ulimit -n (up to the hard limit {hard})"),
            _ => "ulimit -n (raise the hard limit as root)".to_owned(),
        };
        add(
            LimitKind::LoadgenNofile,
            soft.saturating_sub(used),
            &knob,
            format!("{soft} soft - {used} descriptors already open"),
        );
    }
    if let Some(file_max) = limits.file_max {
        let used = limits.files_used.unwrap_or(0);
        add(
            LimitKind::SystemFileMax,
            file_max.saturating_sub(used) / 2,
            "sysctl fs.file-max",
            format!("({file_max} file-max - {used} open files) / 2 per connection"),
        );
    }
    if let Some(ports) = limits.ephemeral_ports_per_ip {
        let ips = limits.source_ips.max(1);
        add(
            LimitKind::EphemeralPorts,
            ports.saturating_mul(ips),
            "--source-ip 127.0.0.2,127.0.0.3,... / sysctl net.ipv4.ip_local_port_range",
            format!("{ports} ports x {ips} source IP(s)"),
        );
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, bound by {} (raise with: {})",
            self.max_connections, self.binding, self.knob
        )
    }
}

/// `(bytes - intercept) / slope`, floored, never negative.
pub fn memory_connections(bytes: u64, intercept: f64, slope: f64) -> u64 {
    let n = ((bytes as f64 - intercept) / slope).floor();
    if n <= 0.0 {
        0
    } else if n >= u64::MAX as f64 {
        u64::MAX
    } else {
        n as u64
    }
}
