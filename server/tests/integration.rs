//! End-to-end tests of the `fork-echo-server` binary: real processes on port 0, real sockets,
//! /proc for children and descriptors, deadlines instead of sleeps.

mod memory;
mod metrics;
mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::{echo, fork_lock, has_exited, nice_of, read_to_eof, wait_until, ServerProcess};

#[test]
fn round_trip() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"hello, fork"), b"hello, fork");
    assert_eq!(echo(&mut client, b"second message"), b"second message");
}

#[test]
fn all_256_byte_values_come_back_unchanged() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    let payload: Vec<u8> = (0..=255u8).cycle().take(256 * 4).collect();
    assert_eq!(echo(&mut client, &payload), payload);
}

#[test]
fn one_mib_written_while_reading_concurrently() {
    let server = ServerProcess::start(&["--buffer-size", "4096"]);
    let mut client = server.connect();
    let payload: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    // Writing 1 MiB before reading would deadlock once both socket buffers fill: the server
    // blocks writing the echo we are not reading.
    let writer = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let back = read_to_eof(&mut client);
    writer.join().unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "echo differs from the payload");
}

#[test]
fn half_close_returns_every_byte_then_eof() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    client.write_all(b"first ").unwrap();
    client.write_all(b"second").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut client), b"first second");
}

#[test]
fn rst_close_gets_the_child_reaped() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"x"), b"x");
    assert_eq!(server.children().len(), 1);
    let socket = socket2::Socket::from(client);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(socket); // SO_LINGER 0: close sends RST
    wait_until("the reset child to be reaped", || {
        server.children().is_empty()
    });
    let stats = server.stats();
    assert_eq!(stats["reaped"]["reset"], 1, "{stats}");
    assert_eq!(stats["live"], 0, "{stats}");
}

#[test]
fn concurrent_clients_get_only_their_own_bytes_and_children_are_reaped() {
    let _lock = fork_lock();
    const CLIENTS: usize = 200;
    let server = ServerProcess::start(&[]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("client {i} says {}|", "x".repeat(i)).as_bytes())
            .unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let expected = format!("client {i} says {}|", "x".repeat(i));
        let mut back = vec![0; expected.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(
            back,
            expected.as_bytes(),
            "client {i} got someone else's bytes"
        );
    }
    let children = server.children();
    assert_eq!(children.len(), CLIENTS, "one child per live client");
    assert!(children.iter().all(|c| c.state != 'Z'));
    drop(clients);
    wait_until("every child to be reaped", || server.children().is_empty());
    assert!(children.iter().all(|c| has_exited(c.pid)));
    let stats = server.stats();
    assert_eq!(stats["forked"], CLIENTS as u64);
    assert_eq!(stats["peak_live"], CLIENTS as u64);
    assert_eq!(stats["reaped"]["eof"], CLIENTS as u64);
}

