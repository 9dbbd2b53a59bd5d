//! `harness check --faults` end to end: it passes on the fork echo server and on the careful C
//! server, and fails the broken fixture (the tutorial's server) naming exactly the cases its bugs
//! break, in the report and in JUnit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::util::{self, fork_lock, harness_into, valid_report};

const FAULT_CASES: [&str; 7] = [
    "faults_sliced_echo_exact",
    "faults_delayed_echo_exact",
    "faults_throttled_echo_exact",
    "faults_reset_mid_stream_reaped",
    "faults_close_mid_echo_reaped",
    "faults_stall_ended_by_idle_timeout",
    "faults_shutdown_leaves_nothing",
];

/// Runs `check --faults` (with `server_args`), expecting exit `code`; returns the report and the
/// JUnit file read back.
fn check_faults(server_args: &[&std::ffi::OsStr], code: i32) -> (serde_json::Value, util::Junit) {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("faults.xml");
    let output = harness_into("check", dir.path())
        .arg("--faults")
        .args(server_args)
        .arg("--junit")
        .arg(&junit)
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .expect("run harness check --faults");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(code), "{stdout}");
    let (_, report) = valid_report(dir.path(), "check-");
    assert_eq!(report["options"]["faults"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, FAULT_CASES);
    let junit = util::read_junit(&junit);
    assert_eq!(junit.cases, FAULT_CASES, "{junit:?}");
    (report, junit)
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn check_faults_passes_on_the_fork_echo_server() {
    let _lock = fork_lock();
    let (report, junit) = check_faults(&[], 0);
    assert_eq!(junit.counts, [7, 0, 0, 0], "{junit:?}");
    let detail = |name: &str| util::check(&report, name)["detail"].to_string();
    assert!(detail("faults_reset_mid_stream_reaped").contains("10 sessions reset"));
    assert!(detail("faults_stall_ended_by_idle_timeout").contains("6 stalled sessions"));
}

#[test]
fn check_faults_fails_the_broken_server_naming_each_case() {
    let _lock = fork_lock();
    let server = util::broken_server();
    let (report, junit) = check_faults(&["--server".as_ref(), server.as_os_str()], 1);
    let failed = names(&[
        "faults_reset_mid_stream_reaped",
        "faults_close_mid_echo_reaped",
        "faults_shutdown_leaves_nothing",
    ]);
    assert_eq!(junit.counts, [7, 3, 0, 1], "{junit:?}");
    assert_eq!(
        junit.failures.keys().cloned().collect::<BTreeSet<_>>(),
        failed
    );
    // It has no idle timeout: the stall case cannot apply and says so.
    assert_eq!(
        junit.skipped,
        names(&["faults_stall_ended_by_idle_timeout"])
    );
    let reset = &junit.failures["faults_reset_mid_stream_reaped"];
    assert!(
        reset.contains("zombies") && reset.contains("(+10)"),
        "{reset}"
    );
    let shutdown = &junit.failures["faults_shutdown_leaves_nothing"];
    assert!(shutdown.contains("orphans"), "{shutdown}");
    // Everything a client sees on the wire is right: the echo cases pass under every toxic.
    for name in &FAULT_CASES[..3] {
        assert_eq!(util::check(&report, name)["status"], "pass", "{name}");
    }
}

/// The careful C server (`shared/anchors/c-fork-echo.c`), compiled with gcc -O2 into `dir`;
/// `None` (with one line on stderr) where gcc or the source is missing. `C_FORK_ECHO` names the
/// source, as for `ci/bench-loadgen.sh`.
fn c_fork_echo(dir: &Path) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = std::env::var_os("C_FORK_ECHO")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "../shared/anchors",
                "../../shared/anchors",
                "/work/shared/anchors",
            ]
            .iter()
            .map(|d| root.join(d).join("c-fork-echo.c"))
            .find(|p| p.is_file())
        });
    let Some(source) = source.filter(|p| p.is_file()) else {
        eprintln!("skipped: c-fork-echo.c not found (set C_FORK_ECHO)");
        return None;
    };
    let binary = dir.join("c-fork-echo");
    match std::process::Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .status()
    {
        Ok(status) if status.success() => Some(binary),
        Ok(status) => panic!("gcc -O2 {} failed: {status}", source.display()),
        Err(e) => {
            eprintln!("skipped: gcc cannot run ({e})");
            None
        }
    }
}

#[test]
fn check_faults_passes_on_the_careful_c_server() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = c_fork_echo(dir.path()) else {
        return;
    };
    let (_, junit) = check_faults(&["--server".as_ref(), server.as_os_str()], 0);
    // No --idle-timeout flag: the stall case is skipped, everything else passes.
    assert_eq!(junit.counts, [7, 0, 0, 1], "{junit:?}");
    assert_eq!(
        junit.skipped,
        names(&["faults_stall_ended_by_idle_timeout"])
    );
}
