//! End-to-end tests of the `harness` binary: real servers on port 0, real loads, reports read back
//! and validated against `harness/schema.json`.

mod faults;
mod html;
mod scale;
mod util;

use std::collections::BTreeSet;

use predicates::prelude::*;
use util::{check, fork_lock, harness, harness_into, schema_errors, valid_report, write_json};

const ALL_CASES: [&str; 13] = [
    "echo_round_trip",
    "all_byte_values",
    "payload_1mib",
    "half_close",
    "rst_close_reaped",
    "concurrent_clients",
    "children_reaped",
    "parent_fds_stable",
    "survives_vanishing_clients",
    "idle_client_ended",
    "per_source_limit",
    "sigterm_no_orphans",
    "sigkill_no_orphans",
];

fn statuses(report: &serde_json::Value, status: &str) -> BTreeSet<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn check_passes_on_the_fork_echo_server() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("junit.xml");
    harness_into("check", dir.path())
        .args(["--clients", "50", "--fd-connections", "200"])
        .arg("--junit")
        .arg(&junit)
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("13 passed, 0 failed, 0 skipped"));
    let (_, report) = valid_report(dir.path(), "check-");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ALL_CASES);
    assert_eq!(report["server"]["speaks_contract"], true);
    assert_eq!(report["server_end"]["exit"]["code"], 0);
    assert!(
        report["server_end"]["final_stats"]["accepted"]
            .as_u64()
            .expect("stats")
            > 200
    );
    let junit = util::read_junit(&junit);
    assert_eq!(junit.counts, [13, 0, 0, 0], "{junit:?}");
    assert_eq!(junit.cases, ALL_CASES, "{junit:?}");
    assert!(
        junit.failures.is_empty() && junit.skipped.is_empty(),
        "{junit:?}"
    );
}

