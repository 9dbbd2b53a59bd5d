//! `harness compare BASE NEW`: the key figures side by side with their change, and the regression
//! gate CI uses: echo p99, first-echo p99 or messages/s worse than the threshold, or a check that
//! passed in BASE and fails in NEW.

use crate::checks::CheckStatus;
use crate::report::{AnyReport, RunSummary};

/// One line of the comparison table, already formatted.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    pub figure: String,
    pub base: String,
    pub new: String,
    pub change: String,
    /// `REGRESSION` (a gated figure or a check), `worse` (an ungated figure), `better`, or empty.
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    pub rows: Vec<CompareRow>,
    /// One line per regression; empty means the gate passes.
    pub regressions: Vec<String>,
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
    format: fn(Option<f64>) -> String,
    higher_is_better: bool,
    gated: bool,
}

fn figures() -> Vec<Figure> {
    use crate::output::{kib, micros};
    let plain = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    vec![
        Figure {
            name: "echo p99",
            get: |s| s.echo_p99_us,
            format: micros,
            higher_is_better: false,
            gated: true,
        },
        Figure {
            name: "first echo p99",
            get: |s| s.first_echo_p99_us,
            format: micros,
            higher_is_better: false,
            gated: true,
        },
        Figure {
            name: "messages/s",
            get: |s| Some(s.messages_per_sec),
            format: plain,
            higher_is_better: true,
            gated: true,
        },
        Figure {
            name: "echo p50",
            get: |s| s.echo_p50_us,
            format: micros,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "connect p99",
            get: |s| s.connect_p99_us,
            format: micros,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "PSS per child",
            get: |s| s.pss_per_child_kib,
            format: kib,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "peak live children",
            get: |s| Some(s.peak_children as f64),
            format: plain,
            higher_is_better: true,
            gated: false,
        },
        Figure {
            name: "lingering zombies",
            get: |s| Some(s.zombies_lingering as f64),
            format: plain,
            higher_is_better: false,
            gated: false,
        },
        Figure {
            name: "load errors",
            get: |s| Some(s.load_errors as f64),
            format: plain,
            higher_is_better: false,
            gated: false,
        },
    ]
}

/// Compares NEW against BASE with a threshold in percent.
pub fn compare(base: &AnyReport, new: &AnyReport, max_regression_pct: f64) -> Comparison {
    let mut out = Comparison::default();
    if let (Some(b), Some(n)) = (base.summary(), new.summary()) {
        for f in figures() {
            let (bv, nv) = ((f.get)(b), (f.get)(n));
            let mut row = CompareRow {
                figure: f.name.into(),
                base: (f.format)(bv),
                new: (f.format)(nv),
                change: "-".into(),
                verdict: String::new(),
            };
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
                row.change = if change.is_finite() {
                    format!("{change:+.1}%")
                } else {
                    "new".into()
                };
                let worse = if f.higher_is_better { -change } else { change };
                if f.gated && worse > max_regression_pct {
                    row.verdict = "REGRESSION".into();
                    out.regressions.push(format!(
                        "{} went from {} to {} ({}; limit {max_regression_pct}%)",
                        f.name, row.base, row.new, row.change
                    ));
                } else if worse > max_regression_pct {
                    // Not gated: shown so a person sees it, but it does not fail the comparison.
                    row.verdict = "worse".into();
                } else if worse < -max_regression_pct {
                    row.verdict = "better".into();
                }
            }
            out.rows.push(row);
        }
    }
    for b in base.checks() {
        let now = new.checks().iter().find(|n| n.name == b.name);
        let now_status = now.map(|n| n.status);
        out.rows.push(CompareRow {
            figure: format!("check {}", b.name),
            base: b.status.as_str().into(),
            new: now_status.map_or("-", |s| s.as_str()).into(),
            change: String::new(),
            verdict: String::new(),
        });
        if b.status == CheckStatus::Pass && now_status == Some(CheckStatus::Fail) {
            if let Some(row) = out.rows.last_mut() {
                row.verdict = "REGRESSION".into();
            }
            out.regressions.push(format!(
                "check {} passed before and fails now: {}",
                b.name,
                now.and_then(|n| n.detail.clone()).unwrap_or_default()
            ));
        }
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
