//! Tests of running past one process and one host: report identity, `loadgen merge`'s refusals
//! and timeline alignment, `--start-at`, and the automatic split over worker processes. Kept in
//! their own module of the one integration-test binary so they read as one feature.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{self, Behaviour, TestServer};

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn run_to(target: &str, path: &Path, extra: &[&str]) {
    util::loadgen_messages(target, 3, 20)
        .args(["-q", "--json"])
        .arg(path)
        .args(extra)
        .assert()
        .success();
}

#[test]
fn reports_carry_run_id_host_worker_and_measured_window() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let before = now_unix();
    run_to(
        &server.target(),
        &a,
        &["--run-id", "nightly-7", "--worker-index", "3"],
    );
    run_to(&server.target(), &b, &[]);
    let after = now_unix();
    let (ra, rb) = (util::read_report(&a), util::read_report(&b));
    assert_eq!(ra.schema_version, loadgen::SCHEMA_VERSION);
    assert_eq!(ra.identity.run_id, "nightly-7");
    assert_eq!(ra.identity.worker, 3);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(ra.identity.host, host.trim());
    let id = &ra.identity;
    assert!(
        before <= id.measured_start_unix_secs
            && id.measured_start_unix_secs <= id.measured_end_unix_secs
            && id.measured_end_unix_secs <= after,
        "{id:?} not within {before}..{after}"
    );
    // Without --run-id each run makes up its own.
    assert_eq!(rb.identity.run_id.len(), 16, "{:?}", rb.identity);
    assert_ne!(rb.identity.run_id, ra.identity.run_id);
    assert!(ra.merge.is_none());
}

#[test]
fn merge_refuses_duplicates_and_mismatched_parameters() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    run_to(&server.target(), &p("a.json"), &[]);
    run_to(&server.target(), &p("b.json"), &[]);
    run_to(&server.target(), &p("big.json"), &["--size", "128"]);
    run_to(&server.target(), &p("deep.json"), &["--pipeline", "2"]);
    run_to(&server.target(), &p("open.json"), &["--rate", "500"]);
    let merge = |files: &[&str], extra: &[&str]| {
        let mut cmd = util::loadgen();
        cmd.arg("merge");
        for f in files {
            cmd.arg(p(f));
        }
        cmd.args(extra);
        cmd
    };
    // The same report twice would double every count.
    let twice = util::stderr(&merge(&["a.json", "b.json", "a.json"], &[]).assert().code(2));
    assert!(
        twice.contains("given twice") && twice.contains("a.json") && twice.lines().count() == 1,
        "{twice}"
    );
    // A merge of a and b given again with a is a duplicate too (parts are compared).
    merge(&["a.json", "b.json"], &["-q", "--json"])
        .arg(p("ab.json"))
        .assert()
        .success();
    merge(&["ab.json", "a.json"], &[]).assert().code(2);
    for (file, field) in [
        ("big.json", "size differs"),
        ("deep.json", "pipeline differs"),
        ("open.json", "mode differs"),
    ] {
        let e = util::stderr(&merge(&["a.json", file], &[]).assert().code(2));
        assert!(
            e.contains(field) && e.contains("--allow-mixed") && e.lines().count() == 1,
            "{e}"
        );
    }
    let other = TestServer::start(Behaviour::Echo);
    run_to(&other.target(), &p("other.json"), &[]);
    let e = util::stderr(&merge(&["a.json", "other.json"], &[]).assert().code(2));
    assert!(e.contains("target differs"), "{e}");
    // --allow-mixed merges and says so, in the report and the text.
    let text = util::stdout(
        &merge(&["a.json", "big.json"], &["--allow-mixed", "--json"])
            .arg(p("mixed.json"))
            .assert()
            .success(),
    );
    assert!(text.contains("--allow-mixed: size differ"), "{text}");
    let mixed = util::read_report(&p("mixed.json"));
    let info = mixed.merge.unwrap();
    assert!(info.allow_mixed);
    assert_eq!(info.mixed, vec!["size".to_string()]);
    // A clean merge says how many workers from how many hosts.
    let ab = util::read_report(&p("ab.json"));
    let info = ab.merge.unwrap();
    assert_eq!((info.workers, info.hosts, info.workers_lost), (2, 1, 0));
    assert!(!info.allow_mixed);
    let text = util::stdout(&merge(&["a.json", "b.json"], &[]).assert().success());
    assert!(
        text.contains("merged       2 workers from 1 host"),
        "{text}"
    );
}

