//! The JSON formats, as plain serde data: `check`, `run` and `sweep` reports (`harness/schema.json`
//! describes them), [`AnyReport::read`] (the one reader of a saved report and the one
//! `schema_version` check), [`write`](mod@write) (the one atomic write) and [`compare`] (numbers
//! and verdicts; the text is `render`'s).
//!
//! It embeds `capacity`'s model, fit and limits (pure arithmetic), `sys::counters`' plain data
//! (the machine's counters; never `sys`'s readers), `loadgen::Report` and the server's stats line
//! (formats of their own), and `faults`' plan and counts (a soak report embeds them, plain data).
//! Nothing here starts, samples or reads a process, so `report`,
//! `compare` and `plot` work on files alone.
//!
//! Layers it may import: `sys`, `capacity`, `faults`.
//! Crates it may import: `loadgen`, `fork_echo_server`, `serde`, `serde_json`, `humantime`, `nix`.

pub mod check;
pub mod compare;
pub mod parts;
pub mod run;
pub mod soak;
pub mod sweep;
pub mod write;

use std::path::Path;

use check::{CheckReport, CheckResult};
use parts::ReportKind;
use run::{RunReport, RunSummary};
use sweep::SweepReport;

/// Bumped on any change of any report kind's format. 2: a run report may carry `spread`
/// (`harness run --runs N`); its embedded loadgen report is loadgen's version 2; the kernel's side
/// of memory is added (sweep steps' `memory`, `capacity.total_memory`, timeline samples'
/// `memory`, `validation`). 3: the throughput and CPU models (`capacity.throughput`,
/// `capacity.cpu`, sweep steps' `cpu`, `steady.echo_mean_us`, `parameters.target`) and the
/// reclaimable slab (`sreclaimable`). 4: a sweep's fitted memory slopes and intercepts are stored
/// once, in `capacity.memory_fit` and `capacity.total_memory.total_fit`, no longer copied into
/// `capacity.limits` (`pss_slope_bytes_per_conn`, `pss_intercept_bytes`, `total_*`): readers
/// ignore those copies in older reports. 5: sweep steps' `steady.read_delay_p99_us` and
/// `read_delay_mean_us` (loadgen's own share of the echo latency; its embedded reports are
/// loadgen's version 4). Version 1 to 4 reports (the committed baselines among them) are still
/// read: every field added since is optional and reads as absent.
pub const SCHEMA_VERSION: u32 = 5;

/// The oldest `schema_version` [`AnyReport::read`] still reads.
pub const OLDEST_READABLE_SCHEMA_VERSION: u32 = 1;

/// Any report kind, as read back from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReport {
    Check(Box<CheckReport>),
    Run(Box<RunReport>),
    Sweep(Box<SweepReport>),
}

impl AnyReport {
    /// Reads a saved report of any kind, with a one-line error naming the file.
    pub fn read(path: &Path) -> Result<AnyReport, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v)
                if (u64::from(OLDEST_READABLE_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION))
                    .contains(&v) => {}
            Some(v) => {
                return Err(format!(
                    "{} has schema_version {v}; this harness reads \
                     {OLDEST_READABLE_SCHEMA_VERSION} to {SCHEMA_VERSION}",
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
        let kind: Option<ReportKind> = value
            .get("kind")
            .and_then(|k| serde_json::from_value(k.clone()).ok());
        let bad = |what: &str, e: serde_json::Error| {
            format!("{} is not a {what} report: {e}", path.display())
        };
        match kind {
            Some(ReportKind::Check) => serde_json::from_value(value)
                .map(AnyReport::Check)
                .map_err(|e| bad("harness", e)),
            Some(ReportKind::Run) => serde_json::from_value(value)
                .map(|r| AnyReport::Run(Box::new(r)))
                .map_err(|e| bad("harness", e)),
            Some(ReportKind::Sweep) => serde_json::from_value(value)
                .map(|r| AnyReport::Sweep(Box::new(r)))
                .map_err(|e| bad("sweep", e)),
            Some(ReportKind::Soak) => Err(format!(
                "{} is a soak report: its verdict and trends are printed when the soak ends and \
                 are in the JSON itself; report, compare and plot read check, run and sweep reports",
                path.display()
            )),
            None => Err(format!(
                "{} is not a harness report (no kind)",
                path.display()
            )),
        }
    }

    /// The check results; a sweep has none.
    pub fn checks(&self) -> &[CheckResult] {
        match self {
            AnyReport::Check(r) => &r.checks,
            AnyReport::Run(r) => &r.checks,
            AnyReport::Sweep(_) => &[],
        }
    }

    /// `check`, `run` or `sweep`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            AnyReport::Check(_) => "check",
            AnyReport::Run(_) => "run",
            AnyReport::Sweep(_) => "sweep",
        }
    }

    /// What the run was asked to do, as JSON, for `compare` to name the fields that differ: a
    /// check's options, a run's or a sweep's parameters.
    pub fn parameters_json(&self) -> serde_json::Value {
        let value = match self {
            AnyReport::Check(r) => serde_json::to_value(r.options),
            AnyReport::Run(r) => serde_json::to_value(&r.parameters),
            AnyReport::Sweep(r) => serde_json::to_value(&r.parameters),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    /// How a run's figures varied over `--runs N`; `None` for one run and other kinds.
    pub fn spread(&self) -> Option<&run::RunSpread> {
        match self {
            AnyReport::Run(r) => r.spread.as_ref(),
            AnyReport::Check(_) | AnyReport::Sweep(_) => None,
        }
    }

    /// The key figures of a run; other kinds have none.
    pub fn summary(&self) -> Option<&RunSummary> {
        match self {
            AnyReport::Run(r) => Some(&r.summary),
            AnyReport::Check(_) | AnyReport::Sweep(_) => None,
        }
    }
}
