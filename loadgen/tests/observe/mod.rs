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
