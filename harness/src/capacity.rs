//! The capacity model of a sweep: what one connection costs in memory (a least-squares fit of total
//! PSS against live connections), where echo latency turns (the knee), and how many concurrent
//! connections this machine can hold, naming the limit that binds first and the knob that raises it.
//!
//! Everything here except [`Limits::read_from_system`] is a pure function of its inputs, so the
//! arithmetic is tested with fake numbers; the system reader is split into small parsers over file
//! contents so that each `/proc` format is tested too.

use std::fmt;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod system;

/// A least-squares straight line `y = slope * x + intercept`.
///
/// Generic in its units: for the memory model `x` is live connections and `y` total PSS in bytes, so
/// `slope` is bytes per connection and `intercept` the bytes the server costs with no connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
    /// Coefficient of determination in [0, 1]; 1 when every point lies on the line.
    pub r_squared: f64,
    /// Number of points the line was fitted to.
    pub n: usize,
}

impl LinearFit {
    /// The fitted `y` at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }

    /// `"<slope> per connection + <intercept>"` with `format` for both numbers, and a minus sign
    /// (not `+ -`) when the intercept is negative, as it is when a fit over a wide ladder bends
    /// below the smallest step.
    pub fn per_connection_text(&self, format: impl Fn(f64) -> String) -> String {
        let sign = if self.intercept < 0.0 { '-' } else { '+' };
        format!(
            "{} per connection {sign} {}",
            format(self.slope),
            format(self.intercept.abs())
        )
    }
}

/// Fits `y = slope * x + intercept` by ordinary least squares.
///
/// `None` with fewer than two points, when every `x` is the same (no slope can be fitted), or when a
/// coordinate is not finite (a NaN would otherwise poison the whole report).
pub fn fit_line(points: &[(f64, f64)]) -> Option<LinearFit> {
    if points.len() < 2 || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    // Centred sums: PSS values are ~1e9 bytes, and raw sums of squares would lose the slope to rounding.
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in points {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= f64::EPSILON * mean_x.abs().max(1.0) {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let ss_res: f64 = points
        .iter()
        .map(|&(x, y)| {
            let r = y - (slope * x + intercept);
            r * r
        })
        .sum();
    let r_squared = if syy > 0.0 {
        (1.0 - ss_res / syy).clamp(0.0, 1.0)
    } else {
        // Every y equal: the horizontal line through them is exact.
        1.0
    };
    Some(LinearFit {
        slope,
        intercept,
        r_squared,
        n: points.len(),
    })
}

/// The latency knee: the connection count of the first step (in ascending connections) whose echo
/// p99 is more than twice the p99 of the smallest step.
///
/// `steps` are `(connections, echo p99 in µs)` in any order; steps with a non-finite p99 (a step that
/// failed before measuring) are ignored. `None` when no step crosses the line or there are fewer than
/// two usable steps.
pub fn latency_knee(steps: &[(u64, f64)]) -> Option<u64> {
    let mut usable: Vec<(u64, f64)> = steps
        .iter()
        .copied()
        .filter(|(_, p99)| p99.is_finite() && *p99 >= 0.0)
        .collect();
    usable.sort_by_key(|&(conns, _)| conns);
    let (&(_, base_p99_us), rest) = usable.split_first()?;
    rest.iter()
        .find(|&&(_, p99)| p99 > 2.0 * base_p99_us)
        .map(|&(conns, _)| conns)
}

/// A prediction checked on this machine: a line fitted without the largest step, compared with what
/// that step measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HoldOutCheck {
    /// The fit over every point except the held-out one.
    pub fit: LinearFit,
    /// `x` of the held-out point (the largest `x`; for the memory model, live connections).
    pub held_out_x: f64,
    pub predicted_y: f64,
    pub measured_y: f64,
    /// `(predicted - measured) / measured * 100`: positive when the model over-estimates.
    pub error_percent: f64,
}

/// Fits a line to every point but the one with the largest `x`, predicts that point, and reports the
/// error in percent.
///
/// This is how the memory model is checked: PSS at the biggest step, predicted from the smaller ones.
/// `None` when fewer than two points remain for the fit, they cannot be fitted, or the measured value
/// is zero (no percentage exists).
pub fn check_prediction(points: &[(f64, f64)]) -> Option<HoldOutCheck> {
    if points.len() < 3 {
        return None;
    }
    let held_out_index = points
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .map(|(i, _)| i)?;
    let (held_out_x, measured_y) = points[held_out_index];
    let rest: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != held_out_index)
        .map(|(_, &p)| p)
        .collect();
    let fit = fit_line(&rest)?;
    if measured_y == 0.0 || !measured_y.is_finite() {
        return None;
    }
    let predicted_y = fit.predict(held_out_x);
    Some(HoldOutCheck {
        fit,
        held_out_x,
        predicted_y,
        measured_y,
        error_percent: (predicted_y - measured_y) / measured_y * 100.0,
    })
}

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
    /// Fitted total PSS per live connection (the slope of the memory model).
    pub pss_slope_bytes_per_conn: Option<f64>,
    /// Fitted total PSS with no connection (the intercept of the memory model).
    pub pss_intercept_bytes: Option<f64>,
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
    /// The fitted memory model, if a sweep has produced one yet.
    pub pss_fit: Option<LinearFit>,
    pub server_max_children: Option<u64>,
    /// Source IPs the load generator uses; 0 is taken as 1.
    pub source_ips: u64,
}