/// With hundreds of children live, reaping on every SIGCHLD would scan the whole child list once
/// per exit; paced (`ReapPacing`), exits that come closer together than the pace share a scan.
/// The exits here come one every 300 µs, slower than a scan of 1,000 children takes, so each
/// would get a pass of its own without pacing (about one per exit, checked), and within the
/// 10 ms pace of 1,000 live children, so paced they share a few passes.
#[test]
fn exits_among_many_live_children_share_reap_passes() {
    let _lock = fork_lock();
    const CLIENTS: usize = 1000;
    const SPACED: usize = 100;
    let server = ServerProcess::start(&["--max-children", "2000"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    for client in &mut clients {
        assert_eq!(echo(client, b"x"), b"x");
    }
    let before = server.stats();
    assert_eq!(before["live"], CLIENTS as u64);
    for client in clients.drain(..SPACED) {
        drop(client);
        let next = Instant::now() + Duration::from_micros(300);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    wait_until("the closed sessions' children to be reaped", || {
        server.children().len() == CLIENTS - SPACED
    });
    let after = server.stats();
    // Less the pass SIGUSR1 makes before printing.
    let passes =
        after["reap_passes"].as_u64().unwrap() - before["reap_passes"].as_u64().unwrap() - 1;
    eprintln!("{SPACED} exits among {CLIENTS} live children reaped in {passes} passes");
    assert!(
        passes <= (SPACED / 2) as u64,
        "{SPACED} exits took {passes} reap passes"
    );
    drop(clients);
    wait_until("every child to be reaped", || server.children().is_empty());
    assert_eq!(server.stats()["reaped"]["eof"], CLIENTS as u64);
}

#[test]
fn parent_fd_count_is_unchanged_after_500_connections() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&[]);
    let before = server.fd_count();
    for i in 0..500u32 {
        let mut client = server.connect();
        assert_eq!(echo(&mut client, &i.to_be_bytes()), i.to_be_bytes());
    }
    wait_until("500 children reaped", || {
        server.stats()["reaped"]["eof"] == 500
    });
    assert_eq!(server.fd_count(), before, "the parent leaks descriptors");
}

#[test]
fn at_limit_wait_serves_the_next_client_after_the_first_leaves() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["--max-children", "1", "--at-limit", "wait"]);
    let mut first = server.connect();
    assert_eq!(echo(&mut first, b"one"), b"one");
    let mut second = server.connect(); // completes in the backlog
    second.write_all(b"two").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 3];
    let waiting = second.read(&mut buf);
    assert!(
        matches!(&waiting, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the second client was served while the first was live: {waiting:?}"
    );
    assert_eq!(server.children().len(), 1);
    drop(first);
    second.set_read_timeout(Some(util::DEADLINE)).unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");
    assert!(server.stats()["limit_hits"].as_u64().unwrap() >= 1);
}

#[test]
fn at_limit_close_gives_the_next_client_eof_at_once() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["--max-children", "1", "--at-limit", "close"]);
    let mut first = server.connect();
    assert_eq!(echo(&mut first, b"one"), b"one");
    let mut second = server.connect();
    let started = Instant::now();
    let mut buf = [0u8; 8];
    // EOF, or a reset if our bytes raced the close.
    match second.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF at the limit, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(echo(&mut first, b"still served"), b"still served");
    assert_eq!(server.stats()["limit_hits"], 1);
}

#[test]
fn idle_timeout_ends_a_silent_client() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["--idle-timeout", "1"]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"then silence"), b"then silence");
    assert_eq!(
        read_to_eof(&mut client),
        b"",
        "the idle session was not ended"
    );
    wait_until("the idle child to be reaped", || {
        server.children().is_empty()
    });
    assert_eq!(server.stats()["reaped"]["idle_timeout"], 1);
}

#[test]
fn sigterm_drains_then_exits_zero_with_no_orphan() {
    let _lock = fork_lock();
    let mut server = ServerProcess::start(&["--shutdown-grace", "1"]);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for client in &mut clients {
        assert_eq!(echo(client, b"hi"), b"hi");
    }
    let children = server.children();
    assert_eq!(children.len(), 3);
    server.signal(Signal::SIGTERM);
    // Live sessions keep working during the grace period...
    assert_eq!(echo(&mut clients[0], b"in grace"), b"in grace");
    // ...while the closed listener refuses newcomers.
    wait_until("the listener to close", || {
        TcpStream::connect(server.addr).is_err()
    });
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    for child in &children {
        wait_until("children to be gone", || has_exited(child.pid));
    }
    let stats = server.stats_lines().pop().expect("final stats line");
    assert_eq!(stats["reaped"]["signaled"], 3, "{stats}");
    assert_eq!(stats["live"], 0);
}

#[test]
fn second_sigint_skips_the_grace_period() {
    let _lock = fork_lock();
    let mut server = ServerProcess::start(&["--shutdown-grace", "60"]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"hi"), b"hi");
    server.signal(Signal::SIGINT);
    wait_until("the drain to start", || {
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("stopped accepting"))
    });
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert_eq!(read_to_eof(&mut client), b"");
}

#[test]
fn sigkill_of_the_server_makes_its_children_exit() {
    let _lock = fork_lock();
    let mut server = ServerProcess::start(&[]);
    let mut clients: Vec<TcpStream> = (0..5).map(|_| server.connect()).collect();
    for client in &mut clients {
        assert_eq!(echo(client, b"hi"), b"hi");
    }
    let children = server.children();
    assert_eq!(children.len(), 5);
    server.signal(Signal::SIGKILL);
    server.wait_exit(Duration::from_secs(10));
    for child in &children {
        wait_until("an orphaned child to exit", || has_exited(child.pid));
    }
}