#[test]
fn check_fails_the_broken_server_on_exactly_zombies_fd_leak_and_orphans() {
    let _lock = fork_lock();
    let server = util::broken_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("junit.xml");
    harness_into("check", dir.path())
        .arg("--server")
        .arg(&server)
        .args(["--clients", "20", "--fd-connections", "100"])
        .arg("--junit")
        .arg(&junit)
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("5 failed"));
    let (path, report) = valid_report(dir.path(), "check-");
    harness()
        .arg("report")
        .arg(&path)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("6 passed, 5 failed, 2 skipped"));

    let expected_failures: BTreeSet<String> = [
        "rst_close_reaped",
        "children_reaped",
        "parent_fds_stable",
        "sigterm_no_orphans",
        "sigkill_no_orphans",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(statuses(&report, "fail"), expected_failures);
    assert_eq!(
        statuses(&report, "skip"),
        BTreeSet::from([
            "idle_client_ended".to_string(),
            "per_source_limit".to_string()
        ])
    );
    // Every other case still ran, and passed.
    assert_eq!(statuses(&report, "pass").len(), ALL_CASES.len() - 7);

    let detail = |name: &str| {
        check(&report, name)["detail"]
            .as_str()
            .expect("detail")
            .to_string()
    };
    assert!(
        detail("parent_fds_stable").contains("(+100) over 100 connections"),
        "{}",
        detail("parent_fds_stable")
    );
    let zombies = detail("children_reaped");
    assert!(
        zombies.contains("after 20 clients closed") && zombies.contains("zombies (pids"),
        "{zombies}"
    );
    let zombie_count: usize = zombies
        .split(", ")
        .find(|part| part.contains(" zombies"))
        .and_then(|part| part.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("zombie count in detail");
    assert!(zombie_count >= 20, "{zombies}");
    assert!(detail("rst_close_reaped").contains("was not reaped (zombie)"));
    for case in ["sigterm_no_orphans", "sigkill_no_orphans"] {
        assert!(
            detail(case).contains("but 3 of its processes still run"),
            "{}",
            detail(case)
        );
    }
    // The harness killed what the broken server left behind.
    let junit = util::read_junit(&junit);
    assert_eq!(junit.counts, [13, 5, 0, 2], "{junit:?}");
    assert_eq!(junit.cases, ALL_CASES, "{junit:?}");
    assert_eq!(
        junit.failures.keys().cloned().collect::<BTreeSet<_>>(),
        expected_failures
    );
    assert_eq!(junit.skipped, statuses(&report, "skip"));
    assert_eq!(
        junit.failures["parent_fds_stable"],
        detail("parent_fds_stable")
    );
    assert!(
        junit.failures["parent_fds_stable"].starts_with("the server's open fds went from"),
        "{junit:?}"
    );
}

#[test]
fn server_cmd_checks_another_echo_server_and_skips_contract_cases() {
    let _lock = fork_lock();
    let echo = util::tokio_echo();
    let dir = tempfile::tempdir().expect("tempdir");
    harness_into("check", dir.path())
        .arg("--server-cmd")
        .arg(format!("{} --port {{port}}", echo.display()))
        .args(["--clients", "20", "--fd-connections", "100"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(0);
    let (_, report) = valid_report(dir.path(), "check-");
    assert_eq!(report["server"]["speaks_contract"], false);
    assert_eq!(statuses(&report, "fail"), BTreeSet::new());
    assert_eq!(
        statuses(&report, "skip"),
        BTreeSet::from([
            "idle_client_ended".to_string(),
            "per_source_limit".to_string()
        ])
    );
    assert!(check(&report, "concurrent_clients")["detail"]
        .as_str()
        .expect("detail")
        .contains("no child per connection"));
}

#[test]
fn run_writes_a_valid_report_whose_child_counts_match_the_load() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    harness_into("run", dir.path())
        .args(["--conns", "20", "--duration", "2s", "--check-clients", "10"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("peak live children"))
        .stdout(predicate::str::contains(format!(
            "pipeline 1, loadgen's {} engine\n",
            loadgen::fork_server_engine(20).name()
        )))
        .stdout(predicate::str::contains(
            "memory per child at the peak (20 children)",
        ))
        // How much of the echo latency was loadgen's own (loadgen schema 4).
        .stdout(predicate::str::contains(
            "loadgen's read delay (echoes waiting",
        ));
    let (path, report) = valid_report(dir.path(), "run-");
    assert_eq!(
        util::loadgen_schema_errors(&report["load"]),
        Vec::<String>::new()
    );
    let delay = &report["load"]["latency"]["read_delay"];
    assert_eq!(delay["count"], report["load"]["latency"]["echo"]["count"]);
    // A fork-per-connection server is measured with the uring engine where the kernel allows it
    // and there are connections enough to batch, else a thread per connection (`--engine auto`).
    assert_eq!(
        report["load"]["parameters"]["engine"],
        loadgen::fork_server_engine(20).name()
    );
    let summary = &report["summary"];
    assert_eq!(summary["connections_established"], 20);
    assert_eq!(report["load"]["counters"]["peak_established"], 20);
    assert_eq!(summary["peak_children"], 20, "{summary}");
    assert_eq!(summary["zombies_lingering"], 0);
    assert_eq!(summary["orphans_after_stop"], 0);
    assert_eq!(summary["load_ok"], true);
    assert!(summary["pss_per_child_kib"].as_f64().expect("pss") > 0.0);
    let timeline = report["timeline"].as_array().expect("timeline");
    // 2 s at 100 ms is 20 samples on an idle machine; a busy CI box stretches each sample, so this
    // only asks that the sampler kept sampling through the load.
    assert!(timeline.len() >= 5, "2 s at 100 ms: {}", timeline.len());
    assert!(timeline.iter().any(|s| s["live_children"] == 20));
    // Schema 2: the kernel's side of the load's memory, with its twenty children's page tables.
    assert!(
        report["memory"]["page_tables_bytes"].is_number(),
        "{}",
        report["memory"]
    );
    assert_eq!(report["memory"]["loadgen_sockets"], 20);
    assert!(timeline
        .iter()
        .all(|s| s["memory"]["mem_available_kib"].is_u64()));
    assert_eq!(check(&report, "shutdown_no_orphans")["status"], "pass");
    assert_eq!(report["server_end"]["exit"]["code"], 0);

    harness()
        .arg("report")
        .arg(&path)
        .assert()
        .code(0)
        .stdout(predicate::str::is_match(r"\npeak live children +20\n").expect("regex"));
}

/// A real run report from the tokio echo server, validated, for `compare` and `plot`.
fn tokio_run_report(dir: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
    let echo = util::tokio_echo();
    harness_into("run", dir)
        .arg("--server-cmd")
        .arg(format!("{} --port {{port}}", echo.display()))
        .args(["--conns", "5", "--duration", "1s", "--check-clients", "5"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(0);
    valid_report(dir, "run-")
}

#[test]
fn run_measures_an_event_loop_server_with_the_tokio_engine() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, report) = tokio_run_report(dir.path());
    // `--engine auto` probes the server as the loadgen binary does: tokio-echo serves every
    // connection in its listening process, so the threads engine would measure loadgen instead.
    assert_eq!(report["load"]["parameters"]["engine"], "tokio");
    assert_eq!(report["summary"]["load_ok"], true);
}

#[test]
fn compare_gates_on_regressions_and_passes_equal_reports() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, report) = tokio_run_report(dir.path());
    assert_eq!(report["summary"]["peak_children"], 0);
    // The command as it ran: the port is filled in, not `{port}`.
    let described = report["server"]["description"]
        .as_str()
        .expect("description");
    assert!(
        !described.contains("{port}") && described.contains("--port "),
        "{described}"
    );

    harness()
        .arg("compare")
        .arg(&base)
        .arg(&base)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("no regression"));

    let worse_echo = dir.path().join("worse-echo.json");
    let mut doctored = report.clone();
    let p99 = doctored["summary"]["echo_p99_us"].as_f64().expect("p99");
    doctored["summary"]["echo_p99_us"] = serde_json::json!(p99 * 1.5);
    write_json(&worse_echo, &doctored);
    assert_eq!(schema_errors(&doctored), Vec::<String>::new());
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&worse_echo)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("regression: echo p99"));
    // Within a generous threshold the same change passes.
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&worse_echo)
        .args(["--max-regression", "60%"])
        .assert()
        .code(0);

    let slower = dir.path().join("slower.json");
    let mut doctored = report.clone();
    let rate = doctored["summary"]["messages_per_sec"]
        .as_f64()
        .expect("rate");
    doctored["summary"]["messages_per_sec"] = serde_json::json!(rate * 0.8);
    write_json(&slower, &doctored);
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&slower)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("regression: messages/s"));

    let broken_check = dir.path().join("broken-check.json");
    let mut doctored = report.clone();
    doctored["checks"][0]["status"] = "fail".into();
    doctored["checks"][0]["detail"] = "echo differs at byte 3".into();
    write_json(&broken_check, &doctored);
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&broken_check)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "regression: check echo_round_trip passed before and fails now",
        ));

    // With a measured spread, a change inside it is not a regression; beyond it, it is.
    let with_spread = |lo: f64, hi: f64| {
        let mut r = report.clone();
        r["schema_version"] = 2.into();
        r["spread"] = serde_json::json!({
            "runs": 3,
            "figures": { "echo p99": {
                "median": p99, "mean": p99, "stddev": p99 * 0.2,
                "min": p99 * lo, "max": p99 * hi, "values": [p99 * lo, p99, p99 * hi]
            }}
        });
        r
    };
    let noisy_base = dir.path().join("noisy-base.json");
    write_json(&noisy_base, &with_spread(0.7, 1.6));
    assert_eq!(schema_errors(&with_spread(0.7, 1.6)), Vec::<String>::new());
    harness()
        .arg("compare")
        .arg(&noisy_base)
        .arg(&worse_echo)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("worse"));
    let steady_base = dir.path().join("steady-base.json");
    write_json(&steady_base, &with_spread(0.95, 1.05));
    harness()
        .arg("compare")
        .arg(&steady_base)
        .arg(&worse_echo)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("regression: echo p99"));

    // Different kinds are refused, not compared on nothing.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let check_report = dir2.path().join("check.json");
    let mut as_check = report.clone();
    let object = as_check.as_object_mut().expect("object");
    for field in ["parameters", "load", "timeline", "summary"] {
        object.remove(field);
    }
    object.insert("kind".into(), "check".into());
    object.insert(
        "options".into(),
        report["parameters"]["check_options"].clone(),
    );
    object.insert(
        "counts".into(),
        serde_json::json!({"passed": 1, "failed": 0, "skipped": 0}),
    );
    object.insert(
        "listen_queue".into(),
        report["listen_queue"]["checks"].clone(),
    );
    write_json(&check_report, &as_check);
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&check_report)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "BASE is a run report and NEW a check report",
        ));

    // A check that NEW no longer has is flagged, not shown as `-` and passed.
    let missing_check = dir.path().join("missing-check.json");
    let mut doctored = report.clone();
    doctored["checks"].as_array_mut().expect("checks").remove(0);
    write_json(&missing_check, &doctored);
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&missing_check)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "regression: check echo_round_trip is missing from NEW",
        ));

    // Different parameters are refused, naming the field; allowed, they are warned about.
    let longer = dir.path().join("longer.json");
    let mut doctored = report.clone();
    doctored["parameters"]["duration_secs"] = serde_json::json!(10.0);
    write_json(&longer, &doctored);
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&longer)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("duration_secs: 1.0 -> 10.0"));
    harness()
        .arg("compare")
        .arg(&base)
        .arg(&longer)
        .arg("--allow-different-parameters")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "warning: parameters differ: duration_secs",
        ));

    // The schema catches a report missing its summary.
    let mut incomplete = report.clone();
    incomplete
        .as_object_mut()
        .expect("object")
        .remove("summary");
    assert!(!schema_errors(&incomplete).is_empty());
}

