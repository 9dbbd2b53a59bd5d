//! Text for the terminal: the check table, the run summary and the compare table. Plain aligned
//! columns, so they read the same in a terminal, a CI log or a pasted issue.

use crate::checks::{CheckResult, CheckStatus};
use crate::compare::Comparison;
use crate::report::{CheckReport, RunReport, RunSummary};

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

pub fn micros(us: Option<f64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us >= 1_000_000.0 => format!("{:.2} s", us / 1_000_000.0),
        Some(us) if us >= 1_000.0 => format!("{:.2} ms", us / 1_000.0),
        Some(us) => format!("{us:.0} us"),
    }
}

pub fn kib(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} KiB"))
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
    out
}

pub fn comparison_text(c: &Comparison) -> String {
    let rows: Vec<Vec<String>> = c
        .rows
        .iter()
        .map(|r| {
            vec![
                r.figure.clone(),
                r.base.clone(),
                r.new.clone(),
                r.change.clone(),
                r.verdict.clone(),
            ]
        })
        .collect();
    let mut out = table(&["figure", "base", "new", "change", ""], &rows);
    if c.regressions.is_empty() {
        out.push_str("\nno regression\n");
    } else {
        out.push('\n');
        for r in &c.regressions {
            out.push_str(&format!("regression: {r}\n"));
        }
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
