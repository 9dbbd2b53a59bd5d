//! Text for the terminal: the check table, the run summary, the compare table, and the sweep's
//! step table with its capacity model. Plain aligned columns, so they read the same in a
//! terminal, a CI log or a pasted issue.

use crate::capacity::CapacityModel;
use crate::render::layout::{table, wrap_lines, TEXT_WIDTH};
use crate::render::units::{kib, mib_or_kib, micros, whole};
use crate::report::check::{CheckReport, CheckResult, CheckStatus};
use crate::report::compare::{CompareRow, Comparison, FigureUnit, Verdict};
use crate::report::run::{RunReport, RunSummary};
use crate::report::sweep::{SweepReport, SweepSummary};
use crate::report::AnyReport;

pub fn checks_table(results: &[CheckResult]) -> String {
    table(&CHECK_HEADER, &checks_rows(results))
}

const CHECK_HEADER: [&str; 4] = ["check", "status", "time", "detail"];

/// One row per check; statuses in capitals alike (PASS, FAIL, SKIP) so none reads as a note.
fn checks_rows(results: &[CheckResult]) -> Vec<Vec<String>> {
    results
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                match r.status {
                    CheckStatus::Pass => "PASS".into(),
                    CheckStatus::Fail => "FAIL".into(),
                    CheckStatus::Skip => "SKIP".into(),
                },
                format!("{:.2}s", r.duration_secs),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

pub fn check_report_text(report: &CheckReport) -> String {
    let mut out = format!("server: {}\n\n", report.server.description);
    out.push_str(&checks_table(&report.checks));
    out.push_str(&format!(
        "\n{} passed, {} failed, {} skipped; listen queue overflows {}, drops {} (namespace-wide: \
         every listener in this network namespace, not only the server's)\n",
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
            "listen overflows / drops (namespace-wide)",
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
    // Which loadgen engine measured it (`--engine auto` probes the server: loadgen/README.md).
    let engine = report.load.as_ref().map_or(String::new(), |l| {
        format!(", loadgen's {} engine", l.parameters.engine)
    });
    let mut out = format!(
        "server: {}\nload: {} connections, {}, {} B messages, pipeline {}{}{engine}\n\n",
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
    if let Some(spread) = &report.spread {
        out.push_str(&format!(
            "\nover {} runs (the figures above are the medians)\n",
            spread.runs
        ));
        let rows: Vec<Vec<String>> = spread
            .figures
            .iter()
            .map(|(name, f)| {
                let show = |v: f64| {
                    if name == "messages/s" {
                        format!("{v:.0}")
                    } else {
                        micros(Some(v))
                    }
                };
                vec![
                    name.clone(),
                    show(f.median),
                    format!("{} +- {}", show(f.mean), show(f.stddev)),
                    format!("{} .. {}", show(f.min), show(f.max)),
                ]
            })
            .collect();
        out.push_str(&table(
            &["figure", "median", "mean +- sd", "min .. max"],
            &rows,
        ));
    }
    if let Some(why) = &report.summary.load_failure {
        out.push_str(&format!("\nload failed: {why}\n"));
    }
    out.push_str(&load_own_delay_text(report));
    out.push_str(&crate::render::memory::run_memory_text(report));
    out
}

/// How much of the echo latency was the load generator's own delay in reading (its read delay,
/// loadgen's schema 4), and loadgen's warnings: a latency the harness reports is the server's
/// only when this is small.
fn load_own_delay_text(report: &RunReport) -> String {
    let Some(load) = &report.load else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(delay) = &load.latency.read_delay {
        let echo = &load.latency.echo;
        let p = |h: &loadgen::HistogramReport, q: f64| {
            micros(h.value_at_percentile_us(q).map(|v| v as f64))
        };
        out.push_str(&format!(
            "\nloadgen's read delay (echoes waiting in its sockets, part of the echo): p50 {}, p99 \
             {} (echo p50 {}, p99 {})\n",
            p(delay, 50.0),
            p(delay, 99.0),
            p(echo, 50.0),
            p(echo, 99.0)
        ));
    }
    for warning in load.warnings() {
        out.push_str(&format!("warning (loadgen): {warning}\n"));
    }
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
            new.map_or("MISSING", |s| s.as_str()).into(),
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
            name, new: None, ..
        } => {
            format!("check {name} is missing from NEW (it ran in BASE)")
        }
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
        "sweep of {}\n  started {}, ladder {:?}, {} s steady phase per step, {} B messages\n\n",
        r.server.description,
        r.started_at,
        r.parameters.ladder,
        r.parameters.duration_secs,
        r.parameters.size
    );
    // Two tables so each fits 120 columns: what the load saw, then what the server's tree cost.
    let load_rows = sweep_load_rows(r);
    out.push_str("load: the connect burst, then the steady closed loop\n");
    out.push_str(&table(&SWEEP_LOAD_HEADER, &load_rows));
    out.push_str(
        "read p99: loadgen's own read delay, the part of each echo that waited for loadgen to \
         read it\n",
    );
    out.push_str(&wrap_lines(&loadgen_bound_steps_text(r), TEXT_WIDTH));
    let tree_rows = sweep_tree_rows(r);
    out.push_str("\nserver: its process tree at the step's peak\n");
    out.push_str(&table(&SWEEP_TREE_HEADER, &tree_rows));
    out.push_str(
        "parent CPU: the server parent's user+system time in the step, in 10 ms ticks (0 = under \
         one tick)\n* namespace-wide: every listener in this network \
         namespace, not only the server's\n",
    );
    for s in r.steps.iter().filter(|s| !s.ok) {
        out.push_str(&format!(
            "step {} failed: {}\n",
            s.conns,
            s.failure.as_deref().unwrap_or("unknown")
        ));
    }
    out.push('\n');
    out.push_str(&capacity_text(&r.capacity, &r.summary));
    out.push_str(&wrap_lines(
        &crate::render::capacity::throughput_text(r),
        TEXT_WIDTH,
    ));
    out.push_str(&wrap_lines(
        &crate::render::capacity::cpu_text(r),
        TEXT_WIDTH,
    ));
    out.push_str(&wrap_lines(
        &crate::render::memory::total_memory_text(r),
        TEXT_WIDTH,
    ));
    out
}

const SWEEP_LOAD_HEADER: [&str; 11] = [
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
    "read p99",
];

const SWEEP_TREE_HEADER: [&str; 8] = [
    "conns",
    "children",
    "zombies",
    "total PSS",
    "PSS/child",
    "private/child",
    "parent CPU ms",
    "listen overflows*",
];

/// The sweep's load figures, one row per step.
fn sweep_load_rows(r: &SweepReport) -> Vec<Vec<String>> {
    r.steps
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
                micros(st.and_then(|s| s.read_delay_p99_us)),
            ]
        })
        .collect()
}

