//! `harness soak` and `harness proxy` as users run them: a short soak finds the fork echo server's
//! descriptors and memory flat and the broken fixture's descriptors growing; the standalone proxy
//! announces its address, injects its fault, and writes its counts when told to stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use predicates::prelude::*;

use crate::util::{self, fork_lock, harness, harness_into, valid_report};

/// A few seconds of soak with every fault of the default plan drawn often enough to happen.
fn short_soak(dir: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = harness_into("soak", dir);
    cmd.args(["--duration", "5s", "--conns", "10", "--messages", "50"])
        .args(["--io-timeout", "1s", "--warmup", "0s"])
        .args(["--faults", "down:reset-after=1000@0.1"])
        .args(["--faults", "down:stall-after=1000@0.1"])
        .timeout(Duration::from_secs(60));
    cmd
}

#[test]
fn soak_finds_the_fork_echo_server_flat_and_the_broken_servers_fds_growing() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    short_soak(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("server fds").and(predicate::str::contains("PASS")));
    let (path, report) = valid_report(dir.path(), "soak-");
    assert_eq!(report["kind"], "soak");
    assert_eq!(report["trends"]["fds"]["flat"], true, "{report}");
    assert_eq!(report["trends"]["rss_kib"]["flat"], true, "{report}");
    assert!(report["samples"].as_array().expect("samples").len() >= 5);
    // The faults happened, and loadgen counted each as what it was.
    let (load, proxy) = (&report["load"], &report["proxy"]);
    assert!(proxy["resets"].as_u64() > Some(0) && proxy["stalls"].as_u64() > Some(0));
    assert_eq!(load["reset"], proxy["resets"]);
    assert_eq!(load["echo_timeout"], proxy["stalls"]);
    assert_eq!(load["mismatch"], 0);
    // `harness report` says what a soak report is instead of failing to parse it.
    harness()
        .arg("report")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a soak report"));

    let dir = tempfile::tempdir().expect("tempdir");
    short_soak(dir.path())
        .arg("--server")
        .arg(util::broken_server())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("open fds are not flat"));
    let (_, report) = valid_report(dir.path(), "soak-");
    assert_eq!(report["trends"]["fds"]["flat"], false, "{report}");
    assert!(
        report["trends"]["fds"]["growth"].as_f64() > Some(10.0),
        "{report}"
    );
}

#[test]
fn the_standalone_proxy_injects_its_fault_and_writes_its_counts_on_sigterm() {
    let _lock = fork_lock();
    let server = super::fork_echo_server(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let counts_path = dir.path().join("counts.json");
    let mut proxy = Command::new(assert_cmd::cargo::cargo_bin("harness"))
        .args(["proxy", "--to", &server.addr().to_string()])
        .args(["--faults", "down:reset-after=10"])
        .arg("--counts")
        .arg(&counts_path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start harness proxy");
    let mut stdout = BufReader::new(proxy.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"));

    let mut client = std::net::TcpStream::connect(addr).expect("connect to the proxy");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client.write_all(&[b'x'; 100]).expect("write");
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert_eq!(got.len(), 10, "the first 10 bytes of echo, then the reset");
    let err = end.expect_err("a reset, not an EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = proxy.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest of stdout");
    let printed: serde_json::Value = serde_json::from_str(rest.trim()).expect("counts line");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&counts_path).expect("counts file"))
            .expect("counts JSON");
    assert_eq!(printed, written);
    assert_eq!(written["connections"], 1);
    assert_eq!(written["resets"], 1);
    assert_eq!(written["bytes_down"], 10);

    harness()
        .args(["proxy", "--to", "10.1.2.3:80", "--duration", "1s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("loopback only"));
    harness()
        .args(["proxy", "--to", &server.addr().to_string()])
        .args(["--faults", "up:warp=9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown toxic"));
}