#[test]
fn busy_port_exits_2_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fork-echo-server"))
        .args(["--port", &addr.port().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, no backtrace: {stderr}"
    );
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2_and_help_and_version_work() {
    let bin = env!("CARGO_BIN_EXE_fork-echo-server");
    let bad = Command::new(bin)
        .args(["--max-children", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--bind",
        "--port",
        "--backlog",
        "--max-children",
        "--at-limit",
        "--idle-timeout",
        "--buffer-size",
        "--shutdown-grace",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn sigusr1_stats_match_what_happened() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&[]);
    for _ in 0..3 {
        let mut client = server.connect();
        assert_eq!(echo(&mut client, b"done"), b"done");
    }
    let mut open = server.connect();
    assert_eq!(echo(&mut open, b"open"), b"open");
    wait_until("three sessions reaped", || {
        server.stats()["reaped"]["eof"] == 3
    });
    let stats = server.stats();
    assert_eq!(stats["accepted"], 4, "{stats}");
    assert_eq!(stats["forked"], 4, "{stats}");
    assert_eq!(stats["live"], 1, "{stats}");
    let peak = stats["peak_live"].as_u64().unwrap();
    assert!((1..=4).contains(&peak), "{stats}");
    assert_eq!(stats["fork_failures"], 0, "{stats}");
    assert_eq!(stats["reaped"]["reset"], 0, "{stats}");
}

#[test]
fn descriptor_exhaustion_pauses_accepting_instead_of_spinning() {
    let _lock = fork_lock();
    // stdin, stdout, stderr, the listener and the signalfd: a limit of 5 leaves none for accept.
    let server = ServerProcess::start_with(&[], |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches only the child being spawned.
        unsafe {
            command.pre_exec(|| {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 5, 5)
                    .map_err(std::io::Error::from)
            });
        }
    });
    let _waiting = TcpStream::connect(server.addr).unwrap();
    wait_until("an EMFILE pause", || {
        server.stats()["emfile_pauses"].as_u64().unwrap() >= 1
    });
    let cpu_before = cpu_ticks(server.pid().as_raw());
    let wall = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let ticks = cpu_ticks(server.pid().as_raw()) - cpu_before;
    let ticks_per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let share = ticks as f64 / ticks_per_sec / wall.elapsed().as_secs_f64();
    assert!(
        share < 0.5,
        "the server spins on EMFILE: {:.0}% CPU",
        share * 100.0
    );
    assert!(server
        .stderr_lines()
        .iter()
        .any(|l| l.contains("pausing accepts")));
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn fork_failure_closes_that_client_and_keeps_serving() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run processes as an unprivileged uid with RLIMIT_NPROC");
        return;
    }
    let _lock = fork_lock();
    // RLIMIT_NPROC is not enforced for root, so the server runs as an otherwise unused uid with a
    // limit of 2 processes: the server plus a placeholder. Every fork fails with EAGAIN until the
    // placeholder exits.
    const UNUSED_UID: u32 = 64_999;
    let mut placeholder = Command::new("sleep")
        .arg("60")
        .uid(UNUSED_UID)
        .spawn()
        .unwrap();
    let server = ServerProcess::start_as_uid(UNUSED_UID, &[], |command| {
        // SAFETY: setrlimit is async-signal-safe and touches only the child being spawned.
        unsafe {
            command.pre_exec(|| {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, 2, 2)
                    .map_err(std::io::Error::from)
            });
        }
    });
    let mut refused = server.connect();
    let outcome = read_to_eof(&mut refused);
    let stats = server.stats();
    let _ = placeholder.kill();
    let _ = placeholder.wait();
    assert_eq!(outcome, b"", "the client of a failed fork must be closed");
    assert!(stats["fork_failures"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["forked"], 0, "{stats}");
    assert!(server
        .stderr_lines()
        .iter()
        .any(|l| l.contains("fork failed")));
    // With the placeholder gone, the same server serves the next client.
    let mut served = server.connect();
    assert_eq!(
        echo(&mut served, b"after the back-off"),
        b"after the back-off"
    );
}