impl Limits {
    /// Reads the limits of this machine and of this process (the load generator runs in it) from
    /// `/proc`, `/sys/fs/cgroup` and `getrlimit`. Call it before the server starts, so the server's own
    /// tasks are not counted as used. A file that cannot be read leaves its field `None`.
    pub fn read_from_system(inputs: &LimitInputs) -> Limits {
        system::read(
            Path::new("/proc"),
            Path::new("/sys/fs/cgroup"),
            &system::Rlimits::of_this_process(),
            inputs,
        )
    }
}

/// Turns every known limit into a connection count and picks the smallest.
///
/// Each connection costs the server one child (one task, one pid), the load generator one descriptor
/// and one local port, and the system two open files. `None` when no limit is known.
pub fn predict_max(limits: &Limits) -> Option<Prediction> {
    let mut candidates = Vec::new();
    let mut add = |kind, max_connections: u64, knob: &str, detail: String| {
        candidates.push(LimitCandidate {
            kind,
            max_connections,
            knob: knob.to_owned(),
            detail,
        })
    };

    if let Some(slope) = limits.pss_slope_bytes_per_conn.filter(|s| *s > 0.0) {
        let intercept = limits.pss_intercept_bytes.unwrap_or(0.0).max(0.0);
        if let Some(budget) = limits.memory_budget_bytes {
            add(
                LimitKind::MemoryBudget,
                memory_connections(budget, intercept, slope),
                "--memory-budget / add RAM",
                format!(
                    "({budget} B budget - {intercept:.0} B base) / {slope:.0} B per connection"
                ),
            );
        }
        if let Some(available) = limits.mem_available_bytes {
            add(
                LimitKind::AvailableMemory,
                memory_connections(available, intercept, slope),
                "add RAM / stop other processes",
                format!(
                    "({available} B MemAvailable - {intercept:.0} B base) / {slope:.0} B per connection"
                ),
            );
        }
    }
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

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, bound by {} (raise with: {})",
            self.max_connections, self.binding, self.knob
        )
    }
}

/// What the capacity model needs from one sweep step. A figure the step did not measure is NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelStep {
    pub conns: u64,
    /// Children alive when PSS was measured: the `x` of the memory fit, since a step that fell short
    /// of its connections costs what it holds, not what it asked for.
    pub live_children: u64,
    pub total_pss_bytes: f64,
    pub echo_p99_us: f64,
}

/// The capacity model of a sweep, as it goes into the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityModel {
    /// Total PSS (bytes) against live children: slope is bytes per connection.
    pub memory_fit: Option<LinearFit>,
    /// The memory fit without the largest step, checked against it.
    pub memory_check: Option<HoldOutCheck>,
    pub latency_knee_conns: Option<u64>,
    /// The limits the prediction used, with the fitted slope and intercept filled in.
    pub limits: Limits,
    pub prediction: Option<Prediction>,
}

