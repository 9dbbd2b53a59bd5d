//! Tests of watching a run: `--hlog` interval logs (read back, summed, merged) and `--stages`.
//! A module of the one integration-test binary, like `scale`.

use std::path::Path;
use std::process::Command;

use loadgen::hlog::{IntervalLog, Metric};

use crate::util::{self, Behaviour, TestServer};

/// The log's intervals of every tag add up to the report's end-of-run histogram exactly.
fn assert_log_sums_to_report(log: &Path, report: &loadgen::Report) -> IntervalLog {
    let text = std::fs::read(log).unwrap();
    let parsed = IntervalLog::parse(&text).unwrap();
    for (metric, h) in [
        (Metric::Connect, &report.latency.connect),
        (Metric::FirstEcho, &report.latency.first_echo),
        (Metric::Echo, &report.latency.echo),
    ] {
        let total = parsed.total(metric).unwrap();
        assert_eq!(total, h.histogram().unwrap(), "{metric:?}");
        assert_eq!(total.len(), h.count, "{metric:?}");
    }
    assert!(report.latency.echo.count > 0);
    parsed
}

/// The second, independent reader (ci/hlog_check.py decodes the V2 format itself), when
/// python3 is installed.
fn python_check(log: &Path, json: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/hlog_check.py");
    match Command::new("python3")
        .arg(&script)
        .arg(log)
        .arg(json)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipped: no python3 to run ci/hlog_check.py ({e})"),
    }
}

#[test]
fn hlog_intervals_add_up_to_the_end_of_run_histograms() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let (log, json) = (dir.path().join("run.hlog"), dir.path().join("run.json"));
    util::loadgen_for(&server.target(), 4, "1500ms")
        .args([
            "-q",
            "--warmup",
            "300ms",
            "--hlog-interval",
            "250ms",
            "--hlog",
        ])
        .arg(&log)
        .arg("--json")
        .arg(&json)
        .assert()
        .success();
    let report = util::read_report(&json);
    let parsed = assert_log_sums_to_report(&log, &report);
    assert_eq!(parsed.interval, std::time::Duration::from_millis(250));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("#[loadgen "), "{text}");
    assert!(text.contains("\n#[Histogram log format version 1.3]\n"));
    assert!(text.contains(&format!("#[StartTime: {:.3} ", report.started_unix_secs)));
    for tag in ["connect", "first-echo", "echo"] {
        let n = text
            .lines()
            .filter(|l| l.starts_with(&format!("Tag={tag},")))
            .count();
        // 1.8 s of load and the connect phase in 250 ms intervals.
        assert!(n >= 7, "{n} {tag} intervals");
    }
    python_check(&log, &json);
}

#[test]
fn a_split_run_writes_one_log_of_all_workers() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let (log, json) = (dir.path().join("split.hlog"), dir.path().join("split.json"));
    util::loadgen_messages(&server.target(), 6, 40)
        .args(["-q", "--procs", "3", "--hlog"])
        .arg(&log)
        .arg("--json")
        .arg(&json)
        .assert()
        .success();
    let report = util::read_report(&json);
    assert_eq!(report.parameters.processes, 3);
    assert_eq!(report.latency.connect.count, 6);
    assert_log_sums_to_report(&log, &report);
    python_check(&log, &json);
}

#[test]
fn merge_merges_the_runs_hlogs_by_wall_clock() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for (name, conns) in [("a", 3), ("b", 5)] {
        util::loadgen_messages(&server.target(), conns, 25)
            .args(["-q", "--hlog"])
            .arg(p(&format!("{name}.hlog")))
            .arg("--json")
            .arg(p(&format!("{name}.json")))
            .assert()
            .success();
    }
    util::loadgen()
        .args(["merge", "-q"])
        .args([p("a.json"), p("b.json")])
        .arg("--json")
        .arg(p("m.json"))
        .arg("--hlog-in")
        .args([p("a.hlog"), p("b.hlog")])
        .arg("--hlog")
        .arg(p("m.hlog"))
        .assert()
        .success();
    let merged = util::read_report(&p("m.json"));
    assert_eq!(merged.latency.connect.count, 8);
    assert_log_sums_to_report(&p("m.hlog"), &merged);
    python_check(&p("m.hlog"), &p("m.json"));
    // A log that is not one is a one-line exit 2.
    std::fs::write(p("bad.hlog"), "hello\n").unwrap();
    let out = util::loadgen()
        .args(["merge", "-q"])
        .arg(p("a.json"))
        .arg("--hlog-in")
        .arg(p("bad.hlog"))
        .arg("--hlog")
        .arg(p("x.hlog"))
        .assert()
        .code(2);
    let err = util::stderr(&out);
    assert!(
        err.contains("bad.hlog") && err.lines().count() == 1,
        "{err}"
    );
}