#[test]
fn missing_or_unusable_server_exits_2_with_one_line() {
    harness()
        .args(["check", "--server", "/nonexistent/fork-echo-server"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::is_match(
                "^harness: error: server binary /nonexistent/fork-echo-server not found\n$",
            )
            .expect("regex"),
        );
    harness()
        .args(["run", "--server-cmd", "/nonexistent/echo --port {port}"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/echo not found"));
    // A binary that is not a server: exits before printing the listening line.
    harness()
        .args(["check", "--server", "/bin/false"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "exited (exit code 1) before it was ready",
        ));
    harness()
        .args(["run", "--conns", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("conns"));
    harness()
        .args([
            "check",
            "--server-cmd",
            "x --port {port}",
            "--",
            "--backlog",
            "5",
        ])
        .assert()
        .code(2);
}

#[test]
fn reading_bad_reports_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"not\": \"a report\"}").expect("write");
    harness()
        .arg("report")
        .arg(&garbage)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a harness report"));
    harness()
        .arg("compare")
        .arg(&garbage)
        .arg(dir.path().join("missing.json"))
        .assert()
        .code(2);
}

#[test]
fn a_killed_harness_takes_its_server_down() {
    use std::time::{Duration, Instant};
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = assert_cmd::cargo::cargo_bin("harness");
    let mut child = std::process::Command::new(bin)
        .args(["run", "--conns", "5", "--duration", "60s", "--results-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn harness");
    let harness_pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    let server = loop {
        let children = harness::procfs::children_of(harness_pid).expect("proc");
        if let Some(server) = children.iter().find(|p| !p.is_zombie()) {
            // Wait until it serves clients (the checks hold up to 50 at once).
            if harness::procfs::census(server.pid)
                .expect("proc")
                .live
                .len()
                >= 5
            {
                break server.pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the harness never started its server"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill(); // SIGKILL: no Drop runs in the harness.
    let _ = child.wait();
    // The server got SIGTERM through PR_SET_PDEATHSIG, shut down, and took its children along.
    let gone = harness::checks::wait_until(Duration::from_secs(20), || {
        harness::procfs::session_members(server, None)
            .expect("proc")
            .iter()
            .all(|p| p.is_zombie())
    });
    assert!(
        gone,
        "server {server} or its children outlived the killed harness"
    );
}

#[test]
fn run_exits_1_when_the_load_fails_and_says_why() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    // One child at most, and the rest are closed at once: 19 of 20 load connections fail. The
    // checks connect one client after another, and each new client can meet the limit while
    // the previous one's child is still exiting: the checks must tell that from a failed echo
    // (before they did, echo_round_trip, all_byte_values and parent_fds_stable failed here).
    harness_into("run", dir.path())
        .args(["--conns", "20", "--duration", "1s", "--check-clients", "1"])
        .args(["--", "--max-children", "1", "--at-limit", "close"])
        .args(["--child-nice", "10"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("load failed: "));
    let (_, report) = valid_report(dir.path(), "run-");
    let summary = &report["summary"];
    assert_eq!(summary["load_ok"], false);
    assert!(
        summary["load_errors"].as_u64().expect("errors") >= 15,
        "{summary}"
    );
    assert!(
        summary["peak_children"].as_u64().expect("peak") <= 1,
        "{summary}"
    );
    let failed: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    let peak_live = report["server_end"]["final_stats"]["peak_live"]
        .as_u64()
        .expect("final stats line");
    assert_eq!(peak_live, 1);
}

/// Every `<text>` of an SVG (legends, captions, axis labels), after checking that it parses as XML.
fn svg_texts(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read svg");
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect()
}

fn assert_has_series(texts: &[String], names: &[&str]) {
    for name in names {
        assert!(
            texts.iter().any(|t| t.starts_with(name)),
            "no series {name:?} in {texts:?}"
        );
    }
}

#[test]
fn sweep_writes_a_valid_report_with_charts_that_plot_redraws() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = harness_into("sweep", dir.path())
        .args(["--conns", "1,10,50", "--duration", "1s"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("memory per connection"))
        .stdout(predicate::str::contains("accept+fork rate"))
        .stdout(predicate::str::contains("predicted maximum"))
        // Not a terminal: one plain line per step, no progress bar escapes.
        .stderr(predicate::str::contains("sweep: step 50 connections: ok"))
        .stderr(predicate::str::contains("\u{1b}").not());
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let (path, report) = valid_report(dir.path(), "sweep-");
    let steps = report["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    for (step, conns) in steps.iter().zip([1u64, 10, 50]) {
        assert_eq!(step["conns"], conns);
        assert_eq!(step["ok"], true, "{}", step["failure"]);
        assert_eq!(
            step["tree"]["peak_live_children"], conns,
            "{}",
            step["tree"]
        );
        assert_eq!(step["burst"]["connections_established"], conns);
        assert!(step["burst"]["accept_fork_per_sec"].as_f64().expect("rate") > 0.0);
        assert!(step["steady"]["messages"].as_u64().expect("messages") > 0);
        assert!(step["tree"]["total_pss_kib"].as_u64().expect("pss") > 0);
        assert_eq!(
            step["server_end"]["leftovers"]["orphans"],
            serde_json::json!([])
        );
    }
    let capacity = &report["capacity"];
    let fit = &capacity["memory_fit"];
    assert_eq!(fit["n"], 3);
    assert!(fit["slope"].as_f64().expect("slope") > 0.0, "{fit}");
    assert!(capacity["memory_check"]["error_percent"].is_number());
    // Schema 4: each fitted slope stored once, in the capacity model, not copied into the limits.
    assert_eq!(report["schema_version"], 5);
    assert!(capacity["limits"].get("pss_slope_bytes_per_conn").is_none());
    assert!(capacity["limits"]
        .get("total_slope_bytes_per_conn")
        .is_none());
    // Schema 3: the CPU of every step (the server's tree, reaped children included, and the load
    // generator) and the throughput and CPU models fitted over them.
    for step in steps {
        let cpu = &step["cpu"];
        assert!(
            cpu["server_cpu_secs"].as_f64().is_some_and(|s| s >= 0.0),
            "{cpu}"
        );
        assert!(
            cpu["loadgen_cpu_secs"].as_f64().is_some_and(|s| s > 0.0),
            "{cpu}"
        );
        assert_eq!(cpu["drained"], true, "{cpu}");
        assert_eq!(cpu["accepted_conns"], step["conns"]);
        assert!(step["steady"]["echo_mean_us"]
            .as_f64()
            .is_some_and(|us| us > 0.0));
        // Schema 5: loadgen's own share of the echo latency, at most the echo's.
        let steady = &step["steady"];
        let read_p99 = steady["read_delay_p99_us"]
            .as_f64()
            .expect("read delay p99");
        assert!(
            read_p99 <= steady["echo_p99_us"].as_f64().expect("echo p99"),
            "{steady}"
        );
    }
    let usl = &capacity["throughput"]["usl"];
    assert_eq!(usl["n"], 3, "{usl}");
    assert!(usl["lambda"].as_f64().is_some_and(|l| l > 0.0), "{usl}");
    assert!(capacity["cpu"]["server"]["us_per_message"].is_number());
    // Schema 2: the kernel's side of every step, and the total fitted over them.
    for step in steps {
        let memory = &step["memory"];
        assert!(memory["page_tables_bytes"].is_number(), "{memory}");
        assert_eq!(memory["loadgen_sockets"], step["conns"]);
    }
    let total = &capacity["total_memory"];
    assert_eq!(total["total_fit"]["n"], 3, "{total}");
    assert_eq!(
        total["drop_checks"].as_array().expect("drop checks").len(),
        3
    );
    // Slab is machine-wide, and sockets freed by earlier tests leave free objects in slab pages
    // that new sockets fill without the counter rising: a median that is not a plausible socket
    // size is refused, and the report must then say the sockets were not subtracted.
    match report["socket_slab_bytes"].as_f64() {
        Some(bytes) => assert!(bytes > 0.0, "{bytes}"),
        None => assert!(stdout.contains("unmeasured (not subtracted)"), "{stdout}"),
    }
    assert_eq!(report["summary"]["largest_burst_conns"], 50);
    // The built-in server's default --max-children is among the limits, and the prediction is
    // the smallest candidate.
    let prediction = &capacity["prediction"];
    let candidates = prediction["candidates"].as_array().expect("candidates");
    assert!(candidates
        .iter()
        .any(|c| c["kind"] == "max_children" && c["max_connections"] == 4096));
    assert_eq!(
        prediction["max_connections"],
        candidates[0]["max_connections"]
    );

    let stem = path
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let expected: [(&str, &[&str]); 6] = [
        ("echo-latency", &["echo p50", "echo p99", "echo p99.9"]),
        ("first-echo-latency", &["first-echo p50", "first-echo p99"]),
        (
            "memory",
            &[
                "total PSS (user space only)",
                "page tables",
                "kernel stacks",
                "measured MemAvailable drop (server's share)",
            ],
        ),
        ("throughput", &["messages/s (steady phase)"]),
        (
            "usl",
            &["measured messages/s (steady phase)", "USL fit: lambda"],
        ),
        (
            "cpu",
            &["server CPU µs per message", "loadgen CPU µs per message"],
        ),
    ];
    let mut originals = Vec::new();
    for (suffix, series) in expected {
        let svg = dir.path().join(format!("{stem}-{suffix}.svg"));
        assert_has_series(&svg_texts(&svg), series);
        originals.push((svg.clone(), std::fs::read(&svg).expect("read svg")));
        std::fs::remove_file(&svg).expect("remove svg");
    }

    harness()
        .arg("plot")
        .arg(&path)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("-memory.svg"));
    for (svg, bytes) in &originals {
        assert_eq!(
            &std::fs::read(svg).expect("redrawn svg"),
            bytes,
            "{} differs after a redraw",
            svg.display()
        );
    }

    harness()
        .arg("report")
        .arg(&path)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("capacity model"))
        .stdout(predicate::str::contains("MemAvailable drop per step"))
        .stdout(predicate::str::is_match(r"\n50 +ok ").expect("regex"));
}

#[test]
fn a_failing_sweep_step_is_recorded_and_the_sweep_goes_on() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    // Past 4 live children the server accepts and closes at once: the 6- and 7-connection steps
    // see early closes.
    harness_into("sweep", dir.path())
        .args(["--conns", "2,6,7", "--duration", "1s"])
        .args(["--", "--max-children", "4", "--at-limit", "close"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("step 6 failed: "))
        .stdout(predicate::str::contains("step 7 failed: "));
    let (_, report) = valid_report(dir.path(), "sweep-");
    let steps = report["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["ok"], true, "{}", steps[0]["failure"]);
    for step in &steps[1..] {
        assert_eq!(step["ok"], false);
        assert!(
            step["failure"]
                .as_str()
                .expect("why")
                .contains("failed messages"),
            "{}",
            step["failure"]
        );
        assert!(
            step["tree"]["peak_live_children"]
                .as_u64()
                .expect("children")
                <= 4
        );
    }
    assert_eq!(report["summary"]["steps_failed"], 2);
    assert_eq!(report["summary"]["largest_ok_conns"], 2);
    assert_eq!(report["capacity"]["limits"]["server_max_children"], 4);
    assert_eq!(report["capacity"]["prediction"]["binding"], "max_children");
    assert!(dir.path().read_dir().expect("dir").any(|e| e
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .ends_with("-memory.svg")));
}

/// `--io-timeout` reaches each step's load: with one child allowed, the second connection waits in
/// the listen backlog behind the first session, and loadgen's connect phase waits for every first
/// echo, so that echo times out and the step fails. With the given 300 ms it times out at once; with
/// loadgen's 5 s default the step could not end before 5 s (a logical bound, not a speed target).
/// Both timeouts are recorded in the report's parameters.
#[test]
fn sweep_timeouts_reach_the_steps_load_and_the_report() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    harness_into("sweep", dir.path())
        .args(["--conns", "2", "--duration", "1s"])
        .args(["--io-timeout", "300ms", "--connect-timeout", "7s"])
        .args(["--", "--max-children", "1", "--at-limit", "wait"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("step 2 failed: "));
    let (_, report) = valid_report(dir.path(), "sweep-");
    let step = &report["steps"][0];
    let failure = step["failure"].as_str().expect("why");
    assert!(failure.contains("echo_timeout"), "{failure}");
    let wall = step["wall_secs"].as_f64().expect("wall");
    assert!(
        wall < 5.0,
        "the step took {wall} s: the 5 s default applied"
    );
    assert_eq!(report["parameters"]["io_timeout_secs"], 0.3);
    assert_eq!(report["parameters"]["connect_timeout_secs"], 7.0);
}

/// The embedded loadgen report keeps the byte layout run reports have always had: its object keys
/// in sorted order (it was written through a `serde_json::Value` before it was a typed field), not
/// loadgen's struct order, which starts with `schema_version`.
#[test]
fn run_reports_embed_the_load_report_with_sorted_keys() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, report) = tokio_run_report(dir.path());
    assert!(report["load"].is_object(), "the load ran");
    let text = std::fs::read_to_string(&path).expect("read");
    let start = text.find("\n  \"load\": {").expect("load field");
    let end = start + text[start..].find("\n  },\n").expect("end of load");
    let keys: Vec<&str> = text[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("    \"")?.split('"').next())
        .collect();
    assert!(keys.len() > 10, "{keys:?}");
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
}

#[test]
fn plot_draws_a_run_reports_timeline() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = tokio_run_report(dir.path());
    let out = dir.path().join("plots");
    harness()
        .arg("plot")
        .arg(&path)
        .arg("--out-dir")
        .arg(&out)
        .assert()
        .code(0);
    let stem = path
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let texts = svg_texts(&out.join(format!("{stem}-timeline.svg")));
    assert_has_series(
        &texts,
        &["live children", "zombies", "total PSS", "messages/s"],
    );

    harness()
        .arg("plot")
        .arg(dir.path().join("missing.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.json"));
}

#[test]
fn committed_baseline_sweeps_validate_and_plot_reproduces_their_charts() {
    let baseline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/baseline");
    let mut reports = Vec::new();
    for dir in [
        baseline.clone(),
        baseline.join("socat"),
        baseline.join("backlog-4096"),
        baseline.join("device-16core"),
        baseline.join("sweep-50000"),
        baseline.join("usl-cpu/fork-echo-server"),
        baseline.join("usl-cpu/c-fork-echo"),
        baseline.join("usl-cpu/socat"),
    ] {
        for entry in std::fs::read_dir(&dir).expect("baseline dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                reports.push(path);
            }
        }
    }
    assert_eq!(reports.len(), 8, "{reports:?}");
    // A sweep holds against a sweep step by step, its model's figures too.
    harness()
        .arg("compare")
        .arg(&reports[0])
        .arg(&reports[0])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("step 4000 conns: echo p99"))
        .stdout(predicate::str::contains("model: memory per connection"))
        .stdout(predicate::str::contains("no regression"));
    // The 16-core sweep predates the kernel counters (schema 1): it still reads, and what it
    // lacks is printed as absent, not as zero.
    let old = baseline.join("device-16core");
    let old_report = reports
        .iter()
        .find(|r| r.starts_with(&old))
        .expect("device-16core report");
    harness()
        .arg("report")
        .arg(old_report)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("total                   absent"))
        .stdout(predicate::str::contains("PSS per connection      39.6 KiB"));
    // The three servers of issue 19 side by side: `harness plot A B C` redraws the committed
    // comparison byte for byte.
    let side_by_side = tempfile::tempdir().expect("tempdir");
    harness()
        .arg("plot")
        .args(&reports[5..])
        .arg("--out-dir")
        .arg(side_by_side.path())
        .assert()
        .code(0);
    for chart in ["throughput", "cpu", "memory"] {
        let name = format!("compare-{chart}.svg");
        assert_eq!(
            std::fs::read(side_by_side.path().join(&name)).expect("drawn"),
            std::fs::read(baseline.join("usl-cpu").join(&name)).expect("committed"),
            "{name} differs from a redraw"
        );
    }
    for report in reports {
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("read")).expect("json");
        assert_eq!(
            schema_errors(&value),
            Vec::<String>::new(),
            "{}",
            report.display()
        );
        let out = tempfile::tempdir().expect("tempdir");
        harness()
            .arg("plot")
            .arg(&report)
            .arg("--out-dir")
            .arg(out.path())
            .assert()
            .code(0);
        let drawn: Vec<_> = std::fs::read_dir(out.path())
            .expect("out")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(drawn.len(), 6, "{drawn:?}");
        for drawn in drawn {
            let committed = report.with_file_name(drawn.file_name().expect("name"));
            assert_eq!(
                std::fs::read(&drawn).expect("drawn"),
                std::fs::read(&committed).expect("committed svg"),
                "{} differs from a redraw",
                committed.display()
            );
        }
    }
}

