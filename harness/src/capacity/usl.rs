//! The throughput model: Gunther's Universal Scalability Law
//! `X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))` fitted to the sweep's steady-phase
//! throughput against concurrency, by Levenberg-Marquardt over all three coefficients, as the
//! `usl` R package does; its hold-out check (fit without the largest step, predict it); and
//! Little's law latency `N / X` beside the measured mean echo latency.
//!
//! Why not the `usl` crate: it reproduces the reference data set's published coefficients (its
//! 0.3.0 gives sigma 0.02773, kappa 1.0437e-4, lambda 89.995 on `specsdm91`), but it panics on a
//! failed fit and asserts at least six points, and the hold-out fit of a six-step ladder has five.
//! A failed fit here is `None`, never a panic. sigma is kept in [0, 1] and kappa >= 0 (negative
//! contention is noise, not physics); the reference fit lies inside those bounds.

use serde::{Deserialize, Serialize};

/// What limits the server's scaling, from the fitted coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingBound {
    /// sigma > kappa: queueing for a shared resource (a lock, one core, one accept loop).
    Contention,
    /// kappa >= sigma (not both 0): throughput falls past the peak (crosstalk: cache, scheduler
    /// or memory thrashing as connections are added).
    Coherency,
    /// sigma and kappa both 0: linear within the measured range.
    Linear,
}

/// A fitted USL curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Throughput of one connection alone (messages/s): the ideal slope.
    pub lambda: f64,
    /// Contention (serial fraction), in [0, 1].
    pub sigma: f64,
    /// Coherency (crosstalk), >= 0.
    pub kappa: f64,
    /// `1 - SS_res / SS_tot` of the fit (a descriptive figure for a nonlinear fit).
    pub r_squared: f64,
    /// Points fitted.
    pub n: usize,
    /// `floor(sqrt((1 - sigma) / kappa))`: the concurrency of the highest throughput; `null` when
    /// kappa is 0 (throughput only levels off).
    pub peak_conns: Option<u64>,
    /// Throughput at `peak_conns`, or the asymptote `lambda / sigma` without a peak; `null` when
    /// the fit is linear (no maximum inside the model).
    pub max_throughput: Option<f64>,
    pub bound: ScalingBound,
}

impl UslFit {
    /// The modelled throughput at `n` concurrent connections.
    pub fn predict(&self, n: f64) -> f64 {
        usl(n, self.lambda, self.sigma, self.kappa)
    }

    fn of(lambda: f64, sigma: f64, kappa: f64, points: &[(f64, f64)]) -> UslFit {
        let peak_conns = (kappa > 0.0).then(|| ((1.0 - sigma) / kappa).sqrt().floor().max(1.0));
        let max_throughput = match peak_conns {
            Some(peak) => Some(usl(peak, lambda, sigma, kappa)),
            None if sigma > 0.0 => Some(lambda / sigma),
            None => None,
        };
        let bound = if sigma == 0.0 && kappa == 0.0 {
            ScalingBound::Linear
        } else if sigma > kappa {
            ScalingBound::Contention
        } else {
            ScalingBound::Coherency
        };
        let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
        let ss_tot: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
        let ss_res = sum_of_squares(points, [lambda, sigma, kappa]);
        UslFit {
            lambda,
            sigma,
            kappa,
            r_squared: if ss_tot > 0.0 {
                (1.0 - ss_res / ss_tot).clamp(0.0, 1.0)
            } else {
                1.0
            },
            n: points.len(),
            peak_conns: peak_conns.map(|p| p as u64),
            max_throughput,
            bound,
        }
    }
}

