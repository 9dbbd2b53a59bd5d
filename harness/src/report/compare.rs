//! `harness compare BASE NEW` as numbers and verdicts: the key figures of two run reports side by
//! side with their change, and the regression gate CI uses: echo p99, first-echo p99 or messages/s
//! worse than the threshold, or a check that passed in BASE and fails in NEW. The table and the
//! regression lines are drawn by `render::text`.

use crate::report::check::CheckStatus;
use crate::report::run::RunSummary;
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
        name: &'static str,
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
        /// `None` when NEW does not have the check.
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

/// Compares NEW against BASE with a threshold in percent.
pub fn compare(base: &AnyReport, new: &AnyReport, max_regression_pct: f64) -> Comparison {
    let mut out = Comparison {
        rows: Vec::new(),
        max_regression_pct,
    };
    if let (Some(b), Some(n)) = (base.summary(), new.summary()) {
        for f in figures() {
            let (bv, nv) = ((f.get)(b), (f.get)(n));
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
                let worse = if f.higher_is_better { -change } else { change };
                if f.gated && worse > max_regression_pct {
                    verdict = Verdict::Regression;
                } else if worse > max_regression_pct {
                    // Not gated: shown so a person sees it, but it does not fail the comparison.
                    verdict = Verdict::Worse;
                } else if worse < -max_regression_pct {
                    verdict = Verdict::Better;
                }
            }
            out.rows.push(CompareRow::Figure {
                name: f.name,
                unit: f.unit,
                base: bv,
                new: nv,
                change_pct,
                verdict,
            });
        }
    }
    for b in base.checks() {
        let now = new.checks().iter().find(|n| n.name == b.name);
        let now_status = now.map(|n| n.status);
        let regressed = b.status == CheckStatus::Pass && now_status == Some(CheckStatus::Fail);
        out.rows.push(CompareRow::Check {
            name: b.name.clone(),
            base: b.status,
            new: now_status,
            new_detail: if regressed {
                now.and_then(|n| n.detail.clone())
            } else {
                None
            },
            verdict: if regressed {
                Verdict::Regression
            } else {
                Verdict::Same
            },
        });
    }
    out
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
