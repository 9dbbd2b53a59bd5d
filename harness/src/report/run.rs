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
    pub summary: RunSummary,
    /// The kernel's side of the load's memory at its peak, as a sweep step records it (the load
    /// generator's sockets are not subtracted: `run` does not measure a socket's slab); absent in
    /// reports of schema 1.
    #[serde(default)]
    pub memory: Option<StepMemory>,
}

/// Writes the embedded loadgen report with its object keys in sorted order, as every run report
/// has had them since the field was a `serde_json::Value` (whose map sorts its keys): the bytes of
/// a report do not change with the order of loadgen's struct fields.
fn keys_sorted<S: Serializer>(load: &Option<loadgen::Report>, out: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(load)
        .map_err(serde::ser::Error::custom)?
        .serialize(out)
}
