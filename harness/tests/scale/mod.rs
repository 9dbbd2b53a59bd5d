//! `harness run` past one process: under a descriptor limit too small for the load, the harness
//! splits it over loadgen worker processes the way the `loadgen` binary does, and the merged load
//! report says so.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::util::{self, fork_lock};

/// The `loadgen` binary beside the harness (built if `cargo test -p harness` did not build it).
fn loadgen_binary() -> PathBuf {
    let harness = assert_cmd::cargo::cargo_bin("harness");
    let path = harness.with_file_name("loadgen");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "loadgen", "--bin", "loadgen"])
            .status()
            .expect("run cargo build");
        assert!(status.success());
    }
    path
}

#[test]
fn harness_run_splits_a_load_the_descriptor_limit_cannot_hold() {
    let _lock = fork_lock();
    let _ = loadgen_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("harness"));
    cmd.arg("run")
        .arg("--results-dir")
        .arg(dir.path())
        .args(["--conns", "200", "--duration", "1s", "--check-clients", "5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit only touches the child's own limits between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 150,
                rlim_max: 150,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().expect("start harness");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("harness run did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, report) = util::valid_report(dir.path(), "run-");
    let load = &report["load"];
    assert_eq!(util::loadgen_schema_errors(load), Vec::<String>::new());
    assert_eq!(load["counters"]["connections_established"], 200);
    assert_eq!(load["merge"]["workers"], 3, "{}", load["merge"]);
    assert_eq!(load["parameters"]["processes"], 3);
}