impl CapacityModel {
    /// Fits memory, finds the knee and predicts the maximum from `steps` and the machine's `limits`
    /// (whose memory-model fields are replaced by the fit made here).
    pub fn from_steps(steps: &[ModelStep], mut limits: Limits) -> CapacityModel {
        let memory_points: Vec<(f64, f64)> = steps
            .iter()
            .filter(|s| s.total_pss_bytes.is_finite())
            .map(|s| (s.live_children as f64, s.total_pss_bytes))
            .collect();
        let memory_fit = fit_line(&memory_points);
        limits.pss_slope_bytes_per_conn = memory_fit.map(|f| f.slope);
        limits.pss_intercept_bytes = memory_fit.map(|f| f.intercept);
        let knee_steps: Vec<(u64, f64)> = steps.iter().map(|s| (s.conns, s.echo_p99_us)).collect();
        CapacityModel {
            memory_fit,
            memory_check: check_prediction(&memory_points),
            latency_knee_conns: latency_knee(&knee_steps),
            prediction: predict_max(&limits),
            limits,
        }
    }
}

/// `(bytes - intercept) / slope`, floored, never negative.
fn memory_connections(bytes: u64, intercept: f64, slope: f64) -> u64 {
    let n = ((bytes as f64 - intercept) / slope).floor();
    if n <= 0.0 {
        0
    } else if n >= u64::MAX as f64 {
        u64::MAX
    } else {
        n as u64
    }
}