fn usl(n: f64, lambda: f64, sigma: f64, kappa: f64) -> f64 {
    lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

fn sum_of_squares(points: &[(f64, f64)], p: [f64; 3]) -> f64 {
    points
        .iter()
        .map(|&(n, x)| (x - usl(n, p[0], p[1], p[2])).powi(2))
        .sum()
}

/// Fits the USL to `(concurrency, throughput)` points. `None` with fewer than three distinct
/// concurrencies (three coefficients), a non-finite or non-positive value, or a fit that does not
/// converge to finite coefficients.
pub fn fit_usl(points: &[(f64, f64)]) -> Option<UslFit> {
    if points
        .iter()
        .any(|&(n, x)| !(n.is_finite() && x.is_finite() && n >= 1.0 && x > 0.0))
    {
        return None;
    }
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 {
        return None;
    }
    // Two starts (the linearised estimate, and no coherency at all); the better fit wins, so a
    // start in the wrong valley does not decide the answer.
    let start = initial_guess(points);
    let starts = [start, [start[0], start[1], 0.0]];
    let best = starts
        .iter()
        .filter_map(|&s| levenberg_marquardt(points, s))
        .min_by(|a, b| sum_of_squares(points, *a).total_cmp(&sum_of_squares(points, *b)))?;
    Some(UslFit::of(best[0], best[1], best[2], points))
}

/// lambda from the best per-connection throughput; sigma and kappa from Gunther's linearisation
/// `N / C(N) - 1 = sigma (N - 1) + kappa N (N - 1)` with `C = X / lambda`, by least squares
/// without an intercept, clamped into bounds.
fn initial_guess(points: &[(f64, f64)]) -> [f64; 3] {
    let lambda = points.iter().map(|&(n, x)| x / n).fold(0.0, f64::max);
    let (mut saa, mut sab, mut sbb, mut say, mut sby) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(n, x) in points {
        let y = n * lambda / x - 1.0;
        let (a, b) = (n - 1.0, n * (n - 1.0));
        saa += a * a;
        sab += a * b;
        sbb += b * b;
        say += a * y;
        sby += b * y;
    }
    let det = saa * sbb - sab * sab;
    let (sigma, kappa) = if det.abs() > f64::EPSILON * saa * sbb {
        ((say * sbb - sby * sab) / det, (saa * sby - sab * say) / det)
    } else {
        (0.0, 0.0)
    };
    project([lambda, sigma, kappa])
}

fn project(p: [f64; 3]) -> [f64; 3] {
    [
        p[0].max(f64::MIN_POSITIVE),
        p[1].clamp(0.0, 1.0),
        p[2].max(0.0),
    ]
}

/// Levenberg-Marquardt with Marquardt's scaling (damping on the diagonal of J^T J, so lambda's
/// units and kappa's 1e-4 scale do not matter), projected onto the bounds after each step.
fn levenberg_marquardt(points: &[(f64, f64)], start: [f64; 3]) -> Option<[f64; 3]> {
    let mut p = start;
    let mut cost = sum_of_squares(points, p);
    let mut damping = 1e-3;
    for _ in 0..1000 {
        let (jtj, jtr) = normal_equations(points, p);
        let mut a = jtj;
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += damping * jtj[i][i].max(f64::MIN_POSITIVE);
        }
        let Some(step) = solve3(a, jtr) else {
            damping *= 10.0;
            continue;
        };
        let candidate = project([p[0] + step[0], p[1] + step[1], p[2] + step[2]]);
        let new_cost = sum_of_squares(points, candidate);
        if new_cost.is_finite() && new_cost <= cost {
            let converged = cost - new_cost <= 1e-15 * cost.max(f64::MIN_POSITIVE);
            p = candidate;
            cost = new_cost;
            damping = (damping / 10.0).max(1e-12);
            if converged {
                break;
            }
        } else {
            damping *= 10.0;
            if damping > 1e12 {
                break;
            }
        }
    }
    p.iter().all(|v| v.is_finite()).then_some(p)
}

