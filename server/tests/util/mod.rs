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
        let mut command = Command::new(env!("CARGO_BIN_EXE_fork-echo-server"));
        command
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        customize(&mut command);
        let mut child = command.spawn().expect("spawn fork-echo-server");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr pipe");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
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
