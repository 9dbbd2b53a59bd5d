//! The `check` report (`results/check-<UTC time>.json`) and the check results it shares with
//! `run` reports: these serde structs are the format that `harness/schema.json` describes.

use serde::{Deserialize, Serialize};

use crate::report::parts::{Environment, ListenCounters, ReportKind, ServerEnd, ServerInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Skip => "skip",
        }
    }
}

/// One case's result; this struct is the JSON format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    /// Why it failed or was skipped; a note on some passes.
    pub detail: Option<String>,
    pub duration_secs: f64,
}

/// Sizes of the cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// Clients held at once by `concurrent_clients` and `children_reaped`.
    pub clients: usize,
    /// Connections made by `parent_fds_stable`.
    pub fd_connections: usize,
    /// `check --faults`: the fault suite (the server through the fault proxy) instead of the
    /// standard cases. Absent from reports of the standard suite.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub faults: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            clients: 100,
            fd_connections: 500,
            faults: false,
        }
    }
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