/// One line per step whose echo latency was loadgen's as much as the server's: its read delay
/// p99 above loadgen's warning share of the echo p99. Their latency and messages/s (and the
/// throughput model fitted over them) measure the load generator too.
fn loadgen_bound_steps_text(r: &SweepReport) -> String {
    let bound: Vec<String> = r
        .steps
        .iter()
        .filter_map(|s| {
            let st = s.steady.as_ref()?;
            let (delay, echo) = (st.read_delay_p99_us?, st.echo_p99_us?);
            loadgen::read_delay_is_loadgens(delay, echo).then(|| {
                let (delay, echo) = (micros(Some(delay)), micros(Some(echo)));
                format!("{} connections ({delay} of {echo})", s.conns)
            })
        })
        .collect();
    if bound.is_empty() {
        return String::new();
    }
    format!(
        "warning: loadgen's own read delay p99 (\"read p99\": echoes waiting in its sockets for it \
         to run) is over {:.0}% of the echo p99 and over {} at {}: there the latency, \
         messages/s and the throughput model measure the load generator as much as the server \
         (more load hosts, or the server on cores of its own)\n",
        loadgen::SEND_LAG_WARN_FRACTION * 100.0,
        micros(Some(loadgen::READ_DELAY_WARN_FLOOR_US)),
        bound.join(", ")
    )
}

/// The cost of the server's tree, one row per step.
fn sweep_tree_rows(r: &SweepReport) -> Vec<Vec<String>> {
    r.steps
        .iter()
        .map(|s| {
            vec![
                s.conns.to_string(),
                s.tree.peak_live_children.to_string(),
                s.tree.max_zombies.to_string(),
                s.tree
                    .total_pss_kib
                    .map_or("-".into(), |k| mib_or_kib(k as f64 * 1024.0)),
                kib(s.tree.pss_per_child_kib),
                kib(s.tree.private_per_child_kib),
                parent_cpu_ms(s.tree.parent_cpu_secs),
                s.listen_queue.listen_overflows.to_string(),
            ]
        })
        .collect()
}

/// One table of a report, for the `markdown` and `csv` exports.
pub struct TableData {
    pub title: &'static str,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn table_data(title: &'static str, header: &[&str], rows: Vec<Vec<String>>) -> TableData {
    TableData {
        title,
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
    }
}

/// The tables `harness report --format markdown|csv` exports: the same cells as the text.
pub fn report_tables(report: &AnyReport) -> Vec<TableData> {
    match report {
        AnyReport::Check(r) => vec![table_data("checks", &CHECK_HEADER, checks_rows(&r.checks))],
        AnyReport::Run(r) => vec![
            table_data("checks", &CHECK_HEADER, checks_rows(&r.checks)),
            table_data("summary", &["figure", "value"], summary_rows(&r.summary)),
        ],
        AnyReport::Sweep(r) => vec![
            table_data("load", &SWEEP_LOAD_HEADER, sweep_load_rows(r)),
            table_data("server", &SWEEP_TREE_HEADER, sweep_tree_rows(r)),
        ],
    }
}

