//! The JSON reports `harness check` and `harness run` write into `results/`. These serde structs
//! *are* the format (`harness/schema.json` describes them); a report is written to a temp file in
//! the same directory and renamed into place, so a crash never leaves half a JSON file.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::checks::{CheckOptions, CheckResult, CheckStatus};
use crate::procfs::ListenCounters;
use crate::sampler::Sample;
use crate::server::ServerEnd;

/// Bumped on any incompatible change of the format.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    Check,
    Run,
}

/// The machine a report was made on.
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
}

impl Environment {
    pub fn collect() -> Environment {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .ok()
        };
        let nofile =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok();
        Environment {
            hostname: read("/proc/sys/kernel/hostname").unwrap_or_default(),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            somaxconn: read("/proc/sys/net/core/somaxconn").and_then(|s| s.parse().ok()),
            pid_max: read("/proc/sys/kernel/pid_max").and_then(|s| s.parse().ok()),
            nofile_soft: nofile.map(|(soft, _)| soft),
            nofile_hard: nofile.map(|(_, hard)| hard),
        }
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckCounts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl CheckCounts {
    pub fn of(results: &[CheckResult]) -> CheckCounts {
        let count = |s| results.iter().filter(|r| r.status == s).count();
        CheckCounts {
            passed: count(CheckStatus::Pass),
            failed: count(CheckStatus::Fail),
            skipped: count(CheckStatus::Skip),
        }
    }
}

/// `results/check-<UTC time>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub schema_version: u32,
    pub kind: ReportKind,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_secs: f64,
    pub environment: Environment,
    pub server: ServerInfo,
    pub options: CheckOptions,
    pub checks: Vec<CheckResult>,
    pub counts: CheckCounts,
    /// Change of the kernel's listen-queue counters while the checks ran.
    pub listen_queue: ListenCounters,
    pub server_end: ServerEnd,
}

/// The load parameters of a `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParameters {
    pub conns: usize,
    pub duration_secs: Option<f64>,
    pub messages: Option<u64>,
    pub size: usize,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub sample_interval_ms: u64,
    pub check_options: CheckOptions,
}

/// Listen-queue counter changes per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PhaseListenQueue {
    pub checks: ListenCounters,
    pub load: ListenCounters,
}

/// The key figures of a run: what `report` prints and `compare` gates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub peak_children: usize,
    /// Most zombies in one sample (a moment's worth is normal while many clients leave).
    pub zombies_seen: usize,
    /// Most zombies in one sample that had been zombies for a second or more: not reaping.
    pub zombies_lingering: usize,
    pub peak_tree_pss_kib: u64,
    pub pss_per_child_kib: Option<f64>,
    pub private_per_child_kib: Option<f64>,
    pub connect_p99_us: Option<f64>,
    pub first_echo_p99_us: Option<f64>,
    pub echo_p50_us: Option<f64>,
    pub echo_p99_us: Option<f64>,
    pub messages_per_sec: f64,
    pub connections_established: u64,
    pub load_errors: u64,
    /// Whether the load phase ran and counted no error.
    pub load_ok: bool,
    /// Why the load failed, when it did.
    pub load_failure: Option<String>,
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub orphans_after_stop: usize,
    pub checks: CheckCounts,
}

/// `results/run-<UTC time>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub kind: ReportKind,
    pub started_at: String,
    pub duration_secs: f64,
    pub parameters: RunParameters,
    pub environment: Environment,
    pub server: ServerInfo,
    pub checks: Vec<CheckResult>,
    /// The full `loadgen` report of the load phase (its own format and schema); `null` if the
    /// load could not run.
    pub load: serde_json::Value,
    /// The server's tree, sampled every `parameters.sample_interval_ms` during the load.
    pub timeline: Vec<Sample>,
    pub listen_queue: PhaseListenQueue,
    pub server_end: ServerEnd,
    pub summary: RunSummary,
}

/// Either kind, as read back from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReport {
    Check(Box<CheckReport>),
    Run(Box<RunReport>),
}

impl AnyReport {
    pub fn checks(&self) -> &[CheckResult] {
        match self {
            AnyReport::Check(r) => &r.checks,
            AnyReport::Run(r) => &r.checks,
        }
    }

    pub fn summary(&self) -> Option<&RunSummary> {
        match self {
            AnyReport::Check(_) => None,
            AnyReport::Run(r) => Some(&r.summary),
        }
    }
}

/// Reads a saved report, with a one-line error naming the file.
pub fn read_report(path: &Path) -> Result<AnyReport, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let bad = |e: serde_json::Error| format!("{} is not a harness report: {e}", path.display());
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "{} has schema_version {v}; this harness reads {SCHEMA_VERSION}",
                path.display()
            ))
        }
        None => {
            return Err(format!(
                "{} is not a harness report (no schema_version)",
                path.display()
            ))
        }
    }
    match value.get("kind").and_then(|k| k.as_str()) {
        Some("check") => serde_json::from_value(value)
            .map(AnyReport::Check)
            .map_err(bad),
        Some("run") => serde_json::from_value(value)
            .map(|r| AnyReport::Run(Box::new(r)))
            .map_err(bad),
        _ => Err(format!(
            "{} is not a harness report (no kind)",
            path.display()
        )),
    }
}

/// The current time as RFC 3339 UTC with milliseconds, for `started_at`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `2026-11-26T18:26:08.123Z` -> `20261126T182608.123Z`, for file names.
pub fn file_stamp(rfc3339: &str) -> String {
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so readers
/// see either no file or the whole file; creates the directory first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    loadgen::output::write_file_atomically(path, bytes)
}

/// Serializes `report` as pretty JSON to `dir/<prefix>-<stamp>.json`; returns the path.
pub fn write_report<T: Serialize>(
    dir: &Path,
    prefix: &str,
    started_at: &str,
    report: &T,
) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{prefix}-{}.json", file_stamp(started_at)));
    let mut json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_file_friendly() {
        assert_eq!(
            file_stamp("2026-11-26T18:26:08.123Z"),
            "20261126T182608.123Z"
        );
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && now.len() == 24, "{now}");
    }

    #[test]
    fn atomic_write_leaves_only_the_file() {
        let dir = std::env::temp_dir().join(format!("harness-atomic-{}", std::process::id()));
        let path = dir.join("sub").join("r.json");
        write_atomic(&path, b"{}\n").expect("write");
        write_atomic(&path, b"{\"a\":1}\n").expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\":1}\n");
        let names: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
        // A directory in the way makes the write fail without leaving a temp file behind.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("x")).expect("mkdir");
        assert!(write_atomic(&blocked, b"x").is_err());
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
