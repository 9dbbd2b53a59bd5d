//! The engines: which one a run uses, that the default really is one thread per connection,
//! and the flags an engine cannot honour (the suites of `integration.rs` run under each engine).

use std::time::{Duration, Instant};

use crate::util::{self, Behaviour, SpawnedServer, TestServer};

/// Threads of process `pid` now (0 once it has gone).
fn threads_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `loadgen` with 40 connections for 2 s against `target` plus `extra`; returns the most
/// threads it had at once (sampled until it exits) and its report's engine.
fn peak_threads_and_engine(target: &str, extra: &[&str]) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("engine.json");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("loadgen"))
        .args(["--addr", target, "-c", "40", "-d", "2s"])
        .args(["--no-progress", "-q", "--json"])
        .arg(&json)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "loadgen did not end");
        peak = peak.max(threads_of(child.id()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    let report = util::read_report(&json);
    assert_eq!(report.counters.connections_established, 40);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    (peak, report.parameters.engine)
}

/// Fails if a closed-loop run against a fork-per-connection server falls back to the event-loop
/// engine: the default must run a thread per connection there (issue 18), and say so in the
/// report; and fails if a server that serves its connections in-process (this test's own tokio
/// server) does not get the event loops, 2.4x faster there (loadgen/BENCH.md).
#[test]
fn a_closed_loop_runs_one_thread_per_connection_by_default() {
    {
        let _fork = util::forking_lock();
        let server = SpawnedServer::start(&util::fork_echo_server(), &["--port", "0", "-q"]);
        let (peak, engine) = peak_threads_and_engine(&server.addr.to_string(), &[]);
        // The uring engine wherever this kernel lets loadgen use io_uring and 40 connections
        // are enough per CPU (issue 18).
        assert_eq!(engine, loadgen::fork_server_engine(40).name());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if loadgen::uring_available() && cpus <= 10 {
            assert_eq!(engine, "uring");
        }
        // One connection is the threads engine's: nothing to batch.
        assert_eq!(loadgen::fork_server_engine(1), loadgen::Engine::Threads);
        assert!(peak >= 40, "only {peak} threads for 40 connections");
    }
    let server = TestServer::start(Behaviour::Echo);
    let target = server.target();
    let (peak, engine) = peak_threads_and_engine(&target, &[]);
    assert_eq!(engine, "tokio", "auto against an in-process server");
    assert!(peak < 40, "{peak} threads on the tokio engine");
    let (peak, engine) = peak_threads_and_engine(&target, &["--engine", "threads"]);
    assert_eq!(engine, "threads");
    assert!(peak >= 40, "only {peak} threads for 40 connections");
    let (peak, engine) = peak_threads_and_engine(&target, &["--engine", "tokio"]);
    assert_eq!(engine, "tokio");
    assert!(peak < 40, "{peak} threads on the tokio engine");
    // --rate needs the tokio engine: auto chooses it.
    let (_, engine) = peak_threads_and_engine(&target, &["--rate", "400"]);
    assert_eq!(engine, "tokio");
}

#[test]
fn flags_the_thread_per_connection_engines_cannot_honour_exit_2_with_one_line() {
    let target = format!("127.0.0.1:{}", util::refused_port());
    for engine in ["threads", "uring"] {
        for (flags, needle) in [
            (&["--rate", "100"][..], "--rate"),
            (&["--threads", "2"][..], "--threads"),
        ] {
            let assert = util::loadgen_for(&target, 2, "1s")
                .args(["--engine", engine])
                .args(flags)
                .assert()
                .code(2);
            let stderr = util::stderr(&assert);
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains(needle)
                    && stderr.contains("--engine tokio")
                    && stderr.contains(engine),
                "{stderr}"
            );
        }
    }
    // --stages sets the run's length and peak itself: no -c, no -d.
    let assert = util::loadgen()
        .args(["--addr", &target, "--stages", "1s:2", "--engine", "threads"])
        .assert()
        .code(2);
    let stderr = util::stderr(&assert);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--stages") && stderr.contains("--engine tokio"),
        "{stderr}"
    );
    let assert = util::loadgen_for(&target, 2, "1s")
        .args(["--engine", "fibers"])
        .assert()
        .code(2);
    assert!(util::stderr(&assert).contains("auto, threads, tokio, uring"));
}

#[test]
fn the_library_resolves_auto_and_refuses_what_an_engine_cannot_do() {
    let server = TestServer::start(Behaviour::Echo);
    let config = util::messages_config(server.addr, 3, 4);
    assert_eq!(config.engine(), loadgen::Engine::Threads);
    let report = loadgen::run(config).unwrap();
    assert_eq!(report.parameters.engine, "threads");
    assert_eq!(report.counters.messages_verified, 12);
    let refused = loadgen::run(loadgen::Config {
        engine: loadgen::Engine::Threads,
        rate: Some(10.0),
        ..util::messages_config(server.addr, 3, 4)
    });
    assert!(matches!(refused, Err(loadgen::Error::Config(_))));
}

