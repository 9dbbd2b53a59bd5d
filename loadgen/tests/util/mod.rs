//! Test helpers: in-process tokio echo servers that misbehave on purpose (flip a byte, close
//! early, stall once, go silent, answer slowly), the real `fork-echo-server` as a child process, and ways to
//! run the `loadgen` binary and read its report. Everything binds loopback port 0.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Tests that fork server children hold this, so child counts never mix between tests.
pub static FORKING: Mutex<()> = Mutex::new(());

pub fn forking_lock() -> MutexGuard<'static, ()> {
    FORKING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held by the heaviest loads and by the timing-sensitive test, so that test's upper bounds on
/// latency are not measured while 1000 other connections compete for the same two cores.
pub static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy_lock() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// How an in-test server treats each connection.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Echo everything.
    Echo,
    /// Echo, but flip byte number `at` of the stream, once in the server's life.
    FlipOnce { at: u64 },
    /// Echo the first `bytes` of each connection; when more arrives, echo nothing more and close.
    CloseAfter { bytes: u64 },
    /// Echo; once the server has echoed `after` bytes in total, stall `stall` before echoing
    /// more, once in the server's life.
    StallOnce { after: u64, stall: Duration },
    /// Echo the first `bytes` of each connection, then read and discard forever.
    SilentAfter { bytes: u64 },
    /// Echo the first `bytes` of each connection; when more arrives, abort it with a RST.
    ResetAfter { bytes: u64 },
    /// Echo every read after sleeping `delay` (tokio's timer: up to a millisecond more).
    Delay { delay: Duration },
}

