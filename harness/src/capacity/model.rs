//! The capacity model as it goes into a sweep report: the memory fit, its hold-out check, the
//! latency knee and the predicted maximum, made from the sweep's steps and the machine's limits.

use serde::{Deserialize, Serialize};

use super::fit::{check_prediction, fit_line, latency_knee, HoldOutCheck, LinearFit};
use super::limits::{predict_max, Limits, Prediction};

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