/// GitHub-flavoured Markdown tables, each under a `### title` heading (`|` in cells escaped).
pub fn markdown(tables: &[TableData]) -> String {
    let cell = |c: &str| c.replace('|', "\\|");
    let mut out = String::new();
    for t in tables {
        out.push_str(&format!("### {}\n\n", t.title));
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells
                    .iter()
                    .map(|c| cell(c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        };
        out.push_str(&line(&t.header));
        out.push_str(&format!("|{}\n", "---|".repeat(t.header.len())));
        for row in &t.rows {
            out.push_str(&line(row));
        }
        out.push('\n');
    }
    out
}

/// CSV (RFC 4180 quoting), one table after another with a `table` column first naming it, so
/// one file loads into a spreadsheet.
pub fn csv(tables: &[TableData]) -> String {
    let field = |c: &str| {
        if c.contains([',', '"', '\n']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.to_string()
        }
    };
    let mut out = String::new();
    for t in tables {
        let mut header = vec!["table".to_string()];
        header.extend(t.header.iter().cloned());
        out.push_str(
            &header
                .iter()
                .map(|c| field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
        for row in &t.rows {
            let mut cells = vec![t.title.to_string()];
            cells.extend(row.iter().cloned());
            out.push_str(&cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
    }
    out
}

/// The parent's CPU time in whole milliseconds: /proc counts it in 10 ms ticks, so finer digits
/// (and microseconds) would claim a precision it does not have.
fn parent_cpu_ms(secs: Option<f64>) -> String {
    secs.map_or("-".into(), |s| format!("{:.0}", s * 1000.0))
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
            // Each limit as the connections it allows, with its arithmetic: `kernel.pid_max`
            // is the sysctl's name, the number after it the connections it leaves room for.
            if let Some(first) = p.candidates.first() {
                out.push_str(&format!("                          = {}\n", first.detail));
            }
            for c in p.candidates.iter().skip(1).take(3) {
                // The arithmetic on a line of its own, as for the first: beside the limit it
                // ran past 120 columns.
                out.push_str(&format!(
                    "  then                    {} by {}\n                          = {}\n",
                    c.max_connections, c.kind, c.detail
                ));
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
    fn the_committed_baseline_sweep_fits_120_columns_with_labelled_figures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/baseline");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("results/baseline") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(crate::report::AnyReport::Sweep(r)) = crate::report::AnyReport::read(&path)
            else {
                continue;
            };
            seen += 1;
            let text = sweep_report_text(&r);
            for line in text.lines() {
                assert!(line.chars().count() <= 120, "{} wide: {line}", line.len());
            }
            assert!(text.contains("10 ms ticks") && text.contains("namespace-wide"));
            // Parent CPU in whole milliseconds (10 ms ticks), not `0 us` or `360.00 ms`.
            assert!(text.contains("parent CPU ms"), "{text}");
            let tree = text
                .split("server: its process tree")
                .nth(1)
                .and_then(|t| t.split("parent CPU:").next())
                .expect("tree table");
            assert!(!tree.contains(" us") && !tree.contains(".00 ms"), "{tree}");
        }
        assert!(seen > 0, "no sweep in {}", dir.display());
    }

    #[test]
    fn steps_where_loadgen_read_late_are_named_and_only_those() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/baseline/backlog-4096/sweep-20261127T101308.526Z.json");
        let Ok(crate::report::AnyReport::Sweep(mut r)) = crate::report::AnyReport::read(&path)
        else {
            panic!("{} is not a sweep", path.display());
        };
        // A report from before schema 5 has no read delay: nothing to say.
        assert_eq!(loadgen_bound_steps_text(&r), "");
        assert!(r.steps.len() >= 2);
        for (i, step) in r.steps.iter_mut().enumerate() {
            let steady = step.steady.as_mut().expect("steady");
            // The first step read late (40% of the echo p99); the second read 40% late too, but
            // only the wake-up any client pays (under 1 ms); the others on time (10%).
            let (delay, echo) = match i {
                0 => (4000.0, 10_000.0),
                1 => (400.0, 1000.0),
                _ => (1000.0, 10_000.0),
            };
            (steady.read_delay_p99_us, steady.echo_p99_us) = (Some(delay), Some(echo));
        }
        let text = loadgen_bound_steps_text(&r);
        let first = format!("at {} connections (4.00 ms of 10.00 ms)", r.steps[0].conns);
        assert!(
            text.starts_with("warning: ") && text.contains(&first),
            "{text}"
        );
        assert!(
            !text.contains("400 us") && !text.contains("1.00 ms of"),
            "{text}"
        );
        assert!(sweep_report_text(&r).contains(&first));
    }

    #[test]
    fn exports_quote_what_would_break_them() {
        let t = [TableData {
            title: "checks",
            header: vec!["check".into(), "detail".into()],
            rows: vec![vec!["a".into(), "x, \"y\" | z".into()]],
        }];
        assert_eq!(
            csv(&t),
            "table,check,detail\nchecks,a,\"x, \"\"y\"\" | z\"\n"
        );
        assert_eq!(
            markdown(&t),
            "### checks\n\n| check | detail |\n|---|---|\n| a | x, \"y\" \\| z |\n\n"
        );
    }

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
