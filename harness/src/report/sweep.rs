//! The `sweep` report (`results/sweep-<UTC time>.json`): one entry per step of the connection
//! ladder (burst figures, steady-phase figures, the server's tree, the timeline) and the capacity
//! model fitted over the steps. These serde structs are the format; `harness/schema.json`
//! describes it beside the `check` and `run` reports.

use serde::{Deserialize, Serialize};

use crate::capacity::cpu::{CoresTarget, StepCpu};
use crate::capacity::{CapacityModel, StepMemory, ValidationFigures};
use crate::report::parts::{Environment, ListenCounters, ReportKind, Sample, ServerEnd};

/// `results/sweep-<UTC time>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Same version line as the other harness reports (`report::SCHEMA_VERSION`).
    pub schema_version: u32,
    pub kind: ReportKind,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_secs: f64,
    pub parameters: SweepParameters,
    pub environment: Environment,
    pub server: SweepServer,
    /// In ladder order (ascending connections).
    pub steps: Vec<SweepStep>,
    pub capacity: CapacityModel,
    pub summary: SweepSummary,
    /// Slab bytes one loopback TCP socket costs, measured before the ladder by opening socket pairs
    /// inside the harness: the load generator's share of each step's slab rise is its socket count
    /// times this. Absent in reports of schema 1.
    #[serde(default)]
    pub socket_slab_bytes: Option<f64>,
    /// `--validate`: one step beyond the ladder, not fitted, against the model's prediction.
    #[serde(default)]
    pub validation: Option<Validation>,
}

/// The model checked at a connection count beyond the ladder (`harness sweep --validate N`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub conns: u64,
    /// Why the step was not run, or why its figures are missing: the limit and the knob that
    /// raises it.
    pub refused: Option<String>,
    /// Predicted against measured, when the step ran and measured its memory.
    pub figures: Option<ValidationFigures>,
    pub step: Option<SweepStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepParameters {
    /// Concurrent connections of each step, ascending.
    pub ladder: Vec<u64>,
    /// Length of each step's steady phase.
    pub duration_secs: f64,
    /// Message size in bytes.
    pub size: u64,
    pub memory_budget_bytes: u64,
    pub sample_interval_ms: u64,
    /// Each step runs against a freshly started server (so each step's memory is its own).
    pub fresh_server_per_step: bool,
    /// `--validate N`: the step beyond the ladder; absent when not asked for (and in schema 1).
    #[serde(default)]
    pub validate_conns: Option<u64>,
    /// Each step's connect timeout (`--connect-timeout`); absent in reports written before the
    /// flag existed, when loadgen's default applied.
    #[serde(default)]
    pub connect_timeout_secs: Option<f64>,
    /// Each step's echo timeout (`--io-timeout`); absent in older reports, as above.
    #[serde(default)]
    pub io_timeout_secs: Option<f64>,
    /// `--target-rate` / `--target-conns`: the load "cores needed" was answered for; absent when
    /// not asked (and before schema 3).
    #[serde(default)]
    pub target: Option<CoresTarget>,
}

/// The server swept (a fresh process of it per step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepServer {
    /// The program and flags, or the `--server-cmd`.
    pub description: String,
    /// Whether it speaks the fork echo server's stdout/stats contract.
    pub speaks_contract: bool,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    /// Connections asked for.
    pub conns: u64,
    /// False when anything went wrong: the server did not start or died, a connection or message
    /// failed, or not every connection echoed once.
    pub ok: bool,
    /// Why the step failed, when it did.
    pub failure: Option<String>,
    /// The connect burst; `null` when the load could not run at all.
    pub burst: Option<BurstFigures>,
    /// The closed-loop phase after the burst; `null` when the load could not run at all.
    pub steady: Option<SteadyFigures>,
    pub tree: TreeFigures,
    /// The kernel's side of the step's memory against a baseline read before its server started;
    /// absent when not measured (and in reports of schema 1).
    #[serde(default)]
    pub memory: Option<StepMemory>,
    /// The CPU of the server's tree and of the load generator over the step; absent when not
    /// measured (and before schema 3).
    #[serde(default)]
    pub cpu: Option<StepCpu>,
    /// Change of the kernel's listen-queue counters over the step's load.
    pub listen_queue: ListenCounters,
    /// How the step's server stopped; `null` when it could not be started.
    pub server_end: Option<ServerEnd>,
    /// Wall time of the step, server start to server gone.
    pub wall_secs: f64,
    /// The server's tree sampled every `parameters.sample_interval_ms` during the load.
    pub timeline: Vec<Sample>,
}

/// All connections opened at once; each sends one message and waits for its echo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstFigures {
    pub connections_attempted: u64,
    pub connections_established: u64,
    pub connections_failed: u64,
    pub connect_p99_us: Option<f64>,
    /// Connect start to first full echo: carries accept + fork on a fork server.
    pub first_echo_p50_us: Option<f64>,
    pub first_echo_p99_us: Option<f64>,
    /// From the first connect until every established connection had echoed once; `null` if one
    /// never did.
    pub all_first_echo_secs: Option<f64>,
    /// `connections_established / all_first_echo_secs`: how fast the server accepts and forks.
    pub accept_fork_per_sec: Option<f64>,
}