#[test]
fn merge_aligns_timelines_by_wall_clock() {
    let server = TestServer::start(Behaviour::Echo);
    let report = loadgen::run(util::messages_config(server.addr, 3, 30)).unwrap();
    let mut later = report.clone();
    later.identity.run_id = "another-run".into();
    later.started_unix_secs += 3.0;
    let merged = loadgen::Report::merge(&[report.clone(), later]).unwrap();
    let last = |r: &loadgen::Report| r.timeline.iter().map(|p| p.second).max().unwrap();
    // The later run's seconds land three points further on, not on top of the first run's.
    assert_eq!(last(&merged), last(&report) + 3);
    for p in &report.timeline {
        let at = |s: u64| merged.timeline.iter().find(|m| m.second == s).unwrap();
        assert!(at(p.second).messages >= p.messages);
        assert!(at(p.second + 3).messages >= p.messages);
    }
    let total: u64 = merged.timeline.iter().map(|p| p.messages).sum();
    assert_eq!(total, 2 * report.counters.messages_verified);
    assert_eq!(merged.started_unix_secs, report.started_unix_secs);
}

#[test]
fn version_1_reports_still_read_and_merge() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let mut old = Vec::new();
    for name in ["one.json", "two.json"] {
        let path = dir.path().join(name);
        run_to(&server.target(), &path, &[]);
        let mut v = util::read_json(&path);
        let o = v.as_object_mut().unwrap();
        o.insert("schema_version".into(), serde_json::json!(1));
        o.remove("identity");
        o.remove("merge");
        std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
        old.push(path);
    }
    let r = loadgen::Report::read_json(&old[0]).unwrap();
    assert!(r.identity.run_id.is_empty());
    util::loadgen().arg("merge").args(&old).assert().success();
    // Without a run id the same old file twice is still caught (host, pid and start time).
    util::loadgen()
        .arg("merge")
        .arg(&old[0])
        .arg(&old[0])
        .assert()
        .code(2);
}

#[test]
fn start_at_in_the_past_or_far_future_is_a_clear_usage_error() {
    let server = TestServer::start(Behaviour::Echo);
    let now = now_unix() as u64;
    for (at, needle) in [
        ((now - 3600).to_string(), "in the past"),
        ((now + 3 * 24 * 3600).to_string(), "more than the 24h"),
        ("2026-13-45T99:00:00Z".to_string(), "RFC 3339"),
    ] {
        let e = util::stderr(
            &util::loadgen_messages(&server.target(), 1, 1)
                .args(["--start-at", &at])
                .assert()
                .code(2),
        );
        // One line says what is wrong (clap may add its "try --help" hint below it).
        let first = e.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(
            first.contains(needle) && !e.contains("panicked"),
            "{at}: {e}"
        );
    }
}

#[test]
fn start_at_holds_the_measured_phase_until_that_instant() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    // Far enough ahead that a slow start on a busy box still leaves a wait to hold.
    let start_at = now_unix() + 4.0;
    run_to(
        &server.target(),
        &path,
        &["--start-at", &format!("{start_at:.3}")],
    );
    let r = util::read_report(&path);
    let id = &r.identity;
    // Connecting happened at once; measuring waited for the start time.
    assert!(
        id.measured_start_unix_secs >= start_at - 0.01,
        "measured from {} before --start-at {start_at}",
        id.measured_start_unix_secs
    );
    assert!(
        r.connect_phase_secs < 3.0,
        "connect phase {}s includes the wait",
        r.connect_phase_secs
    );
    assert_eq!(r.counters.messages_verified, 3 * 20);
    // And an RFC 3339 time is accepted the same way.
    let rfc =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs_f64(now_unix() + 0.5))
            .to_string();
    run_to(
        &server.target(),
        &dir.path().join("rfc.json"),
        &["--start-at", &rfc],
    );
}