/// An echo server on its own runtime thread; stopped (and every connection closed) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Peer addresses of accepted connections.
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
    /// Bytes echoed over all connections.
    pub echoed: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(behaviour: Behaviour) -> TestServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), behaviour)
    }

    pub fn start_on(bind: SocketAddr, behaviour: Behaviour) -> TestServer {
        raise_nofile();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let echoed = Arc::new(AtomicU64::new(0));
        let once = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (p, e) = (peers.clone(), echoed.clone());
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let accept = async {
                    loop {
                        let Ok((stream, peer)) = listener.accept().await else {
                            continue;
                        };
                        p.lock().unwrap().push(peer);
                        tokio::spawn(handle(stream, behaviour, e.clone(), once.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here cancels every connection task and closes its socket.
            drop(runtime);
        });
        TestServer {
            addr,
            peers,
            echoed,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `--addr` value for this server.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    behaviour: Behaviour,
    echoed: Arc<AtomicU64>,
    once: Arc<AtomicBool>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 16384];
    let mut offset: u64 = 0;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        let echo_len = match behaviour {
            Behaviour::Echo => n,
            Behaviour::FlipOnce { at } => {
                if at >= offset && at < offset + n as u64 && !once.swap(true, Ordering::SeqCst) {
                    chunk[(at - offset) as usize] ^= 0x01;
                }
                n
            }
            Behaviour::CloseAfter { bytes } => (bytes.saturating_sub(offset) as usize).min(n),
            Behaviour::StallOnce { after, stall } => {
                if echoed.load(Ordering::SeqCst) >= after && !once.swap(true, Ordering::SeqCst) {
                    tokio::time::sleep(stall).await;
                }
                n
            }
            Behaviour::SilentAfter { bytes } | Behaviour::ResetAfter { bytes } => {
                (bytes.saturating_sub(offset) as usize).min(n)
            }
            Behaviour::Delay { delay } => {
                tokio::time::sleep(delay).await;
                n
            }
        };
        offset += n as u64;
        if echo_len > 0 {
            if stream.write_all(&chunk[..echo_len]).await.is_err() {
                return;
            }
            echoed.fetch_add(echo_len as u64, Ordering::SeqCst);
        }
        if echo_len < n {
            match behaviour {
                Behaviour::CloseAfter { .. } => return,
                Behaviour::ResetAfter { .. } => {
                    // SO_LINGER 0: closing the socket then sends a RST instead of a FIN.
                    let _ = stream.set_zero_linger();
                    return;
                }
                _ => {}
            }
        }
    }
}

/// Raises this process's descriptor limit (the servers here hold one fd per client).
pub fn raise_nofile() {
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Every engine, for the suites that must hold under each.
pub const ENGINES: [loadgen::Engine; 3] = [
    loadgen::Engine::Threads,
    loadgen::Engine::Tokio,
    loadgen::Engine::Uring,
];

/// A base config for in-process runs against `addr`: quiet, no progress bar.
pub fn config(addr: SocketAddr) -> loadgen::Config {
    loadgen::Config {
        addr,
        progress: false,
        ..loadgen::Config::default()
    }
}

/// A config for `conns` connections sending `messages` messages each (no duration).
pub fn messages_config(addr: SocketAddr, conns: usize, messages: u64) -> loadgen::Config {
    loadgen::Config {
        conns,
        duration: None,
        messages: Some(messages),
        ..config(addr)
    }
}

/// The `loadgen` binary.
pub fn loadgen() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("loadgen").unwrap();
    cmd.timeout(Duration::from_secs(120));
    cmd
}

/// `loadgen --addr TARGET -c CONNS --messages MESSAGES --no-progress`; add flags to taste.
pub fn loadgen_messages(target: &str, conns: u64, messages: u64) -> assert_cmd::Command {
    let mut cmd = loadgen();
    cmd.args(["--addr", target, "-c", &conns.to_string()])
        .args(["--messages", &messages.to_string(), "--no-progress"]);
    cmd
}

/// `loadgen --addr TARGET -c CONNS -d DURATION --no-progress`; add flags to taste.
pub fn loadgen_for(target: &str, conns: u64, duration: &str) -> assert_cmd::Command {
    let mut cmd = loadgen();
    cmd.args(["--addr", target, "-c", &conns.to_string()])
        .args(["-d", duration, "--no-progress"]);
    cmd
}

/// What a finished command wrote to stderr, as text.
pub fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// What a finished command wrote to stdout, as text.
pub fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// A port that refuses connections (bound, then released).
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn read_report(path: &Path) -> loadgen::Report {
    loadgen::Report::read_json(path).unwrap()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The directory holding this test binary's sibling executables (`target/<profile>`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap().to_path_buf()
}

/// A running binary that announced `listening on IP:PORT`; killed and reaped on drop.
pub struct SpawnedServer {
    pub addr: SocketAddr,
    pub child: Child,
}

impl SpawnedServer {
    /// Starts `program args...` and waits (with a deadline) for its `listening on` line.
    pub fn start(program: &Path, args: &[&str]) -> SpawnedServer {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{} printed no listening line within 30 s",
                    program.display()
                );
            }
        };
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "{}: first stdout line is {line:?}, not `listening on IP:PORT` (exit: {status:?})",
                    program.display()
                )
            })
            .parse()
            .unwrap();
        SpawnedServer { addr, child }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // SIGTERM first so a fork server can reap its children; SIGKILL if it lingers.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `fork-echo-server` binary next to this test's profile dir. It is (re)built first with
/// the same profile, so a stale or missing binary never gets tested; cargo makes that a no-op
/// when it is up to date.
pub fn fork_echo_server() -> PathBuf {
    let dir = target_profile_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo)
        .args([
            "build",
            "-p",
            "fork-echo-server",
            "--bin",
            "fork-echo-server",
        ])
        .args(["--profile", &profile])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run cargo to build fork-echo-server");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = build.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = build.kill();
            panic!("building fork-echo-server took over 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "cargo build -p fork-echo-server failed");
    let path = dir.join("fork-echo-server");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Distinct source IPs seen by a server, in order of first appearance.
pub fn distinct_ips(peers: &[SocketAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for p in peers {
        if !ips.contains(&p.ip()) {
            ips.push(p.ip());
        }
    }
    ips
}

/// Starts the `loadgen` binary with `args`, its output piped; with `nofile`, under that
/// descriptor limit (soft and hard).
pub fn spawn_loadgen(args: &[&str], nofile: Option<u64>) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("loadgen"));
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe and only touches the child's own limits.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    cmd.spawn().unwrap()
}

/// Waits until `server` has echoed at least `bytes` in all (30 s at most).
pub fn wait_for_echoed(server: &TestServer, bytes: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.echoed.load(std::sync::atomic::Ordering::SeqCst) < bytes {
        assert!(
            std::time::Instant::now() < deadline,
            "never echoed {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