/// Every connection sends its next message as soon as the previous one is echoed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyFigures {
    pub measured_secs: f64,
    /// Verified echoes sent in the measured window.
    pub messages: u64,
    pub messages_per_sec: f64,
    pub echo_p50_us: Option<f64>,
    pub echo_p99_us: Option<f64>,
    pub echo_p999_us: Option<f64>,
    /// Mean echo latency of the measured window; absent before schema 3.
    #[serde(default)]
    pub echo_mean_us: Option<f64>,
    /// loadgen's own share of the echo latency (its read delay: echoes waiting in its sockets
    /// for it to run), p99 and mean; absent before schema 5. Where the p99 is a large share of
    /// the echo p99, the step measured loadgen as much as the server.
    #[serde(default)]
    pub read_delay_p99_us: Option<f64>,
    #[serde(default)]
    pub read_delay_mean_us: Option<f64>,
    /// Failed connections and sessions of the whole load, by kind, as loadgen counts them.
    pub errors: u64,
}

/// The server's process tree during the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeFigures {
    pub samples: usize,
    pub peak_live_children: u64,
    pub max_zombies: u64,
    pub max_lingering_zombies: u64,
    /// Median total PSS (parent + children) over the samples at the peak child count, preferring
    /// samples in which every child's memory had been read; the `y` of the memory fit.
    pub total_pss_kib: Option<u64>,
    pub pss_per_child_kib: Option<f64>,
    pub private_per_child_kib: Option<f64>,
    /// The parent's CPU time (user + system) from its start to the end of the load.
    pub parent_cpu_secs: Option<f64>,
    /// `parent_cpu_secs` per established connection: the parent's cost of accept + fork + reap.
    pub parent_cpu_us_per_conn: Option<f64>,
}

/// The figures the sweep's closing lines give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub steps_ok: usize,
    pub steps_failed: usize,
    /// The largest step that passed.
    pub largest_ok_conns: Option<u64>,
    /// The largest burst that measured an accept+fork rate, and that rate.
    pub largest_burst_conns: Option<u64>,
    pub accept_fork_per_sec: Option<f64>,
}

impl SweepReport {
    /// The measured (connections established, steady messages/s) of every step that has both
    /// and both positive: the points the throughput model is fitted to and charts draw.
    pub fn throughput_points(&self) -> Vec<(f64, f64)> {
        self.steps
            .iter()
            .filter_map(|s| {
                let n = s.burst.as_ref()?.connections_established as f64;
                Some((n, s.steady.as_ref()?.messages_per_sec))
            })
            .filter(|&(n, x)| n > 0.0 && x > 0.0)
            .collect()
    }
}

impl SweepSummary {
    pub fn of(steps: &[SweepStep]) -> SweepSummary {
        let largest_burst = steps
            .iter()
            .filter_map(|s| {
                s.burst
                    .as_ref()
                    .and_then(|b| b.accept_fork_per_sec)
                    .map(|r| (s.conns, r))
            })
            .max_by_key(|(conns, _)| *conns);
        SweepSummary {
            steps_ok: steps.iter().filter(|s| s.ok).count(),
            steps_failed: steps.iter().filter(|s| !s.ok).count(),
            largest_ok_conns: steps.iter().filter(|s| s.ok).map(|s| s.conns).max(),
            largest_burst_conns: largest_burst.map(|(c, _)| c),
            accept_fork_per_sec: largest_burst.map(|(_, r)| r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(conns: u64, ok: bool, rate: Option<f64>) -> SweepStep {
        SweepStep {
            conns,
            ok,
            failure: (!ok).then(|| "refused".to_string()),
            burst: Some(BurstFigures {
                connections_attempted: conns,
                connections_established: conns,
                connections_failed: 0,
                connect_p99_us: Some(100.0),
                first_echo_p50_us: Some(200.0),
                first_echo_p99_us: Some(300.0),
                all_first_echo_secs: rate.map(|r| conns as f64 / r),
                accept_fork_per_sec: rate,
            }),
            steady: None,
            tree: TreeFigures {
                samples: 3,
                peak_live_children: conns,
                max_zombies: 0,
                max_lingering_zombies: 0,
                total_pss_kib: Some(1000 + conns * 100),
                pss_per_child_kib: Some(100.0),
                private_per_child_kib: Some(80.0),
                parent_cpu_secs: Some(0.5),
                parent_cpu_us_per_conn: Some(5.0),
            },
            memory: None,
            cpu: None,
            listen_queue: ListenCounters::default(),
            server_end: None,
            wall_secs: 1.0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn summary_takes_the_largest_burst_that_measured_a_rate() {
        let steps = [
            step(1, true, Some(100.0)),
            step(10, true, Some(900.0)),
            step(100, false, None),
        ];
        let s = SweepSummary::of(&steps);
        assert_eq!(s.steps_ok, 2);
        assert_eq!(s.steps_failed, 1);
        assert_eq!(s.largest_ok_conns, Some(10));
        assert_eq!(s.largest_burst_conns, Some(10));
        assert_eq!(s.accept_fork_per_sec, Some(900.0));
    }

    #[test]
    fn plot_point_leaves_unmeasured_figures_out() {
        let p = step(10, true, Some(900.0)).plot_point();
        assert_eq!(p.conns, 10);
        assert_eq!(p.first_echo_p99_us, 300.0);
        assert_eq!(p.total_pss_bytes, 2000.0 * 1024.0);
        assert!(p.echo_p99_us.is_nan() && p.messages_per_sec.is_nan());
    }
}