#[test]
fn a_child_that_outlives_sigterm_is_killed_and_reaped() {
    let _lock = fork_lock();
    let mut server = ServerProcess::start(&["--shutdown-grace", "0"]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"hi"), b"hi");
    let children = server.children();
    assert_eq!(children.len(), 1);
    // A stopped process keeps SIGTERM pending; only SIGKILL ends it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(children[0].pid), Signal::SIGSTOP).unwrap();
    wait_until("the child to stop", || {
        util::proc_entry(children[0].pid).is_some_and(|e| e.state == 'T')
    });
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert!(has_exited(children[0].pid));
    assert!(server
        .stderr_lines()
        .iter()
        .any(|l| l.contains("outlived SIGTERM")));
    let stats = server.stats_lines().pop().expect("final stats line");
    assert_eq!(stats["reaped"]["signaled"], 1, "{stats}");
}

#[test]
fn an_inherited_ignored_sigchld_is_reset_so_children_are_reaped() {
    use std::os::unix::process::CommandExt;
    let _lock = fork_lock();
    // A parent that ignores SIGCHLD passes that through exec; the kernel would then reap the
    // server's children itself, waitpid would only ever say "no children" and the table would
    // never shrink: with --max-children 2 the third client would wait for ever.
    let mut server = ServerProcess::start_with(
        &["--max-children", "2", "--shutdown-grace", "1"],
        |command| {
            // SAFETY: signal(2) is async-signal-safe and changes only the child being spawned.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigIgn)
                        .map(drop)
                        .map_err(std::io::Error::from)
                });
            }
        },
    );
    for i in 0..3u8 {
        let mut client = server.connect();
        assert_eq!(echo(&mut client, &[i]), [i], "client {i}");
        drop(client);
        wait_until("the child to be gone", || server.children().is_empty());
    }
    wait_until("three sessions reaped", || {
        server.stats()["reaped"]["eof"] == 3
    });
    let stats = server.stats();
    assert_eq!(stats["live"], 0, "{stats}");
    let mut held = server.connect();
    assert_eq!(echo(&mut held, b"held"), b"held");
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    let stats = server.stats_lines().pop().expect("final stats line");
    assert_eq!(stats["reaped"]["signaled"], 1, "{stats}");
}

#[test]
fn absurd_durations_are_refused_at_parse_time() {
    for flag in ["--shutdown-grace", "--idle-timeout"] {
        let output = util::run_to_exit(&[flag, "18446744073709551615"], util::DEADLINE);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
        assert!(output.stdout.is_empty(), "{flag} started a server");
    }
}