/// Waits for `child` to end within `limit`; kills it and fails the test otherwise.
fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadgen did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised command name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split(' ').nth(1) == Some(&parent.to_string()) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_tiny_descriptor_limit_splits_the_run_over_worker_processes() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.json");
    let json = path.to_str().unwrap();
    let target = server.target();
    // 150 descriptors leave 86 connections per process: 200 connections need 3 workers.
    let child = util::spawn_loadgen(
        &[
            "--addr",
            &target,
            "-c",
            "200",
            "--messages",
            "5",
            "--no-progress",
            "-q",
            "--json",
            json,
        ],
        Some(150),
    );
    let out = wait_with_deadline(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r = util::read_report(&path);
    let m = r.merge.clone().expect("a split run is a merge");
    assert_eq!((m.workers, m.workers_lost, m.hosts), (3, 0, 1));
    assert_eq!(r.parameters.processes, 3);
    assert_eq!(r.parameters.conns, 200);
    // The workers ran the engine the parent chose (auto, for this in-process server: tokio).
    assert_eq!(r.parameters.engine, "tokio");
    assert_eq!(r.counters.connections_established, 200);
    assert_eq!(r.counters.messages_verified, 200 * 5);
    let mut workers: Vec<u64> = m.parts.iter().map(|p| p.worker).collect();
    workers.sort();
    assert_eq!(workers, vec![0, 1, 2]);
    assert!(m.parts.iter().all(|p| p.run_id == m.parts[0].run_id));
    // One report on stdout, not one per worker (a busy machine may add a read-delay warning).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report_lines = stdout.lines().filter(|l| !l.starts_with("warning: "));
    assert_eq!(report_lines.count(), 1, "{stdout}");
    // The workers' temporary reports are gone.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&m.parts[0].run_id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_worker_killed_mid_run_is_a_counted_failure_not_a_hang() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.json");
    let target = server.target();
    let child = util::spawn_loadgen(
        &[
            "--addr",
            &target,
            "-c",
            "4",
            "-d",
            "4s",
            "--procs",
            "2",
            // No engine probe: the server's peers below are exactly the run's connections.
            "--engine",
            "threads",
            "--no-progress",
            "--json",
            path.to_str().unwrap(),
        ],
        None,
    );
    let parent = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let workers = loop {
        let workers = children_of(parent);
        if workers.len() == 2 && server.peers.lock().unwrap().len() == 4 {
            break workers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workers never connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: sending a signal to a process this test's child started.
    assert_eq!(unsafe { libc::kill(workers[0], libc::SIGKILL) }, 0);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = util::read_report(&path);
    let m = r.merge.clone().unwrap();
    assert_eq!((m.workers, m.workers_lost), (2, 1));
    assert_eq!(r.counters.connections_attempted, 4);
    assert_eq!(r.counters.connections_failed, 2);
    assert_eq!(r.counters.connections_established, 2);
    let example = &r.errors.examples["worker.lost"];
    assert!(example.contains("signal"), "{example}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 worker lost"), "{text}");
}

#[test]
fn split_workers_start_measuring_together_after_all_have_connected() {
    let server = TestServer::start(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("together.json");
    let target = server.target();
    // 3 connections at 1/s over two workers (0.5/s each, split 2 + 1): worker 0's second
    // connection starts 2 s in, worker 1's only one at once. Left to itself, worker 1 would
    // start measuring about 2 s before worker 0.
    let child = util::spawn_loadgen(
        &[
            "--addr",
            &target,
            "-c",
            "3",
            "--procs",
            "2",
            "--connect-rate",
            "1",
            "--messages",
            "3",
            "--no-progress",
            "-q",
            "--json",
            path.to_str().unwrap(),
        ],
        None,
    );
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    let r = util::read_report(&path);
    let parts = r.merge.unwrap().parts;
    assert_eq!(parts.len(), 2);
    let gap = (parts[0].measured_start_unix_secs - parts[1].measured_start_unix_secs).abs();
    assert!(
        gap < 1.0,
        "workers started measuring {gap:.3}s apart: {parts:?}"
    );
    assert_eq!(r.counters.messages_verified, 9);
}
