//! Least-squares fitting: the straight line of total PSS against live connections (bytes per
//! connection and the base cost), its check against a held-out step, and the latency knee.

use serde::{Deserialize, Serialize};

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