#[test]
fn a_closed_stderr_neither_kills_the_server_nor_cuts_the_drain() {
    let _lock = fork_lock();
    // -v: every accept, fork and reap writes a line, each of which gets EPIPE.
    let mut server = ServerProcess::start_with_stderr_closed(&["-v", "--shutdown-grace", "5"]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"one"), b"one");
    server.signal(Signal::SIGUSR1);
    let mut second = server.connect();
    assert_eq!(echo(&mut second, b"two"), b"two");
    drop(second);
    server.signal(Signal::SIGTERM);
    // The session still works during the grace period...
    assert_eq!(echo(&mut client, b"in grace"), b"in grace");
    // ...and ends when its client leaves, after which the server exits cleanly.
    drop(client);
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_write_side_idle_timeout_is_a_deadline_on_progress() {
    let _lock = fork_lock();
    const IDLE: Duration = Duration::from_secs(2);
    let server = ServerProcess::start(&["--idle-timeout", "2"]);
    // Small client buffers, so the server's echo blocks soon after the client stops reading.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut client = TcpStream::from(socket);
    client.set_write_timeout(Some(util::DEADLINE)).unwrap();
    // The client writes and never reads. Each completed write means the server read more, and
    // the server reads only after its previous echo went into its send buffer, so the last
    // completed write marks the server's last progress.
    let chunk = [b'w'; 1024];
    let mut last_progress = Instant::now();
    let ended = loop {
        match client.write(&chunk) {
            // A blocking write returns short only when the connection failed part-way.
            Ok(n) if n == chunk.len() => last_progress = Instant::now(),
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => break err,
        }
        assert!(
            last_progress.elapsed() < util::DEADLINE,
            "the session never ended"
        );
    };
    let stalled_for = last_progress.elapsed();
    assert!(
        matches!(
            ended.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{ended:?}"
    );
    // An upper bound only, halfway to the old behaviour: the per-call SO_SNDTIMEO allowed up to
    // twice the timeout. (No lower bound: the client's last write can complete a little after
    // the server's last send, while the server's receive buffer still takes bytes.)
    assert!(
        stalled_for < IDLE * 3 / 2,
        "the session ended {stalled_for:?} after its last progress with --idle-timeout 2s"
    );
    wait_until("the idle child to be reaped", || {
        server.stats()["reaped"]["idle_timeout"] == 1
    });
}

fn stderr_line_with(server: &ServerProcess, needle: &str) -> String {
    let mut found = None;
    wait_until(&format!("a stderr line with {needle:?}"), || {
        found = server
            .stderr_lines()
            .into_iter()
            .find(|line| line.contains(needle));
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn start_and_shutdown_lines_name_the_backlog_cap_only_when_it_applies_and_count_right() {
    let _lock = fork_lock();
    let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let over = (somaxconn + 1).to_string();
    let capped = ServerProcess::start(&["--backlog", &over, "--max-children", "1"]);
    let line = stderr_line_with(&capped, "listen backlog");
    assert!(
        line.contains(&format!(
            "listen backlog {over} requested, {somaxconn} effective"
        )),
        "{line}"
    );
    assert!(line.ends_with("at most 1 child"), "{line}");
    drop(capped);

    let within = somaxconn.to_string();
    let mut server = ServerProcess::start(&["--backlog", &within, "--shutdown-grace", "1500ms"]);
    let line = stderr_line_with(&server, "listen backlog");
    assert!(
        line.contains(&format!("listen backlog {within} (")) && !line.contains("effective"),
        "the uncapped backlog is reported as capped: {line}"
    );
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"hi"), b"hi");
    server.signal(Signal::SIGTERM);
    let line = stderr_line_with(&server, "stopped accepting");
    assert!(
        line.ends_with("1 live session has 1s 500ms to finish"),
        "{line}"
    );
    drop(client);
    assert_eq!(server.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

/// A client connected from `source` (any 127.0.0.0/8 address is local on Linux).
fn connect_from(server: &ServerProcess, source: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(util::DEADLINE)).unwrap();
    stream
}

fn assert_closed_at_once(stream: &mut TcpStream, who: &str) {
    let mut buf = [0u8; 8];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{who}: expected EOF at the per-source limit, got {other:?}"),
    }
}

#[test]
fn max_per_source_keeps_one_address_from_taking_every_child() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["--max-per-source", "2", "--max-children", "3"]);
    let mut first = connect_from(&server, "127.0.0.2");
    let mut second = connect_from(&server, "127.0.0.2");
    assert_eq!(echo(&mut first, b"a1"), b"a1");
    assert_eq!(echo(&mut second, b"a2"), b"a2");
    let mut third = connect_from(&server, "127.0.0.2");
    assert_closed_at_once(&mut third, "the third client of 127.0.0.2");
    // The last free slot still goes to another address.
    let mut other = connect_from(&server, "127.0.0.3");
    assert_eq!(echo(&mut other, b"b1"), b"b1");
    let stats = server.stats();
    assert_eq!(stats["per_source_refused"], 1, "{stats}");
    assert_eq!(stats["live"], 3, "{stats}");
    // A slot freed by 127.0.0.2 is 127.0.0.2's again.
    drop(first);
    wait_until("the first child to be reaped", || {
        server.stats()["live"] == 2
    });
    let mut again = connect_from(&server, "127.0.0.2");
    assert_eq!(echo(&mut again, b"a3"), b"a3");
    assert_eq!(echo(&mut second, b"a2 still"), b"a2 still");
}