/// `J^T J` and `J^T r` of the residuals `x - X(n)` (J is the Jacobian of the model).
fn normal_equations(points: &[(f64, f64)], p: [f64; 3]) -> ([[f64; 3]; 3], [f64; 3]) {
    let [lambda, sigma, kappa] = p;
    let mut jtj = [[0.0; 3]; 3];
    let mut jtr = [0.0; 3];
    for &(n, x) in points {
        let d = 1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0);
        let model = lambda * n / d;
        let grad = [
            n / d,
            -lambda * n * (n - 1.0) / (d * d),
            -lambda * n * n * (n - 1.0) / (d * d),
        ];
        let r = x - model;
        for i in 0..3 {
            jtr[i] += grad[i] * r;
            for j in 0..3 {
                jtj[i][j] += grad[i] * grad[j];
            }
        }
    }
    (jtj, jtr)
}

/// Solves a 3x3 system by Gaussian elimination with partial pivoting; `None` when singular.
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..3 {
            let f = a[row][col] / pivot_row[col];
            for (cell, above) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *cell -= f * above;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The USL fitted without the step of the largest concurrency, predicting that step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UslHoldOut {
    pub fit: UslFit,
    pub held_out_conns: f64,
    pub predicted: f64,
    pub measured: f64,
    /// `(predicted - measured) / measured * 100`.
    pub error_percent: f64,
}

/// Fits every point but the largest concurrency's and predicts it; `None` when the rest cannot be
/// fitted (fewer than three distinct concurrencies left).
pub fn usl_hold_out(points: &[(f64, f64)]) -> Option<UslHoldOut> {
    let (largest, _) = points
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))?;
    let (held_out_conns, measured) = points[largest];
    let rest: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != largest)
        .map(|(_, &p)| p)
        .collect();
    let fit = fit_usl(&rest)?;
    let predicted = fit.predict(held_out_conns);
    Some(UslHoldOut {
        fit,
        held_out_conns,
        predicted,
        measured,
        error_percent: (predicted - measured) / measured * 100.0,
    })
}

/// One step as the throughput model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThroughputStep {
    pub conns: u64,
    /// Connections that were open in the steady phase: the `N` of the fit.
    pub established: u64,
    pub messages_per_sec: f64,
    /// Little's law, `N / X`: the mean time one message spends in the loop, in µs.
    pub littles_law_latency_us: f64,
    /// loadgen's measured mean echo latency over the same window, in µs; `null` when unknown.
    pub measured_mean_echo_us: Option<f64>,
}

/// The throughput model of a sweep: the fit over every step, its hold-out check, and each step's
/// Little's-law latency beside the measured one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputModel {
    pub usl: UslFit,
    pub hold_out: Option<UslHoldOut>,
    pub steps: Vec<ThroughputStep>,
}