/// Open connections at the end of each timeline second: the running sum of established minus
/// closed.
fn open_by_second(report: &loadgen::Report) -> Vec<(u64, i64, Option<u32>)> {
    let mut open = 0i64;
    report
        .timeline
        .iter()
        .map(|p| {
            open += p.established as i64 - p.closed as i64;
            (p.second, open, p.stage)
        })
        .collect()
}

#[test]
fn connection_stages_ramp_to_each_target_within_five_percent() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let (json, log) = (
        dir.path().join("stages.json"),
        dir.path().join("stages.hlog"),
    );
    let plan = "1s:40,1s:40,1s:80,1s:80,1s:20,1s:20,1s:0";
    util::loadgen()
        .args([
            "--addr",
            &server.target(),
            "--no-progress",
            "-q",
            "--stages",
            plan,
        ])
        .arg("--json")
        .arg(&json)
        .arg("--hlog")
        .arg(&log)
        .assert()
        .success();
    let report = util::read_report(&json);
    assert_eq!(report.parameters.conns, 80);
    assert_eq!(report.parameters.stages.len(), 7);
    assert_eq!(report.parameters.duration_secs, Some(7.0));
    let open = open_by_second(&report);
    // The plan started `lead` seconds into the run (second 0 of the timeline); each boundary
    // is measured at the end of the last timeline second before it, against the plan then.
    let lead = report.identity.measured_start_unix_secs - report.started_unix_secs;
    assert!((0.0..0.5).contains(&lead), "{lead}");
    let stages: loadgen::Stages = plan.parse().unwrap();
    for boundary in 1..7u64 {
        let second = ((boundary as f64 + lead).floor() as usize) - 1;
        let planned = stages.target_at(second as f64 + 1.0 - lead).round();
        let measured = open[second].1 as f64;
        assert!(
            (measured - planned).abs() <= 0.05 * planned,
            "boundary {boundary}s: {measured} open at the end of second {second}, {planned} \
             planned: {open:?}"
        );
    }
    assert_eq!(
        open.last().unwrap().1,
        0,
        "every connection closed at the end: {open:?}"
    );
    // Each second says its stage; the connections that closed and reopened are each counted.
    let labels: Vec<_> = open.iter().map(|o| o.2).collect();
    assert_eq!(&labels[..7], &[0, 1, 2, 3, 4, 5, 6].map(Some), "{open:?}");
    let c = &report.counters;
    assert!(c.connections_established >= 80, "{c:?}");
    assert_eq!(c.connections_established, c.sessions_completed, "{c:?}");
    assert_eq!(report.latency.first_echo.count, c.connections_established);
    // The hlog marks where each stage starts, and still adds up.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\n#[Stage ").count(), 7, "{text}");
    assert!(text.contains("#[Stage 3 of 7 starts at 2.0"), "{text}");
    assert_log_sums_to_report(&log, &report);
}

#[test]
fn rate_stages_send_the_planned_messages_and_label_the_seconds() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rate.json");
    // 0 -> 400/s over 1 s (200 messages), 400/s for 1 s (400), down to 0 over 1 s (200).
    util::loadgen()
        .args(["--addr", &server.target(), "--no-progress", "-q", "-c", "8"])
        .args(["--rate", "1s:400/s,1s:400,1s:0"])
        .arg("--json")
        .arg(&json)
        .assert()
        .success();
    let report = util::read_report(&json);
    assert_eq!(report.parameters.rate, Some(400.0));
    assert_eq!(report.parameters.stages.len(), 3);
    assert_eq!(report.counters.measured_messages, 800);
    assert_eq!(report.latency.echo.count, 800);
    let labelled: Vec<_> = report.timeline.iter().filter_map(|p| p.stage).collect();
    assert_eq!(&labelled[..3], &[0, 1, 2], "{:?}", report.timeline);
}

#[test]
fn stages_refuse_flags_that_contradict_them() {
    for args in [
        &["--stages", "1s:5", "--conns", "5"][..],
        &["--stages", "1s:5", "--duration", "3s"],
        &["--stages", "1s:5", "--rate", "100"],
        &["--stages", "1s:5", "--warmup", "1s"],
        &["--stages", "1s:5,1s:5/s"],
        &["--stages", "1s:0"],
        &["--rate", "1s:x"],
    ] {
        let out = util::loadgen()
            .args(["--addr", "127.0.0.1:9", "-q"])
            .args(args)
            .assert()
            .code(2);
        let err = util::stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("--stages") || err.contains("--rate"),
            "{args:?}: {err}"
        );
    }
}
