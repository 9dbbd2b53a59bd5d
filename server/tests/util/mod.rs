//! Test helpers: spawn the real `fork-echo-server` binary on port 0, read its address from the
//! first stdout line, collect its stderr, look at its children in /proc, and wait for conditions
//! with deadlines instead of sleeping.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Tests that count child processes or descriptors hold this, so no other forking test of this
/// binary runs beside them.
static FORK_LOCK: Mutex<()> = Mutex::new(());

pub fn fork_lock() -> MutexGuard<'static, ()> {
    FORK_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_with(args, |_| {})
    }

    pub fn start_with(args: &[&str], customize: impl FnOnce(&mut Command)) -> ServerProcess {
        Self::spawn(args, customize, StderrTo::Collected)
    }

    /// A server whose stderr pipe has no reader left (what a killed harness leaves behind):
    /// every log write gets EPIPE.
    pub fn start_with_stderr_closed(args: &[&str]) -> ServerProcess {
        Self::spawn(args, |_| {}, StderrTo::ClosedPipe)
    }

    /// A server started the way systemd's socket activation starts one: `listener` becomes its
    /// fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` is its own pid (a shell sets it to `$$` and execs).
    pub fn start_socket_activated(
        listener: &std::net::TcpListener,
        listen_pid: Option<&str>,
        args: &[&str],
    ) -> ServerProcess {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = listener.as_raw_fd();
        let pid = listen_pid.unwrap_or("$$");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("LISTEN_PID={pid} LISTEN_FDS=1 exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_fork-echo-server"))
            .args(["--port", "0"])
            .args(args);
        // SAFETY: dup2 and fcntl are async-signal-safe and touch only the child being spawned.
        unsafe {
            command.pre_exec(move || {
                if fd == 3 {
                    // dup2 onto itself would keep close-on-exec set.
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::from_command(command, StderrTo::Collected)
    }

    /// Starts the server as `uid`. The test binary may live in a directory that uid cannot enter
    /// (a clone under `/root` or in a `0700` directory made by `mktemp -d`), so the server binary
    /// is copied into a fresh world-readable directory first; it is removed once `exec` is done.
    pub fn start_as_uid(
        uid: u32,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> ServerProcess {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir =
            std::env::temp_dir().join(format!("fork-echo-server-uid{uid}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a directory for the copied server");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = dir.join("fork-echo-server");
        std::fs::copy(env!("CARGO_BIN_EXE_fork-echo-server"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let server = Self::spawn_program(
            binary.to_str().unwrap(),
            args,
            |command| {
                customize(command);
                command.uid(uid).current_dir("/");
            },
            StderrTo::Collected,
        );
        let _ = std::fs::remove_dir_all(&dir);
        server
    }

    fn spawn(
        args: &[&str],
        customize: impl FnOnce(&mut Command),
        stderr_to: StderrTo,
    ) -> ServerProcess {
        Self::spawn_program(
            env!("CARGO_BIN_EXE_fork-echo-server"),
            args,
            customize,
            stderr_to,
        )
    }

    fn spawn_program(
        program: &str,
        args: &[&str],
        customize: impl FnOnce(&mut Command),
        stderr_to: StderrTo,
    ) -> ServerProcess {
        let mut command = Command::new(program);
        command.args(["--port", "0"]).args(args);
        customize(&mut command);
        Self::from_command(command, stderr_to)
    }

    fn from_command(mut command: Command, stderr_to: StderrTo) -> ServerProcess {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn fork-echo-server");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr pipe");
        match stderr_to {
            StderrTo::Collected => {
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        sink.lock().unwrap().push(line);
                    }
                });
            }
            StderrTo::ClosedPipe => drop(pipe),
        }
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout pipe"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the listening line");
        let addr = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line was {first:?}"))
            .parse()
            .expect("address in the listening line");
        ServerProcess {
            child,
            addr,
            stderr,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the server");
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Direct children of the server, from /proc.
    pub fn children(&self) -> Vec<ProcEntry> {
        children_of(self.child.id() as i32)
    }

    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("read the server's fd dir")
            .count()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGUSR1 and waits for the next stats line.
    pub fn stats(&self) -> serde_json::Value {
        let before = self.stats_lines().len();
        self.signal(Signal::SIGUSR1);
        wait_until("a stats line after SIGUSR1", || {
            self.stats_lines().len() > before
        });
        self.stats_lines().pop().unwrap()
    }

    pub fn stats_lines(&self) -> Vec<serde_json::Value> {
        self.stderr_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|value| value["event"] == "stats")
            .collect()
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the stderr reader catch up with the last lines.
                wait_until("stderr to close", || {
                    std::fs::metadata(format!("/proc/{}", self.child.id())).is_err()
                });
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

enum StderrTo {
    Collected,
    ClosedPipe,
}

/// Runs the binary with `--port 0` and `args`, expecting it to exit by itself within `within`;
/// a server that starts serving instead is killed and the test fails.
pub fn run_to_exit(args: &[&str], within: Duration) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fork-echo-server"));
    command.args(["--port", "0"]).args(args);
    output_within(command, within)
}

/// Runs `command` to its exit and returns its output; one still running after `within` is
/// killed and the test fails.
pub fn output_within(mut command: Command, within: Duration) -> std::process::Output {
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fork-echo-server");
    let pid = Pid::from_raw(child.id() as i32);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(within).is_err() {
        let _ = kill(pid, Signal::SIGKILL);
        let output = waiter.join().unwrap().unwrap();
        panic!(
            "{args:?} did not exit within {within:?}; stdout: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    waiter.join().unwrap().expect("wait for fork-echo-server")
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Children die with the parent through PR_SET_PDEATHSIG.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
}

pub fn proc_entry(pid: i32) -> Option<ProcEntry> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcEntry { pid, ppid, state })
}

/// The nice value of a process (field 19 of /proc/PID/stat).
pub fn nice_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    rest.split(' ')
        .nth(16)
        .and_then(|field| field.parse().ok())
        .expect("nice field in /proc/PID/stat")
}

pub fn children_of(parent: i32) -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_entry)
        .filter(|entry| entry.ppid == parent)
        .collect()
}

/// A process is gone when /proc no longer has it or it is a zombie of some other parent (an
/// orphan reparented to an init that has not reaped it yet has still exited).
pub fn has_exited(pid: i32) -> bool {
    proc_entry(pid).is_none_or(|entry| entry.state == 'Z')
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes `payload`, reads exactly as many bytes back, and returns them.
pub fn echo(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    stream.write_all(payload).expect("write");
    let mut back = vec![0; payload.len()];
    stream.read_exact(&mut back).expect("read the echo");
    back
}

/// Reads until EOF and returns everything read.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read to EOF");
    all
}
