//! The capacity model as it goes into a sweep report: the memory fits (user-space PSS, and the total
//! with its breakdown and checks), the throughput (USL) and CPU models, the latency knee and the
//! predicted maximum, made from the sweep's steps and the machine's limits.

use serde::{Deserialize, Serialize};

use super::cpu::{CpuModel, StepCpu};
use super::fit::{check_prediction, fit_line, latency_knee, HoldOutCheck, LinearFit};
use super::limits::{predict_max, Limits, MemoryFits, Prediction};
use super::memory::{MemoryStep, StepMemory, TotalMemoryModel};
use super::usl::{ThroughputModel, ThroughputStep};

/// What the capacity model needs from one sweep step. A figure the step did not measure is NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelStep {
    pub conns: u64,
    /// Children alive when PSS was measured: the `x` of the memory fit, since a step that fell short
    /// of its connections costs what it holds, not what it asked for.
    pub live_children: u64,
    pub total_pss_bytes: f64,
    pub echo_p99_us: f64,
    /// The kernel's side of the step's memory; `None` when it was not measured.
    pub memory: Option<StepMemory>,
    /// The steady phase's throughput and latency; `None` when the load did not run.
    pub throughput: Option<ThroughputStep>,
    /// The step's CPU; `None` when not measured.
    pub cpu: Option<StepCpu>,
}

/// The capacity model of a sweep, as it goes into the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityModel {
    /// Total PSS (bytes) against live children: slope is bytes per connection of **user space
    /// only** (the model of schema 1; kept beside the total for comparison).
    pub memory_fit: Option<LinearFit>,
    /// The PSS fit without the largest step, checked against it.
    pub memory_check: Option<HoldOutCheck>,
    /// Every byte a connection costs (user space and kernel), its breakdown and its checks against
    /// the measured `MemAvailable` drop. Absent in reports of schema 1 (not zero: not measured).
    #[serde(default)]
    pub total_memory: Option<TotalMemoryModel>,
    /// The Universal Scalability Law over the steps' throughput; absent before schema 3 and when
    /// fewer than three steps measured one.
    #[serde(default)]
    pub throughput: Option<ThroughputModel>,
    /// CPU per connection and per message; absent before schema 3.
    #[serde(default)]
    pub cpu: Option<CpuModel>,
    pub latency_knee_conns: Option<u64>,
    /// The machine's limits the prediction used. The fitted memory cost it divided by is
    /// `memory_fit` and `total_memory`, stored once (see [`MemoryFits`]).
    pub limits: Limits,
    pub prediction: Option<Prediction>,
}

impl CapacityModel {
    /// Fits memory, finds the knee and predicts the maximum from `steps` and the machine's `limits`
    /// with the memory fits made here.
    pub fn from_steps(steps: &[ModelStep], limits: Limits) -> CapacityModel {
        let memory_points: Vec<(f64, f64)> = steps
            .iter()
            .filter(|s| s.total_pss_bytes.is_finite())
            .map(|s| (s.live_children as f64, s.total_pss_bytes))
            .collect();
        let memory_fit = fit_line(&memory_points);
        let memory_steps: Vec<MemoryStep> = steps
            .iter()
            .filter_map(|s| {
                Some(MemoryStep {
                    conns: s.conns,
                    live_children: s.live_children,
                    memory: s.memory?,
                })
            })
            .collect();
        let total_memory = TotalMemoryModel::fit(&memory_steps);
        let throughput_steps: Vec<ThroughputStep> =
            steps.iter().filter_map(|s| s.throughput).collect();
        let cpu_steps: Vec<StepCpu> = steps.iter().filter_map(|s| s.cpu).collect();
        let knee_steps: Vec<(u64, f64)> = steps.iter().map(|s| (s.conns, s.echo_p99_us)).collect();
        let mut model = CapacityModel {
            memory_fit,
            memory_check: check_prediction(&memory_points),
            total_memory,
            throughput: ThroughputModel::fit(&throughput_steps),
            cpu: CpuModel::fit(&cpu_steps),
            latency_knee_conns: latency_knee(&knee_steps),
            prediction: None,
            limits,
        };
        model.prediction = predict_max(&model.limits, &model.memory_fits());
        model
    }

    /// The memory fits the prediction divides by, as stored in this model.
    pub fn memory_fits(&self) -> MemoryFits {
        MemoryFits {
            total: self.total_memory.as_ref().map(|m| m.total_fit),
            pss: self.memory_fit,
        }
    }
}