/// The CPUs listed in a `/proc/.../status` `Cpus_allowed_list` value ("0-3,6").
fn cpu_list(value: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in value.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// `loadgen --engine uring` with 40 connections for `duration` against `addr`, running.
fn uring_loadgen(addr: std::net::SocketAddr, duration: &str) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("loadgen"))
        .args(["--addr", &addr.to_string(), "-c", "40", "-d", duration])
        .args(["--engine", "uring", "--no-progress", "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The uring engine's drivers each pin themselves to a CPU of their own (what lets a session
/// follow its server child, so that its sends wake the child on the same CPU): fails if they
/// float, share a CPU, or leave one of loadgen's CPUs without a driver.
#[test]
fn the_uring_drivers_are_pinned_one_per_cpu() {
    let _fork = util::forking_lock();
    let server = SpawnedServer::start(&util::fork_echo_server(), &["--port", "0", "-q"]);
    let mut child = uring_loadgen(server.addr, "3s");
    let status = |task: &std::path::Path| std::fs::read_to_string(task.join("status")).ok();
    let field = |s: &str, name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let ours = cpu_list(
        &field(
            &std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap(),
            "Cpus_allowed_list:",
        )
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let pinned = loop {
        assert!(
            Instant::now() < deadline,
            "no uring drivers each pinned to one CPU seen"
        );
        let mut pinned = Vec::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap();
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != "loadgen-uring" {
                continue;
            }
            if let Some(s) = status(&task.path()) {
                pinned.push(cpu_list(&field(&s, "Cpus_allowed_list:").unwrap()));
            }
        }
        // Started one after another and pinned by each driver itself as it starts: wait until
        // there is one per CPU and each has.
        if pinned.len() >= ours.len() && pinned.iter().all(|c| c.len() == 1) {
            break pinned;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(child.wait().unwrap().success());
    let mut cpus: Vec<usize> = pinned.iter().map(|c| c[0]).collect();
    cpus.sort();
    assert_eq!(
        cpus, ours,
        "drivers pinned to {pinned:?}, loadgen may use {ours:?}"
    );
}

/// CPU time (utime + stime, in clock ticks) of each `loadgen-uring` thread of `pid`, by the CPU
/// it is pinned to.
fn driver_ticks(pid: u32) -> Vec<(usize, u64)> {
    let mut drivers = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return drivers;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(cpu_list)
            .unwrap_or_default();
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if comm.trim() != "loadgen-uring" || allowed.len() != 1 || f.len() < 13 {
            continue;
        }
        let ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        drivers.push((allowed[0], ticks));
    }
    drivers
}

/// A session moves to the driver on the CPU its server child runs on: with every child of the
/// server held on one CPU (`taskset`), the driver pinned there must do nearly all the work and
/// the others next to none. Fails if sessions stay on the driver they were first given (each
/// driver would then carry its share).
#[test]
fn uring_sessions_follow_their_server_child_to_its_cpu() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cpus = cpu_list(
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap(),
    );
    if cpus.len() < 2 {
        eprintln!("skipped: one CPU, nothing to follow");
        return;
    }
    let server_cpu = *cpus.last().unwrap();
    let _fork = util::forking_lock();
    let server_bin = util::fork_echo_server();
    let server = SpawnedServer::start(
        std::path::Path::new("taskset"),
        &[
            "-c",
            &server_cpu.to_string(),
            server_bin.to_str().unwrap(),
            "--port",
            "0",
            "-q",
        ],
    );
    let mut child = uring_loadgen(server.addr, "4s");
    // The last sample before the run ends: its steady phase, sessions long settled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "loadgen did not end");
        let now = driver_ticks(child.id());
        if now.len() == cpus.len() {
            last = now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    let on_server_cpu: u64 = last.iter().filter(|d| d.0 == server_cpu).map(|d| d.1).sum();
    let elsewhere: u64 = last.iter().filter(|d| d.0 != server_cpu).map(|d| d.1).sum();
    assert!(
        on_server_cpu >= 20,
        "the driver on the server's CPU ran {on_server_cpu} ticks"
    );
    assert!(
        elsewhere * 4 < on_server_cpu,
        "drivers elsewhere ran {elsewhere} ticks, the one on the server's CPU {on_server_cpu}: \
         sessions did not follow ({last:?})"
    );
}

/// Pipelined 64 KiB messages on the uring engine against a server in another process: a send
/// completes while the session's receive is still in flight, and a session must not move to
/// another driver then (it did: the receive left behind and the new one wrote into the same
/// buffer, 9 runs in 10 with mismatches). Three runs, every byte verified.
#[test]
fn uring_sessions_move_only_with_nothing_in_flight() {
    let server = SpawnedServer::start(
        &assert_cmd::cargo::cargo_bin("tokio-echo"),
        &["--port", "0"],
    );
    for _ in 0..3 {
        let assert = util::loadgen()
            .args([
                "--addr",
                &server.addr.to_string(),
                "-c",
                "4",
                "--messages",
                "40",
            ])
            .args(["--size", "65536", "--pipeline", "8", "--engine", "uring"])
            .args(["--no-progress"])
            .assert();
        let stdout = util::stdout(&assert.success());
        assert!(
            stdout.contains("160 sent, 160 verified, 0 failed"),
            "{stdout}"
        );
    }
}