impl ThroughputModel {
    /// `None` when fewer than three steps of distinct concurrency measured a throughput.
    pub fn fit(steps: &[ThroughputStep]) -> Option<ThroughputModel> {
        let usable: Vec<ThroughputStep> = steps
            .iter()
            .copied()
            .filter(|s| s.established > 0 && s.messages_per_sec > 0.0)
            .collect();
        let points: Vec<(f64, f64)> = usable
            .iter()
            .map(|s| (s.established as f64, s.messages_per_sec))
            .collect();
        Some(ThroughputModel {
            usl: fit_usl(&points)?,
            hold_out: usl_hold_out(&points),
            steps: usable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gunther's SPEC SDM91 data (Guerrilla Capacity Planning, 2007), as the `usl` R package ships
    /// it (`data(specsdm91)`: load, throughput in scripts per hour).
    const SPECSDM91: [(f64, f64); 7] = [
        (1.0, 64.9),
        (18.0, 995.9),
        (36.0, 1652.4),
        (72.0, 1853.2),
        (108.0, 1828.9),
        (144.0, 1775.0),
        (216.0, 1702.2),
    ];

    fn sig3(v: f64) -> String {
        format!("{v:.2e}")
    }

    #[test]
    fn reproduces_the_published_coefficients_of_specsdm91() {
        // The `usl` R package's summary of this fit: sigma 2.773e-02, kappa 1.044e-04,
        // lambda 9.000e+01, peak.scalability 97 (to 2 s.f.) (its tests/summary.Rout.save and
        // peak-scalability.Rout.save).
        let fit = fit_usl(&SPECSDM91).expect("fit");
        assert_eq!(sig3(fit.sigma), "2.77e-2", "{fit:?}");
        assert_eq!(sig3(fit.kappa), "1.04e-4", "{fit:?}");
        assert_eq!(sig3(fit.lambda), "9.00e1", "{fit:?}");
        assert_eq!(fit.peak_conns, Some(96));
        assert_eq!(fit.bound, ScalingBound::Contention);
        // The package's fitted values at the 7 loads (tests/fitted.Rout.save, 3 digits).
        let fitted = [90.0, 1078.0, 1541.0, 1850.0, 1879.0, 1822.0, 1646.0];
        for (&(n, _), want) in SPECSDM91.iter().zip(fitted) {
            let got = fit.predict(n);
            assert!((got - want).abs() <= 0.5, "X({n}) = {got}, want {want}");
        }
        // The package's "Multiple R-squared: 0.9896".
        assert!((fit.r_squared - 0.9896).abs() < 5e-4, "{fit:?}");
        let max = fit.max_throughput.expect("peak");
        assert!((max - fit.predict(96.0)).abs() < 1e-9);
    }

    #[test]
    fn recovers_exact_coefficients_and_predicts_a_held_out_step() {
        let (lambda, sigma, kappa) = (20_000.0, 0.3, 0.001);
        let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0]
            .iter()
            .map(|&n| (n, usl(n, lambda, sigma, kappa)))
            .collect();
        let fit = fit_usl(&points).expect("fit");
        assert!((fit.lambda / lambda - 1.0).abs() < 1e-6, "{fit:?}");
        assert!((fit.sigma / sigma - 1.0).abs() < 1e-6, "{fit:?}");
        assert!((fit.kappa / kappa - 1.0).abs() < 1e-6, "{fit:?}");
        assert!(fit.r_squared > 0.999_999);
        let h = usl_hold_out(&points).expect("hold-out");
        assert_eq!(h.held_out_conns, 256.0);
        assert!(h.error_percent.abs() < 1e-4, "{h:?}");
        assert_eq!(h.fit.n, 6);
    }

    #[test]
    fn a_flat_server_is_contention_bound_with_an_asymptote() {
        // One core serving everything: X = 1000 whatever N (sigma 1, kappa 0).
        let points = [(1.0, 1000.0), (4.0, 1000.0), (16.0, 1000.0), (64.0, 1000.0)];
        let fit = fit_usl(&points).expect("fit");
        assert!((fit.sigma - 1.0).abs() < 1e-6, "{fit:?}");
        assert!(fit.kappa < 1e-9, "{fit:?}");
        assert_eq!(fit.bound, ScalingBound::Contention);
        let max = fit.max_throughput.expect("max");
        assert!((max - 1000.0).abs() < 1.0, "{fit:?}");
    }

    #[test]
    fn refuses_what_cannot_be_fitted() {
        assert_eq!(fit_usl(&[]), None);
        assert_eq!(fit_usl(&[(1.0, 5.0), (2.0, 9.0)]), None);
        assert_eq!(fit_usl(&[(1.0, 5.0), (2.0, 9.0), (2.0, 9.5)]), None);
        assert_eq!(fit_usl(&[(1.0, 5.0), (2.0, f64::NAN), (3.0, 9.0)]), None);
        assert_eq!(fit_usl(&[(1.0, 5.0), (2.0, 0.0), (3.0, 9.0)]), None);
        assert_eq!(usl_hold_out(&SPECSDM91[..3]), None);
        let steps: Vec<ThroughputStep> = SPECSDM91[..2]
            .iter()
            .map(|&(n, x)| ThroughputStep {
                conns: n as u64,
                established: n as u64,
                messages_per_sec: x,
                littles_law_latency_us: n / x * 1e6,
                measured_mean_echo_us: None,
            })
            .collect();
        assert_eq!(ThroughputModel::fit(&steps), None);
    }
}
