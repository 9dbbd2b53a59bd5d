//! Text for the terminal: the check table, the run summary, the compare table, and the sweep's
//! step table with its capacity model. Plain aligned columns, so they read the same in a
//! terminal, a CI log or a pasted issue.

use crate::capacity::CapacityModel;
use crate::render::units::{kib, mib_or_kib, micros, whole};
use crate::report::check::{CheckReport, CheckResult, CheckStatus};
use crate::report::compare::{CompareRow, Comparison, FigureUnit, Verdict};
use crate::report::run::{RunReport, RunSummary};
use crate::report::sweep::{SweepReport, SweepSummary};

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn checks_table(results: &[CheckResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                match r.status {
                    CheckStatus::Pass => "PASS".into(),
                    CheckStatus::Fail => "FAIL".into(),
                    CheckStatus::Skip => "skip".into(),
                },
                format!("{:.2}s", r.duration_secs),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["check", "status", "time", "detail"], &rows)
}

pub fn check_report_text(report: &CheckReport) -> String {
    let mut out = format!("server: {}\n\n", report.server.description);
    out.push_str(&checks_table(&report.checks));
    out.push_str(&format!(
        "\n{} passed, {} failed, {} skipped; listen queue overflows {}, drops {}\n",
        report.counts.passed,
        report.counts.failed,
        report.counts.skipped,
        report.listen_queue.listen_overflows,
        report.listen_queue.listen_drops
    ));
    out
}

pub fn summary_rows(s: &RunSummary) -> Vec<Vec<String>> {
    let row = |k: &str, v: String| vec![k.to_string(), v];
    vec![
        row(
            "connections established",
            s.connections_established.to_string(),
        ),
        row("peak live children", s.peak_children.to_string()),
        row(
            "zombies seen / lingering >1s",
            format!("{} / {}", s.zombies_seen, s.zombies_lingering),
        ),
        row("PSS per child", kib(s.pss_per_child_kib)),
        row("private memory per child", kib(s.private_per_child_kib)),
        row(
            "peak tree PSS",
            format!("{:.1} MiB", s.peak_tree_pss_kib as f64 / 1024.0),
        ),
        row("connect p99", micros(s.connect_p99_us)),
        row("first echo p99", micros(s.first_echo_p99_us)),
        row("echo p50", micros(s.echo_p50_us)),
        row("echo p99", micros(s.echo_p99_us)),
        row("messages/s", format!("{:.0}", s.messages_per_sec)),
        row("load errors", s.load_errors.to_string()),
        row(
            "listen overflows / drops",
            format!("{} / {}", s.listen_overflows, s.listen_drops),
        ),
        row("orphans after SIGTERM", s.orphans_after_stop.to_string()),
        row(
            "checks",
            format!(
                "{} passed, {} failed, {} skipped",
                s.checks.passed, s.checks.failed, s.checks.skipped
            ),
        ),
    ]
}

pub fn run_report_text(report: &RunReport) -> String {
    let p = &report.parameters;
    let mut out = format!(
        "server: {}\nload: {} connections, {}, {} B messages, pipeline {}{}\n\n",
        report.server.description,
        p.conns,
        match (p.duration_secs, p.messages) {
            (_, Some(m)) => format!("{m} messages each"),
            (Some(d), None) => format!("{d}s"),
            (None, None) => "default duration".into(),
        },
        p.size,
        p.pipeline,
        p.rate
            .map_or(String::new(), |r| format!(", {r} msg/s open loop")),
    );
    out.push_str(&checks_table(&report.checks));
    out.push('\n');
    out.push_str(&table(&["figure", "value"], &summary_rows(&report.summary)));
    if let Some(why) = &report.summary.load_failure {
        out.push_str(&format!("\nload failed: {why}\n"));
    }
    out.push_str(&crate::render::memory::run_memory_text(report));
    out
}

pub fn comparison_text(c: &Comparison) -> String {
    let rows: Vec<Vec<String>> = c.rows.iter().map(comparison_cells).collect();
    let mut out = table(&["figure", "base", "new", "change", ""], &rows);
    if !c.has_regression() {
        out.push_str("\nno regression\n");
    } else {
        out.push('\n');
        for r in c.regressions() {
            out.push_str(&format!(
                "regression: {}\n",
                regression_line(r, c.max_regression_pct)
            ));
        }
    }
    out
}

fn figure_text(unit: FigureUnit, v: Option<f64>) -> String {
    match unit {
        FigureUnit::Micros => micros(v),
        FigureUnit::Kib => kib(v),
        FigureUnit::Whole => whole(v),
    }
}

fn change_text(change_pct: Option<f64>) -> String {
    match change_pct {
        None => "-".into(),
        Some(c) if c.is_finite() => format!("{c:+.1}%"),
        Some(_) => "new".into(),
    }
}

/// `figure, base, new, change, verdict`.
fn comparison_cells(row: &CompareRow) -> Vec<String> {
    let verdict = |v: Verdict| match v {
        Verdict::Same => String::new(),
        Verdict::Better => "better".into(),
        Verdict::Worse => "worse".into(),
        Verdict::Regression => "REGRESSION".into(),
    };
    match row {
        CompareRow::Figure {
            name,
            unit,
            base,
            new,
            change_pct,
            verdict: v,
        } => vec![
            name.to_string(),
            figure_text(*unit, *base),
            figure_text(*unit, *new),
            change_text(*change_pct),
            verdict(*v),
        ],
        CompareRow::Check {
            name,
            base,
            new,
            verdict: v,
            ..
        } => vec![
            format!("check {name}"),
            base.as_str().into(),
            new.map_or("-", |s| s.as_str()).into(),
            String::new(),
            verdict(*v),
        ],
    }
}

