//! `harness compare BASE NEW` as numbers and verdicts: the key figures of two reports of the same
//! kind side by side with their change (two sweeps step by step, and their capacity models), and
//! the regression gate CI uses: echo p99, first-echo p99 or messages/s worse than the threshold,
//! or a check that passed in BASE and fails in NEW or is missing from it. What may not be compared
//! at all (different kinds, different parameters) is found by [`incomparable`] and
//! [`parameter_differences`]. The table and the regression lines are drawn by `render::text`.

use crate::report::check::CheckStatus;
use crate::report::run::RunSummary;
use crate::report::sweep::{SweepReport, SweepStep};
use crate::report::AnyReport;

/// How a figure's numbers are shown; the formatting itself is `render::units`'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureUnit {
    Micros,
    Kib,
    /// A count or a rate, shown as a whole number.
    Whole,
}

/// What a row says about NEW against BASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the threshold, or not comparable.
    Same,
    Better,
    /// Worse beyond the threshold, on a figure that is shown but not gated.
    Worse,
    /// A gated figure worse beyond the threshold, or a check that passed and now fails.
    Regression,
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareRow {
    Figure {
        name: String,
        unit: FigureUnit,
        base: Option<f64>,
        new: Option<f64>,
        /// `(new - base) / |base|` in percent; `None` when either is missing, infinite when BASE
        /// is 0 and NEW is not.
        change_pct: Option<f64>,
        verdict: Verdict,
    },
    Check {
        name: String,
        base: CheckStatus,
        /// `None` when NEW does not have the check (a regression: a check that stops running
        /// cannot pass).
        new: Option<CheckStatus>,
        /// NEW's detail of a check that regressed.
        new_detail: Option<String>,
        verdict: Verdict,
    },
}

impl CompareRow {
    pub fn verdict(&self) -> Verdict {
        match self {
            CompareRow::Figure { verdict, .. } | CompareRow::Check { verdict, .. } => *verdict,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    pub rows: Vec<CompareRow>,
    /// The threshold the verdicts used, in percent.
    pub max_regression_pct: f64,
}

impl Comparison {
    /// The rows that fail the gate, in table order; none means the gate passes.
    pub fn regressions(&self) -> impl Iterator<Item = &CompareRow> {
        self.rows
            .iter()
            .filter(|r| r.verdict() == Verdict::Regression)
    }

    pub fn has_regression(&self) -> bool {
        self.regressions().next().is_some()
    }
}

/// Parses `10%`, `10` or `2.5%` as a percentage.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("invalid percentage {text:?} (expected e.g. 10%)")),
    }
}

struct Figure {
    name: &'static str,
    get: fn(&RunSummary) -> Option<f64>,
    unit: FigureUnit,
    higher_is_better: bool,
    gated: bool,
}

fn figures() -> Vec<Figure> {
    vec![
        Figure {
            name: "echo p99",
            get: |s| s.echo_p99_us,
            unit: FigureUnit::Micros,
            higher_is_better: false,
            gated: true,
        },
        Figure {
            name: "first echo p99",
            get: |s| s.first_echo_p99_us,
            unit: FigureUnit::Micros,
            higher_is_better: false,
            gated: true,
        },
        Figure {
            name: "messages/s",
            get: |s| Some(s.messages_per_sec),
            unit: FigureUnit::Whole,
            higher_is_better: true,
            gated: true,
        },
        Figure {
            name: "echo p50",
            get: |s| s.echo_p50_us,
            unit: FigureUnit::Micros,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "connect p99",
            get: |s| s.connect_p99_us,
            unit: FigureUnit::Micros,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "PSS per child",
            get: |s| s.pss_per_child_kib,
            unit: FigureUnit::Kib,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "peak live children",
            get: |s| Some(s.peak_children as f64),
            unit: FigureUnit::Whole,
            higher_is_better: true,
            gated: false,
        },
        Figure {
            name: "lingering zombies",
            get: |s| Some(s.zombies_lingering as f64),
            unit: FigureUnit::Whole,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "load errors",
            get: |s| Some(s.load_errors as f64),
            unit: FigureUnit::Whole,
            higher_is_better: false,
            gated: false,
        },
    ]
}

/// Why BASE and NEW cannot be compared at all: different report kinds.
pub fn incomparable(base: &AnyReport, new: &AnyReport) -> Option<String> {
    let (b, n) = (base.kind_name(), new.kind_name());
    (b != n).then(|| {
        format!("BASE is a {b} report and NEW a {n} report; compare takes two of the same kind")
    })
}

/// The parameters that differ between BASE and NEW, as `field: base -> new`, one per field
/// (nested fields by their path, e.g. `check_options.clients`); empty when the runs are alike.
pub fn parameter_differences(base: &AnyReport, new: &AnyReport) -> Vec<String> {
    let mut out = Vec::new();
    diff_values(
        "",
        &base.parameters_json(),
        &new.parameters_json(),
        &mut out,
    );
    out
}

