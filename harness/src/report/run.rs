//! The `run` report (`results/run-<UTC time>.json`): the parameters, the checks, loadgen's own
//! report of the load, the tree timeline and the summary that `report` prints and `compare` gates
//! on. These serde structs are the format that `harness/schema.json` describes.

use serde::{Deserialize, Serialize, Serializer};

use crate::capacity::StepMemory;
use crate::report::check::{CheckCounts, CheckOptions, CheckResult};
use crate::report::parts::{
    Environment, ListenCounters, ReportKind, Sample, ServerEnd, ServerInfo,
};

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
    #[serde(serialize_with = "keys_sorted")]
    pub load: Option<loadgen::Report>,
    /// The server's tree, sampled every `parameters.sample_interval_ms` during the load.
    pub timeline: Vec<Sample>,
    pub listen_queue: PhaseListenQueue,
    pub server_end: ServerEnd,
    /// With `harness run --runs N` (N > 1): the summary's figures are the medians over the runs
    /// (the rest of the report is the run whose messages/s was the median), and this is the
    /// spread of each. Absent for a single run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<RunSpread>,
    pub summary: RunSummary,
    /// The kernel's side of the load's memory at its peak, as a sweep step records it (the load
    /// generator's sockets are not subtracted: `run` does not measure a socket's slab); absent in
    /// reports of schema 1.
    #[serde(default)]
    pub memory: Option<StepMemory>,
}

/// How the key figures varied over `harness run --runs N`, keyed by `compare`'s figure names
/// (`echo p99`, `messages/s`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpread {
    pub runs: usize,
    pub figures: std::collections::BTreeMap<String, FigureSpread>,
}

/// One figure over repeated runs, like hyperfine's mean +- sigma and min..max.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureSpread {
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for one value.
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value, in run order.
    pub values: Vec<f64>,
}

impl FigureSpread {
    /// The spread of the finite `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<FigureSpread> {
        let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let stddev = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Some(FigureSpread {
            median,
            mean,
            stddev,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            values,
        })
    }
}

/// Writes the embedded loadgen report with its object keys in sorted order, as every run report
/// has had them since the field was a `serde_json::Value` (whose map sorts its keys): the bytes of
/// a report do not change with the order of loadgen's struct fields.
fn keys_sorted<S: Serializer>(load: &Option<loadgen::Report>, out: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(load)
        .map_err(serde::ser::Error::custom)?
        .serialize(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_mean_sd_and_range() {
        let s = FigureSpread::of(&[3.0, 1.0, f64::NAN, 2.0, 10.0]).expect("spread");
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(s.mean, 4.0);
        assert!((s.stddev - 4.0826).abs() < 1e-3, "{}", s.stddev);
        assert_eq!(s.values, vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(FigureSpread::of(&[5.0]).expect("one").stddev, 0.0);
        assert!(FigureSpread::of(&[f64::NAN]).is_none());
    }
}