/// Reads a file that holds one number, as most of `/proc/sys` does.
fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn per_connection_text_signs_the_intercept() {
        let fit = |intercept| super::LinearFit {
            slope: 2.0,
            intercept,
            r_squared: 1.0,
            n: 2,
        };
        let plain = |v: f64| format!("{v}");
        assert_eq!(fit(3.0).per_connection_text(plain), "2 per connection + 3");
        assert_eq!(fit(-3.0).per_connection_text(plain), "2 per connection - 3");
    }

    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn fit_recovers_known_slope_and_intercept() {
        // 150 KiB per connection over a 2 MiB server, the size of a real fork child.
        let points: Vec<(f64, f64)> = [1u32, 10, 50, 100, 1000, 4000]
            .iter()
            .map(|&c| (f64::from(c), 2_097_152.0 + 153_600.0 * f64::from(c)))
            .collect();
        let fit = fit_line(&points).expect("fit");
        assert!(close(fit.slope, 153_600.0, 1e-9), "{fit:?}");
        assert!(close(fit.intercept, 2_097_152.0, 1e-9), "{fit:?}");
        assert!(close(fit.r_squared, 1.0, 1e-12), "{fit:?}");
        assert_eq!(fit.n, 6);
    }

    #[test]
    fn fit_of_noisy_points_has_r_squared_below_one() {
        let points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 5.0)];
        let fit = fit_line(&points).expect("fit");
        // Hand-computed: slope 1.1, intercept 0, SS_res 2.7, SS_tot 8.75.
        assert!(close(fit.slope, 1.1, 1e-12), "{fit:?}");
        assert!(fit.intercept.abs() < 1e-12, "{fit:?}");
        assert!(close(fit.r_squared, 1.0 - 2.7 / 8.75, 1e-12), "{fit:?}");
    }

    #[test]
    fn fit_refuses_what_cannot_be_fitted() {
        assert_eq!(fit_line(&[]), None);
        assert_eq!(fit_line(&[(1.0, 2.0)]), None);
        assert_eq!(fit_line(&[(5.0, 2.0), (5.0, 9.0)]), None);
        assert_eq!(fit_line(&[(1.0, 2.0), (f64::NAN, 3.0)]), None);
    }

    #[test]
    fn flat_points_fit_exactly() {
        let fit = fit_line(&[(1.0, 7.0), (2.0, 7.0), (3.0, 7.0)]).expect("fit");
        assert_eq!((fit.slope, fit.intercept, fit.r_squared), (0.0, 7.0, 1.0));
    }

    #[test]
    fn knee_is_first_step_over_twice_the_smallest() {
        let steps = [
            (1000, 250.0),
            (1, 100.0),
            (10, 150.0),
            (100, 201.0),
            (4000, 900.0),
        ];
        assert_eq!(latency_knee(&steps), Some(100));
        // Exactly twice is not over.
        assert_eq!(latency_knee(&[(1, 100.0), (10, 200.0)]), None);
        assert_eq!(latency_knee(&[(1, 100.0)]), None);
        assert_eq!(latency_knee(&[]), None);
        // A failed step (NaN) neither becomes the base nor the knee.
        assert_eq!(
            latency_knee(&[(1, f64::NAN), (10, 100.0), (50, 150.0), (100, 250.0)]),
            Some(100)
        );
    }

    #[test]
    fn hold_out_check_predicts_the_largest_step() {
        // Linear up to 100, then the largest step measures 10% under the line.
        let mut points: Vec<(f64, f64)> = [1.0, 10.0, 50.0, 100.0]
            .iter()
            .map(|&c| (c, 1_000_000.0 + 100_000.0 * c))
            .collect();
        let on_line = 1_000_000.0 + 100_000.0 * 1000.0;
        points.insert(0, (1000.0, on_line / 1.1));
        let check = check_prediction(&points).expect("check");
        assert_eq!(check.held_out_x, 1000.0);
        assert_eq!(check.fit.n, 4);
        assert!(close(check.predicted_y, on_line, 1e-9), "{check:?}");
        assert!(close(check.error_percent, 10.0, 1e-9), "{check:?}");
        assert_eq!(check_prediction(&points[..2]), None);
    }

    /// Limits where nothing binds below 1_000_000 connections, so a test can lower one.
    fn roomy() -> Limits {
        Limits {
            memory_budget_bytes: Some(1 << 50),
            mem_available_bytes: Some(1 << 50),
            pss_slope_bytes_per_conn: Some(100_000.0),
            pss_intercept_bytes: Some(1_000_000.0),
            rlimit_nproc_soft: Some(10_000_000),
            nproc_used: Some(10),
            nproc_enforced: true,
            cgroup_pids_headroom: Some(10_000_000),
            pid_max: Some(4_194_304),
            threads_max: Some(10_000_000),
            tasks_used: Some(200),
            server_max_children: Some(5_000_000),
            loadgen_nofile_soft: Some(10_000_000),
            loadgen_nofile_hard: Some(10_000_000),
            loadgen_fds_used: Some(9),
            file_max: Some(100_000_000),
            files_used: Some(1000),
            ephemeral_ports_per_ip: Some(28_232),
            source_ips: 100,
        }
    }

    fn binding(limits: &Limits) -> (LimitKind, u64, String) {
        let p = predict_max(limits).expect("prediction");
        (p.binding, p.max_connections, p.knob)
    }

    #[test]
    fn each_limit_can_bind() {
        let (kind, _, _) = binding(&roomy());
        assert_eq!(kind, LimitKind::EphemeralPorts, "roomy baseline");

        let mut l = roomy();
        l.memory_budget_bytes = Some(1_000_000 + 100_000 * 500 + 99_999);
        assert_eq!(binding(&l).0, LimitKind::MemoryBudget);
        assert_eq!(binding(&l).1, 500);
        assert_eq!(binding(&l).2, "--memory-budget / add RAM");

        let mut l = roomy();
        l.mem_available_bytes = Some(1_000_000 + 100_000 * 700);
        assert_eq!(binding(&l).0, LimitKind::AvailableMemory);
        assert_eq!(binding(&l).1, 700);

        let mut l = roomy();
        l.rlimit_nproc_soft = Some(4096);
        assert_eq!(
            binding(&l),
            (LimitKind::RlimitNproc, 4085, "ulimit -u".into())
        );

        let mut l = roomy();
        l.cgroup_pids_headroom = Some(3000);
        assert_eq!(binding(&l).0, LimitKind::CgroupPids);
        assert_eq!(binding(&l).1, 2999);

        let mut l = roomy();
        l.pid_max = Some(32_768);
        assert_eq!(
            binding(&l),
            (
                LimitKind::PidMax,
                32_768 - 301 - 200 - 1,
                "sysctl kernel.pid_max".into()
            )
        );

        let mut l = roomy();
        l.threads_max = Some(20_000);
        assert_eq!(
            binding(&l),
            (
                LimitKind::ThreadsMax,
                20_000 - 200 - 1,
                "sysctl kernel.threads-max".into()
            )
        );

        let mut l = roomy();
        l.server_max_children = Some(64);
        assert_eq!(
            binding(&l),
            (LimitKind::MaxChildren, 64, "--max-children".into())
        );

        let mut l = roomy();
        l.loadgen_nofile_soft = Some(1024);
        l.loadgen_nofile_hard = Some(524_288);
        let (kind, max, knob) = binding(&l);
        assert_eq!((kind, max), (LimitKind::LoadgenNofile, 1024 - 9));
        assert!(
            knob.starts_with("ulimit -n") && knob.contains("524288"),
            "{knob}"
        );

        let mut l = roomy();
        l.file_max = Some(20_000);
        assert_eq!(binding(&l).0, LimitKind::SystemFileMax);
        assert_eq!(binding(&l).1, (20_000 - 1000) / 2);

        let mut l = roomy();
        l.source_ips = 1;
        let (kind, max, knob) = binding(&l);
        assert_eq!((kind, max), (LimitKind::EphemeralPorts, 28_232));
        assert!(knob.contains("--source-ip"), "{knob}");
    }

    #[test]
    fn candidates_are_sorted_and_complete() {
        let p = predict_max(&roomy()).expect("prediction");
        assert_eq!(p.candidates.len(), 10);
        assert!(p
            .candidates
            .windows(2)
            .all(|w| w[0].max_connections <= w[1].max_connections));
        assert_eq!(p.candidates[0].kind, p.binding);
        assert_eq!(p.candidates[0].max_connections, p.max_connections);
    }

    #[test]
    fn limits_that_do_not_apply_are_left_out() {
        let mut l = roomy();
        l.rlimit_nproc_soft = Some(1);
        l.nproc_enforced = false; // root: the kernel does not count
        l.pss_slope_bytes_per_conn = Some(-5.0); // noise, not a cost
        l.source_ips = 0; // taken as one
        let p = predict_max(&l).expect("prediction");
        let kinds: Vec<LimitKind> = p.candidates.iter().map(|c| c.kind).collect();
        assert!(!kinds.contains(&LimitKind::RlimitNproc));
        assert!(!kinds.contains(&LimitKind::MemoryBudget));
        assert!(!kinds.contains(&LimitKind::AvailableMemory));
        assert_eq!(p.binding, LimitKind::EphemeralPorts);
        assert_eq!(p.max_connections, 28_232);
        assert_eq!(predict_max(&Limits::default()), None);
    }

    #[test]
    fn model_from_steps_fits_memory_on_live_children_and_predicts() {
        let step = |conns: u64, live: u64, p99: f64| ModelStep {
            conns,
            live_children: live,
            total_pss_bytes: 1_000_000.0 + 100_000.0 * live as f64,
            echo_p99_us: p99,
        };
        let mut failed = step(8000, 0, f64::NAN);
        failed.total_pss_bytes = f64::NAN;
        // The 4000 step only got 3000 children; its PSS is that of 3000.
        let steps = [
            step(1, 1, 80.0),
            step(10, 10, 90.0),
            step(100, 100, 150.0),
            step(4000, 3000, 400.0),
            failed,
        ];
        let mut limits = roomy();
        limits.pss_slope_bytes_per_conn = None;
        limits.memory_budget_bytes = Some(1_000_000 + 100_000 * 2000);
        let model = CapacityModel::from_steps(&steps, limits);
        let fit = model.memory_fit.expect("fit");
        assert!(close(fit.slope, 100_000.0, 1e-9), "{fit:?}");
        assert_eq!(fit.n, 4);
        assert_eq!(model.limits.pss_slope_bytes_per_conn, Some(fit.slope));
        let check = model.memory_check.expect("check");
        assert!(check.error_percent.abs() < 1e-6, "{check:?}");
        assert_eq!(model.latency_knee_conns, Some(4000));
        let prediction = model.prediction.expect("prediction");
        assert_eq!(prediction.binding, LimitKind::MemoryBudget);
        assert_eq!(prediction.max_connections, 2000);
        assert_eq!(
            prediction.to_string(),
            "2000 connections, bound by memory budget (raise with: --memory-budget / add RAM)"
        );
    }

    #[test]
    fn memory_below_the_base_cost_allows_nothing() {
        assert_eq!(memory_connections(500, 1000.0, 10.0), 0);
        assert_eq!(memory_connections(1_010, 1000.0, 10.0), 1);
    }

    #[test]
    fn prediction_serializes_with_snake_case_kinds() {
        let p = predict_max(&roomy()).expect("prediction");
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["binding"], "ephemeral_ports");
        let back: Prediction = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, p);
        let limits = serde_json::to_value(roomy()).expect("json");
        assert_eq!(limits["pss_slope_bytes_per_conn"], 100_000.0);
    }
}