#[test]
fn max_rate_spaces_new_sessions_without_spinning() {
    let _lock = fork_lock();
    const CLIENTS: usize = 15;
    // A burst of 5 (one second's worth), then one session every 200 ms: the last of 15 clients
    // cannot be served before 2 s.
    let server = ServerProcess::start(&["--max-rate", "5"]);
    let started = Instant::now();
    let cpu_before = cpu_ticks(server.pid().as_raw());
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let message = format!("client {i}");
        assert_eq!(echo(client, message.as_bytes()), message.as_bytes());
    }
    let elapsed = started.elapsed();
    let cpu = (cpu_ticks(server.pid().as_raw()) - cpu_before) as f64
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as f64;
    // Lower bounds only (noise makes things slower, not faster), and a CPU share a busy loop
    // would blow through.
    assert!(
        elapsed >= Duration::from_millis(1500),
        "15 sessions at --max-rate 5 took only {elapsed:?}"
    );
    assert!(
        cpu < elapsed.as_secs_f64() * 0.5,
        "the server spun while rate-limited: {cpu:.2}s CPU in {elapsed:?}"
    );
    let stats = server.stats();
    assert!(stats["rate_limited"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["forked"], CLIENTS as u64, "{stats}");
}

fn session_lines(server: &ServerProcess, json: bool) -> Vec<String> {
    server
        .stderr_lines()
        .into_iter()
        .filter(|line| {
            if json {
                line.starts_with("{\"event\":\"session\"")
            } else {
                line.contains("event=session ")
            }
        })
        .collect()
}

#[test]
fn at_v_each_finished_session_gets_one_access_log_line_in_json() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["-v", "--log-format", "json"]);
    let mut client = server.connect();
    let local = client.local_addr().unwrap();
    assert_eq!(echo(&mut client, b"hello"), b"hello");
    assert_eq!(echo(&mut client, b"again"), b"again");
    let child = server.children()[0].pid;
    drop(client);
    let mut reset = server.connect();
    assert_eq!(echo(&mut reset, b"x"), b"x");
    let socket = socket2::Socket::from(reset);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(socket);
    wait_until("two access-log lines", || {
        session_lines(&server, true).len() == 2
    });
    let records: Vec<serde_json::Value> = session_lines(&server, true)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let eof = records
        .iter()
        .find(|r| r["end"] == "eof")
        .expect("an eof line");
    assert_eq!(eof["peer"], local.to_string(), "{eof}");
    assert_eq!(eof["pid"], child, "{eof}");
    assert_eq!(eof["bytes_in"], 10, "{eof}");
    assert_eq!(eof["bytes_out"], 10, "{eof}");
    assert!(eof["duration_s"].as_f64().unwrap() >= 0.0, "{eof}");
    let reset = records
        .iter()
        .find(|r| r["end"] == "reset")
        .expect("a reset line");
    assert_eq!(reset["bytes_in"], 1, "{reset}");
}

#[test]
fn the_text_access_log_is_logfmt_and_off_by_default() {
    let _lock = fork_lock();
    let verbose = ServerProcess::start(&["-v"]);
    let quiet = ServerProcess::start(&[]);
    for server in [&verbose, &quiet] {
        let mut client = server.connect();
        assert_eq!(echo(&mut client, b"abc"), b"abc");
        drop(client);
        wait_until("the child to be reaped", || {
            server.stats()["reaped"]["eof"] == 1
        });
    }
    let lines = session_lines(&verbose, false);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for field in [
        "peer=127.0.0.1:",
        "pid=",
        "duration=",
        "bytes_in=3 ",
        "bytes_out=3 ",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(line.ends_with(" end=eof"), "{line}");
    assert!(session_lines(&quiet, false).is_empty());
}

#[test]
fn socket_activation_serves_the_passed_listener_instead_of_binding() {
    let _lock = fork_lock();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let passed = listener.local_addr().unwrap();
    let server = ServerProcess::start_socket_activated(&listener, None, &[]);
    // Our copy must not answer anything: only the server accepts from now on.
    drop(listener);
    assert_eq!(
        server.addr, passed,
        "the first line names the passed socket"
    );
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"activated"), b"activated");
    stderr_line_with(&server, "socket activation");
    // The passed socket's backlog is not ours to judge: no "--backlog ... the kernel uses 0"
    // warning. The parent writes its lines in order, so once a later stats line is in, any
    // start-up warning would be too.
    let _ = server.stats();
    let warnings: Vec<String> = server
        .stderr_lines()
        .into_iter()
        .filter(|line| line.contains("warning: --backlog"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    // The children must not keep the listener: after the server is gone, the port is closed.
    let children = server.children();
    assert_eq!(children.len(), 1);
    drop(server);
    wait_until("the port to close", || TcpStream::connect(passed).is_err());
}

#[test]
fn socket_activation_meant_for_another_process_is_ignored() {
    let _lock = fork_lock();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = ServerProcess::start_socket_activated(&listener, Some("1"), &[]);
    assert_ne!(server.addr, listener.local_addr().unwrap());
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"bound"), b"bound");
}