fn diff_values(path: &str, b: &serde_json::Value, n: &serde_json::Value, out: &mut Vec<String>) {
    match (b, n) {
        (serde_json::Value::Object(bo), serde_json::Value::Object(no)) => {
            let keys: std::collections::BTreeSet<&String> = bo.keys().chain(no.keys()).collect();
            for k in keys {
                let null = serde_json::Value::Null;
                let field = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(
                    &field,
                    bo.get(k).unwrap_or(&null),
                    no.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if b != n => out.push(format!("{path}: {b} -> {n}")),
        _ => {}
    }
}

/// With `--runs` spreads on either side, a regression must also lie beyond the measured spread:
/// NEW's range (or value) entirely worse than BASE's. Two back-to-back runs differ by more than
/// 10% on a busy machine; a change inside that noise is shown as `worse`, not gated.
fn within_spread(row: &mut CompareRow, higher_is_better: bool, base: &AnyReport, new: &AnyReport) {
    let CompareRow::Figure {
        name,
        base: Some(bv),
        new: Some(nv),
        verdict,
        ..
    } = row
    else {
        return;
    };
    let range = |r: &AnyReport, v: f64| {
        r.spread()
            .and_then(|s| s.figures.get(name.as_str()))
            .map(|f| (f.min, f.max))
            .unwrap_or((v, v))
    };
    if base.spread().is_none() && new.spread().is_none() {
        return;
    }
    let ((bmin, bmax), (nmin, nmax)) = (range(base, *bv), range(new, *nv));
    let beyond = if higher_is_better {
        nmax < bmin
    } else {
        nmin > bmax
    };
    if *verdict == Verdict::Regression && !beyond {
        *verdict = Verdict::Worse;
    }
}

/// One figure's row: the change in percent and the verdict against the threshold.
fn figure_row(
    name: String,
    unit: FigureUnit,
    higher_is_better: bool,
    gated: bool,
    (bv, nv): (Option<f64>, Option<f64>),
    max_regression_pct: f64,
) -> CompareRow {
    let mut change_pct = None;
    let mut verdict = Verdict::Same;
    if let (Some(bv), Some(nv)) = (bv, nv) {
        // Positive `worse` means NEW is worse than BASE by that many percent.
        let change = if bv == 0.0 {
            if nv == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(nv)
            }
        } else {
            (nv - bv) / bv.abs() * 100.0
        };
        change_pct = Some(change);
        let worse = if higher_is_better { -change } else { change };
        if gated && worse > max_regression_pct {
            verdict = Verdict::Regression;
        } else if worse > max_regression_pct {
            // Not gated: shown so a person sees it, but it does not fail the comparison.
            verdict = Verdict::Worse;
        } else if worse < -max_regression_pct {
            verdict = Verdict::Better;
        }
    }
    CompareRow::Figure {
        name,
        unit,
        base: bv,
        new: nv,
        change_pct,
        verdict,
    }
}

/// Compares NEW against BASE with a threshold in percent. Reports of different kinds share no
/// figures (see [`incomparable`], which `compare` refuses them by).
pub fn compare(base: &AnyReport, new: &AnyReport, max_regression_pct: f64) -> Comparison {
    let mut out = Comparison {
        rows: Vec::new(),
        max_regression_pct,
    };
    if let (Some(b), Some(n)) = (base.summary(), new.summary()) {
        for f in figures() {
            let mut row = figure_row(
                f.name.to_owned(),
                f.unit,
                f.higher_is_better,
                f.gated,
                ((f.get)(b), (f.get)(n)),
                max_regression_pct,
            );
            within_spread(&mut row, f.higher_is_better, base, new);
            out.rows.push(row);
        }
    }
    if let (AnyReport::Sweep(b), AnyReport::Sweep(n)) = (base, new) {
        compare_sweeps(b, n, max_regression_pct, &mut out.rows);
    }
    for b in base.checks() {
        let now = new.checks().iter().find(|n| n.name == b.name);
        let now_status = now.map(|n| n.status);
        let regressed = b.status == CheckStatus::Pass && now_status == Some(CheckStatus::Fail);
        let missing = now_status.is_none();
        out.rows.push(CompareRow::Check {
            name: b.name.clone(),
            base: b.status,
            new: now_status,
            new_detail: if regressed {
                now.and_then(|n| n.detail.clone())
            } else {
                None
            },
            verdict: if regressed || missing {
                Verdict::Regression
            } else {
                Verdict::Same
            },
        });
    }
    out
}

/// The figures of one sweep step that `compare` puts side by side; the gated ones are the run's.
struct StepFigure {
    name: &'static str,
    get: fn(&SweepStep) -> Option<f64>,
    unit: FigureUnit,
    higher_is_better: bool,
    gated: bool,
}

fn step_figures() -> [StepFigure; 6] {
    [
        StepFigure {
            name: "echo p99",
            get: |s| s.steady.as_ref().and_then(|st| st.echo_p99_us),
            unit: FigureUnit::Micros,
            higher_is_better: false,
            gated: true,
        },
        StepFigure {
            name: "first echo p99",
            get: |s| s.burst.as_ref().and_then(|b| b.first_echo_p99_us),
            unit: FigureUnit::Micros,
            higher_is_better: false,
            gated: true,
        },
        StepFigure {
            name: "messages/s",
            get: |s| s.steady.as_ref().map(|st| st.messages_per_sec),
            unit: FigureUnit::Whole,
            higher_is_better: true,
            gated: true,
        },
        StepFigure {
            name: "accept+fork/s",
            get: |s| s.burst.as_ref().and_then(|b| b.accept_fork_per_sec),
            unit: FigureUnit::Whole,
            higher_is_better: true,
            gated: false,
        },
        StepFigure {
            name: "PSS per child",
            get: |s| s.tree.pss_per_child_kib,
            unit: FigureUnit::Kib,
            higher_is_better: false,
            gated: false,
        },
        StepFigure {
            name: "peak live children",
            get: |s| Some(s.tree.peak_live_children as f64),
            unit: FigureUnit::Whole,
            higher_is_better: true,
            gated: false,
        },
    ]
}

/// A model figure: name, unit, higher is better, (BASE, NEW).
type ModelFigure = (&'static str, FigureUnit, bool, (Option<f64>, Option<f64>));

/// Two sweeps step by step (steps with the same connection count; a step of BASE that NEW lacks
/// or that failed in NEW is a regression), then their capacity models (shown, not gated: a model
/// moves with the machine as much as with the server).
fn compare_sweeps(b: &SweepReport, n: &SweepReport, max_pct: f64, rows: &mut Vec<CompareRow>) {
    compare_steps(b, n, max_pct, rows);
    compare_models(b, n, max_pct, rows);
}

/// Each step of BASE against NEW's step with the same connection count.
fn compare_steps(b: &SweepReport, n: &SweepReport, max_pct: f64, rows: &mut Vec<CompareRow>) {
    for bs in &b.steps {
        let ns = n.steps.iter().find(|s| s.conns == bs.conns);
        let step_name = format!("step {} conns", bs.conns);
        match ns {
            Some(ns) => {
                for f in step_figures() {
                    rows.push(figure_row(
                        format!("{step_name}: {}", f.name),
                        f.unit,
                        f.higher_is_better,
                        f.gated,
                        ((f.get)(bs), (f.get)(ns)),
                        max_pct,
                    ));
                }
            }
            None => rows.push(CompareRow::Check {
                name: step_name.clone(),
                base: if bs.ok {
                    CheckStatus::Pass
                } else {
                    CheckStatus::Fail
                },
                new: None,
                new_detail: None,
                verdict: if bs.ok {
                    Verdict::Regression
                } else {
                    Verdict::Same
                },
            }),
        }
        if let Some(ns) = ns {
            if bs.ok && !ns.ok {
                rows.push(CompareRow::Check {
                    name: step_name,
                    base: CheckStatus::Pass,
                    new: Some(CheckStatus::Fail),
                    new_detail: ns.failure.clone(),
                    verdict: Verdict::Regression,
                });
            }
        }
    }
}

/// The capacity models side by side (shown, not gated).
fn compare_models(b: &SweepReport, n: &SweepReport, max_pct: f64, rows: &mut Vec<CompareRow>) {
    let slope_kib = |r: &SweepReport| r.capacity.memory_fit.as_ref().map(|f| f.slope / 1024.0);
    let predicted = |r: &SweepReport| {
        r.capacity
            .prediction
            .as_ref()
            .map(|p| p.max_connections as f64)
    };
    let model: [ModelFigure; 4] = [
        (
            "model: memory per connection",
            FigureUnit::Kib,
            false,
            (slope_kib(b), slope_kib(n)),
        ),
        (
            "model: accept+fork rate",
            FigureUnit::Whole,
            true,
            (b.summary.accept_fork_per_sec, n.summary.accept_fork_per_sec),
        ),
        (
            "model: latency knee conns",
            FigureUnit::Whole,
            true,
            (
                b.capacity.latency_knee_conns.map(|k| k as f64),
                n.capacity.latency_knee_conns.map(|k| k as f64),
            ),
        ),
        (
            "model: predicted maximum",
            FigureUnit::Whole,
            true,
            (predicted(b), predicted(n)),
        ),
    ];
    for (name, unit, higher_is_better, values) in model {
        rows.push(figure_row(
            name.to_owned(),
            unit,
            higher_is_better,
            false,
            values,
            max_pct,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse() {
        assert_eq!(parse_percent("10%"), Ok(10.0));
        assert_eq!(parse_percent("2.5"), Ok(2.5));
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("ten").is_err());
    }
}