#[test]
fn sweep_setup_errors_exit_2_with_one_line() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (vec!["--conns", "1,0"], "--conns"),
        (vec!["--memory-budget", "8 parsecs"], "--memory-budget"),
        (vec!["--server-cmd", "false {port}"], "before it was ready"),
    ] {
        let out = harness_into("sweep", dir.path())
            .args(&args)
            .args(["--duration", "1s"])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says))
            .get_output()
            .clone();
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn a_bad_server_flag_shows_the_servers_own_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = harness_into("run", dir.path())
        .args(["--conns", "1", "--duration", "1s", "--", "--port", "99999"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server (")
            && stderr.contains("the server said: error: invalid value '99999'"),
        "{stderr}"
    );
    assert!(!stderr.contains("For more information"), "{stderr}");
}

#[test]
fn unwritable_outputs_and_impossible_loads_fail_before_any_check_or_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the results directory should be.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "x").expect("file");
    for (cmd, args, says) in [
        (
            "check",
            vec![
                "--results-dir".to_string(),
                blocked.join("r").display().to_string(),
            ],
            "--results-dir",
        ),
        (
            "run",
            vec![
                "--junit".to_string(),
                blocked.join("j.xml").display().to_string(),
            ],
            "--junit",
        ),
        (
            "sweep",
            vec!["--results-dir".to_string(), blocked.display().to_string()],
            "--results-dir",
        ),
        (
            "run",
            vec!["--conns".into(), "100000000".into()],
            "RLIMIT_NOFILE",
        ),
        (
            "sweep",
            vec!["--conns".into(), "1,100000000".into()],
            "RLIMIT_NOFILE",
        ),
    ] {
        let started = std::time::Instant::now();
        let mut harness = harness();
        harness.arg(cmd).args(&args);
        if !args.iter().any(|a| a == "--results-dir") {
            harness.arg("--results-dir").arg(dir.path().join("ok"));
        }
        if cmd != "check" {
            harness.args(["--duration", "1s"]);
        }
        let out = harness
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{cmd} {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{cmd} {args:?}: {stderr}");
        // Nothing ran: no check table, no step, and well under the time one check takes.
        assert!(out.stdout.is_empty(), "{cmd} {args:?}: {:?}", out.stdout);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}

#[test]
fn first_ctrl_c_stops_a_run_and_saves_what_ran_marked_interrupted() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("harness"))
        .args(["run", "--conns", "5", "--duration", "60s", "--results-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn harness");
    let pid = child.id() as i32;
    // The handler is installed before the server starts: once the server is there, Ctrl-C is
    // caught.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while harness::procfs::children_of(pid).map_or(true, |c| c.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "no server started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let started = std::time::Instant::now();
    let out = loop {
        if child.try_wait().expect("wait").is_some() {
            break child.wait_with_output().expect("output");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "Ctrl-C did not stop the run"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let (_, report) = valid_report(dir.path(), "run-");
    assert_eq!(report["load"]["interrupted"], true);
    assert!(
        report["summary"]["load_failure"]
            .as_str()
            .is_some_and(|f| f.contains("interrupted by Ctrl-C")),
        "{}",
        report["summary"]
    );
    assert!(stdout.contains("report: "), "{stdout}");
}

#[test]
fn run_takes_the_thresholds_its_failure_lines_name() {
    for flag in ["--max-error-rate", "--max-session-failures"] {
        harness()
            .args(["run", flag, "1.5", "--results-dir", "/nonexistent-unused"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(flag));
    }
}

#[test]
fn report_exports_markdown_csv_and_json() {
    let baseline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/baseline");
    let sweep = std::fs::read_dir(&baseline)
        .expect("baseline")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a committed sweep");
    let out = |format: &str| {
        let out = harness()
            .args(["report", "--format", format])
            .arg(&sweep)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).expect("utf-8")
    };
    let md = out("markdown");
    assert!(md.contains("### load\n\n| conns | step |"), "{md}");
    assert!(md.contains("### server\n\n| conns | children |"), "{md}");
    let csv = out("csv");
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .expect("header")
        .starts_with("table,conns,step,"));
    let widths: BTreeSet<usize> = csv
        .lines()
        .filter(|l| l.starts_with("load,"))
        .map(|l| l.split(',').count())
        .collect();
    assert_eq!(
        widths.len(),
        1,
        "every load row has the header's width: {csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&out("json")).expect("json");
    assert_eq!(json["kind"], "sweep");
    harness()
        .args(["report", "--format", "yaml"])
        .arg(&sweep)
        .assert()
        .code(2);
}

#[test]
fn runs_n_reports_the_median_and_spread_of_each_figure() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = util::tokio_echo();
    harness_into("run", dir.path())
        .arg("--server-cmd")
        .arg(format!("{} --port {{port}}", echo.display()))
        .args([
            "--conns",
            "3",
            "--duration",
            "1s",
            "--check-clients",
            "3",
            "--runs",
            "3",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("run 3/3:"))
        .stdout(predicate::str::contains("over 3 runs"));
    let (_, report) = valid_report(dir.path(), "run-");
    let rate = &report["spread"]["figures"]["messages/s"];
    assert_eq!(report["spread"]["runs"], 3);
    assert_eq!(rate["values"].as_array().expect("values").len(), 3);
    let (min, max, median) = (
        rate["min"].as_f64().expect("min"),
        rate["max"].as_f64().expect("max"),
        rate["median"].as_f64().expect("median"),
    );
    assert!(min <= median && median <= max, "{rate}");
    assert_eq!(report["summary"]["messages_per_sec"].as_f64(), Some(median));
}

#[test]
fn every_help_lists_the_exit_codes() {
    for sub in ["check", "run", "report", "compare", "sweep", "plot"] {
        harness()
            .args([sub, "--help"])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("Exit codes:"))
            .stdout(predicate::str::contains("2  usage or setup error"));
    }
    harness()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Exit codes:"));
    // Only `check` and `run` run checks; the sweep's help does not promise to skip any.
    harness()
        .args(["sweep", "--help"])
        .assert()
        .stdout(predicate::str::contains(
            "`check` and `run` skip the checks",
        ));
    harness()
        .args(["compare", "--help"])
        .assert()
        .stdout(predicate::str::contains("The reference report"));
    harness()
        .args(["report", "--help"])
        .assert()
        .stdout(predicate::str::contains("harness sweep"));
}