/// What a regressed row says after `regression: `.
fn regression_line(row: &CompareRow, max_regression_pct: f64) -> String {
    match row {
        CompareRow::Figure {
            name,
            unit,
            base,
            new,
            change_pct,
            ..
        } => format!(
            "{name} went from {} to {} ({}; limit {max_regression_pct}%)",
            figure_text(*unit, *base),
            figure_text(*unit, *new),
            change_text(*change_pct)
        ),
        CompareRow::Check {
            name, new_detail, ..
        } => format!(
            "check {name} passed before and fails now: {}",
            new_detail.clone().unwrap_or_default()
        ),
    }
}

/// The step table and the capacity model, as `sweep` and `report` print them.
pub fn sweep_report_text(r: &SweepReport) -> String {
    let mut out = format!(
        "sweep of {} ({}), ladder {:?}, {} s steady phase per step, {} B messages\n\n",
        r.server.description,
        r.started_at,
        r.parameters.ladder,
        r.parameters.duration_secs,
        r.parameters.size
    );
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            let b = s.burst.as_ref();
            let st = s.steady.as_ref();
            vec![
                s.conns.to_string(),
                if s.ok { "ok".into() } else { "FAILED".into() },
                micros(b.and_then(|b| b.connect_p99_us)),
                micros(b.and_then(|b| b.first_echo_p50_us)),
                micros(b.and_then(|b| b.first_echo_p99_us)),
                whole(b.and_then(|b| b.accept_fork_per_sec)),
                whole(st.map(|s| s.messages_per_sec)),
                micros(st.and_then(|s| s.echo_p50_us)),
                micros(st.and_then(|s| s.echo_p99_us)),
                micros(st.and_then(|s| s.echo_p999_us)),
                s.listen_queue.listen_overflows.to_string(),
                s.tree.peak_live_children.to_string(),
                s.tree.max_zombies.to_string(),
                s.tree
                    .total_pss_kib
                    .map_or("-".into(), |k| mib_or_kib(k as f64 * 1024.0)),
                kib(s.tree.pss_per_child_kib),
                kib(s.tree.private_per_child_kib),
                micros(s.tree.parent_cpu_secs.map(|c| c * 1e6)),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "conns",
            "step",
            "connect p99",
            "1st echo p50",
            "1st echo p99",
            "accept+fork/s",
            "msg/s",
            "echo p50",
            "echo p99",
            "echo p99.9",
            "listen overflows",
            "children",
            "zombies",
            "total PSS",
            "PSS/child",
            "private/child",
            "parent CPU",
        ],
        &rows,
    ));
    for s in r.steps.iter().filter(|s| !s.ok) {
        out.push_str(&format!(
            "step {} failed: {}\n",
            s.conns,
            s.failure.as_deref().unwrap_or("unknown")
        ));
    }
    out.push('\n');
    out.push_str(&capacity_text(&r.capacity, &r.summary));
    out.push_str(&crate::render::memory::total_memory_text(r));
    out
}

/// The capacity model in a few lines.
pub fn capacity_text(c: &CapacityModel, summary: &SweepSummary) -> String {
    let mut out = String::from("capacity model\n");
    match &c.memory_fit {
        Some(f) => out.push_str(&format!(
            "  PSS per connection      {} base (R^2 {:.4}, {} steps; user space only)\n",
            f.per_connection_text(mib_or_kib),
            f.r_squared,
            f.n
        )),
        None => {
            out.push_str("  PSS per connection      - (fewer than two steps measured memory)\n")
        }
    }
    match (summary.accept_fork_per_sec, summary.largest_burst_conns) {
        (Some(r), Some(n)) => out.push_str(&format!(
            "  accept+fork rate        {r:.0} connections/s (burst of {n})\n"
        )),
        _ => out.push_str("  accept+fork rate        - (no burst echoed completely)\n"),
    }
    match c.latency_knee_conns {
        Some(k) => out.push_str(&format!(
            "  latency knee            {k} connections (echo p99 > 2x the smallest step's)\n"
        )),
        None => out.push_str("  latency knee            none within the ladder\n"),
    }
    match &c.prediction {
        Some(p) => {
            out.push_str(&format!(
                "  predicted maximum       {} connections, bound by {} (raise with: {})\n",
                p.max_connections, p.binding, p.knob
            ));
            let next: Vec<String> = p
                .candidates
                .iter()
                .skip(1)
                .take(3)
                .map(|c| format!("{} {}", c.kind, c.max_connections))
                .collect();
            if !next.is_empty() {
                out.push_str(&format!("  then                    {}\n", next.join(", ")));
            }
        }
        None => out.push_str("  predicted maximum       - (no limit known)\n"),
    }
    match &c.memory_check {
        Some(h) => out.push_str(&format!(
            "  hold-out check (PSS)    fit without the {}-connection step predicts {}, measured {}: {:+.1}%\n",
            h.held_out_x,
            mib_or_kib(h.predicted_y),
            mib_or_kib(h.measured_y),
            h.error_percent
        )),
        None => out.push_str("  hold-out check          - (needs three steps with memory)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["s".into(), "yy".into()],
            ],
        );
        assert_eq!(
            t,
            "a          bb\n---------  --\nlong cell  x\ns          yy\n"
        );
        assert_eq!(micros(Some(1500.0)), "1.50 ms");
        assert_eq!(micros(Some(12.4)), "12 us");
        assert_eq!(micros(None), "-");
    }
}