#[test]
fn an_unusable_socket_activation_is_a_one_line_start_up_error() {
    for (setup, expected) in [
        ("LISTEN_FDS=2", "LISTEN_FDS=2"),
        (
            "exec 3</dev/null; LISTEN_FDS=1",
            "fd 3 is not an open socket",
        ),
    ] {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{setup} LISTEN_PID=$$ exec \"$0\" --port 0"))
            .arg(env!("CARGO_BIN_EXE_fork-echo-server"));
        let output = util::output_within(command, util::DEADLINE);
        assert_eq!(output.status.code(), Some(2), "{setup}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{setup}: {stderr}");
        assert!(stderr.contains(expected), "{setup}: {stderr}");
        assert!(output.stdout.is_empty(), "{setup}");
    }
}

/// Starts a server with `args`, opens one session, and returns (parent nice, child nice).
fn parent_and_child_nice(args: &[&str]) -> (i32, i32) {
    let server = ServerProcess::start(args);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"nice?"), b"nice?");
    let children = server.children();
    assert_eq!(children.len(), 1, "{children:?}");
    (nice_of(server.pid().as_raw()), nice_of(children[0].pid))
}

#[test]
fn children_lower_their_priority_by_child_nice_and_the_parent_keeps_its_own() {
    let _lock = fork_lock();
    let own = nice_of(std::process::id() as i32);
    assert!(
        own <= 9,
        "this test needs room above its own nice value ({own}) to see the children's"
    );
    let (parent, child) = parent_and_child_nice(&["--child-nice", "7"]);
    assert_eq!(parent, own, "the parent's priority must not change");
    assert_eq!(child, own + 7);
    let (parent, child) = parent_and_child_nice(&[]);
    assert_eq!(
        (parent, child),
        (own, own + 10),
        "the default is --child-nice 10"
    );
    let (_, child) = parent_and_child_nice(&["--child-nice", "0"]);
    assert_eq!(
        child, own,
        "--child-nice 0 keeps children at the parent's priority"
    );
}

#[test]
fn a_backlog_above_somaxconn_gets_a_start_up_warning() {
    let somaxconn: i64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .expect("somaxconn is a number");
    let warned = |backlog: i64| {
        let server = ServerProcess::start(&["--backlog", &backlog.to_string()]);
        // The stats line comes from the event loop, after any start-up warning on the same
        // stderr, so once it is there the warning would be too.
        server.stats();
        server
            .stderr_lines()
            .iter()
            .any(|line| line.contains("warning: --backlog") && line.contains("somaxconn"))
    };
    assert!(
        warned(somaxconn + 1),
        "no warning for --backlog {}",
        somaxconn + 1
    );
    assert!(
        !warned(somaxconn),
        "a warning for --backlog {somaxconn}, which fits"
    );
}

#[test]
fn a_queued_burst_is_accepted_in_one_batch_but_never_past_max_children() {
    let _lock = fork_lock();
    for (mode, accepted, limit_hits) in [("wait", 3, 1), ("close", 10, 7)] {
        let server = ServerProcess::start(&["--max-children", "3", "--at-limit", mode]);
        // Stopped, the server cannot accept: all ten handshakes complete into the backlog, and
        // the next wake-up finds them queued together, in one accept batch.
        server.signal(Signal::SIGSTOP);
        let clients: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
        server.signal(Signal::SIGCONT);
        wait_until("three children", || server.children().len() >= 3);
        let stats = server.stats();
        assert_eq!(stats["peak_live"], 3, "{mode}: {stats}");
        assert_eq!(stats["forked"], 3, "{mode}: {stats}");
        assert_eq!(stats["accepted"], accepted, "{mode}: {stats}");
        assert_eq!(stats["limit_hits"], limit_hits, "{mode}: {stats}");
        assert_eq!(server.children().len(), 3, "{mode}");
        drop(clients);
    }
}
