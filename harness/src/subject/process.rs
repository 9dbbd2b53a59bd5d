//! The server under test as a process: starting it in its own session and process group, knowing
//! when it is ready (its listening line, or a connect for `--server-cmd`), stopping it with SIGTERM
//! (SIGKILL to the group after a grace period), finding what it left behind, and killing whatever
//! is left of its process group when the handle is dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::ServerError;
use super::spec::ServerSpec;
use super::stderr::StderrLog;
use crate::report::parts::{ExitSummary, Leftovers, ServerEnd, ServerStats};
use crate::sys::procfs;

/// How long a server may take to print its listening line (or accept a connect).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to stop after SIGTERM before the group is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// A started server. Its session and process group id equal its pid; dropping the handle kills
/// the whole group (and any session member that moved to another group), so a failed test or an
/// interrupted harness never leaves a server or its children behind.
pub struct ServerProcess {
    child: Child,
    pid: i32,
    addr: SocketAddr,
    program: String,
    /// Filled by the stderr reader thread until the server closes its stderr.
    stderr: StderrLog,
    exit: Option<ExitSummary>,
    /// Whether it speaks the contract (and so prints a stats line at exit).
    contract: bool,
    /// Only `kill_all` reaps the server, after signalling its group: until then its pid cannot
    /// be reused, so the group and session ids keep naming this server's processes.
    reaped: bool,
}

impl ServerProcess {
    /// Starts `spec` and waits (at most `ready_timeout`) until it accepts connections.
    pub fn spawn(spec: &ServerSpec, ready_timeout: Duration) -> Result<ServerProcess, ServerError> {
        match spec {
            ServerSpec::Contract {
                program,
                pre_args,
                flags,
                ..
            } => {
                let mut cmd = Command::new(program);
                cmd.args(pre_args).args(flags);
                Self::spawn_contract(cmd, program.display().to_string(), ready_timeout)
            }
            ServerSpec::Command { argv } => {
                let port = free_port()?;
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| a.replace("{port}", &port.to_string()))
                    .collect();
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                Self::spawn_command(cmd, argv[0].clone(), addr, ready_timeout)
            }
        }
    }

    fn start(mut cmd: Command, program: &str) -> Result<(Child, StderrLog), ServerError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own session and process group, so signals to the harness's terminal group (Ctrl-C)
        // do not reach it and the whole tree can be killed at once. PR_SET_PDEATHSIG asks for a
        // SIGTERM if the harness dies without running `Drop` (killed, or Ctrl-C): the server then
        // shuts down the way it would for a user. It fires when the spawning *thread* exits, so
        // servers are spawned from the thread that owns the handle (the main thread here).
        let harness_pid = std::process::id() as libc::pid_t;
        // SAFETY: setsid, prctl and getppid are async-signal-safe and touch no memory of this process.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness may have died between fork and prctl.
                if libc::getppid() != harness_pid {
                    return Err(std::io::Error::other(
                        "the harness exited while starting the server",
                    ));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ServerError::NotFound(program.into()),
            std::io::ErrorKind::PermissionDenied => ServerError::NotExecutable(program.into()),
            _ => ServerError::Spawn {
                program: program.into(),
                source: e,
            },
        })?;
        let log = StderrLog::follow(child.stderr.take());
        Ok((child, log))
    }

    fn spawn_contract(
        cmd: Command,
        program: String,
        ready_timeout: Duration,
    ) -> Result<ServerProcess, ServerError> {
        let (mut child, stderr) = Self::start(cmd, &program)?;
        let pid = child.id() as i32;
        let (line_tx, line_rx) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            // Reads the listening line, then keeps draining stdout so the server never blocks on it.
            let _ = std::thread::Builder::new()
                .name("server-stdout".into())
                .spawn(move || {
                    let mut lines = BufReader::new(stdout).lines();
                    if let Some(Ok(first)) = lines.next() {
                        let _ = line_tx.send(first);
                    }
                    for line in lines {
                        if line.is_err() {
                            break;
                        }
                    }
                });
        }
        let server = ServerProcess {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            program,
            stderr,
            exit: None,
            contract: true,
            reaped: false,
        };
        server.wait_until_ready(ready_timeout, |server| {
            match line_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let addr = line
                        .strip_prefix("listening on ")
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok());
                    Some(match addr {
                        Some(addr) => {
                            server.addr = addr;
                            Ok(())
                        }
                        None => Err(ServerError::BadListeningLine {
                            program: server.program.clone(),
                            line,
                        }),
                    })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed without a line: wait for the exit (or the deadline) calmly.
                    std::thread::sleep(Duration::from_millis(20));
                    None
                }
            }
        })
    }

    fn spawn_command(
        cmd: Command,
        program: String,
        addr: SocketAddr,
        ready_timeout: Duration,
    ) -> Result<ServerProcess, ServerError> {
        let (child, stderr) = Self::start(cmd, &program)?;
        let pid = child.id() as i32;
        let mut server = ServerProcess {
            child,
            pid,
            addr,
            program,
            stderr,
            exit: None,
            contract: false,
            reaped: false,
        };
        // Drain stdout so a chatty server never blocks on a full pipe.
        if let Some(stdout) = server.child.stdout.take() {
            let _ = std::thread::Builder::new()
                .name("server-stdout".into())
                .spawn(move || {
                    let _ = std::io::copy(&mut BufReader::new(stdout), &mut std::io::sink());
                });
        }
        server.wait_until_ready(ready_timeout, |_| {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(Ok(()));
            }
            std::thread::sleep(Duration::from_millis(20));
            None
        })
    }

    /// Asks `ready` (which does its own waiting between tries) until it answers; fails at once if
    /// the process exits first, and with `NotReady` once `ready_timeout` has passed. On failure
    /// the dropped handle kills what was started.
    fn wait_until_ready(
        mut self,
        ready_timeout: Duration,
        mut ready: impl FnMut(&mut ServerProcess) -> Option<Result<(), ServerError>>,
    ) -> Result<ServerProcess, ServerError> {
        let deadline = Instant::now() + ready_timeout;
        loop {
            if let Some(answer) = ready(&mut self) {
                return answer.map(|()| self);
            }
            if let Some(err) = self.exited_early()? {
                return Err(err);
            }
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady {
                    program: self.program.clone(),
                    secs: ready_timeout.as_secs_f64(),
                });
            }
        }
    }

    /// `Some(error)` if the process already exited during start-up.
    fn exited_early(&mut self) -> Result<Option<ServerError>, ServerError> {
        match self.peek_exit() {
            Ok(Some(exit)) => {
                self.exit = Some(exit.clone());
                // Give the stderr thread a moment to read everything the server printed (until
                // it closes stderr), so the reason is its error line, not a trailing hint.
                let deadline = Instant::now() + Duration::from_millis(500);
                while Instant::now() < deadline && !self.stderr.closed() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let lines = self.recent_stderr();
                let reason = super::stderr::reason_line(&lines);
                Ok(Some(ServerError::ExitedEarly {
                    program: self.program.clone(),
                    status: exit.to_string(),
                    stderr: reason.map_or(String::new(), |l| format!("; the server said: {l}")),
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ServerError::Spawn {
                program: self.program.clone(),
                source: e.into(),
            }),
        }
    }

    /// How the server exited, without reaping it: until `Drop` reaps it, its pid (which is also
    /// its process group and session id) cannot be reused, so signalling the group stays safe.
    fn peek_exit(&self) -> nix::Result<Option<ExitSummary>> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        Ok(match waitid(Id::Pid(Pid::from_raw(self.pid)), flags)? {
            WaitStatus::Exited(_, code) => Some(ExitSummary {
                code: Some(code),
                signal: None,
            }),
            WaitStatus::Signaled(_, signal, _) => Some(ExitSummary {
                code: None,
                signal: Some(signal as i32),
            }),
            _ => None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last human stderr lines.
    pub fn recent_stderr(&self) -> Vec<String> {
        self.stderr.recent()
    }

    /// The most recent stats line seen.
    pub fn last_stats(&self) -> Option<ServerStats> {
        self.stderr.last_stats()
    }

    fn stats_count(&self) -> usize {
        self.stderr.stats_count()
    }

    /// `Some` once the process has exited (it stays unreaped until the handle is dropped).
    pub fn try_exit(&mut self) -> Option<ExitSummary> {
        if self.exit.is_none() {
            if let Ok(Some(exit)) = self.peek_exit() {
                self.exit = Some(exit);
            }
        }
        self.exit.clone()
    }

    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid), signal)
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitSummary> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_exit() {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then up to `grace` for it to exit; SIGKILL to the whole group after that.
    /// Returns how it exited and whether it needed the SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> (ExitSummary, bool) {
        let _ = self.signal(Signal::SIGTERM);
        if let Some(exit) = self.wait_exit(grace) {
            return (exit, false);
        }
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        let exit = self
            .wait_exit(Duration::from_secs(5))
            .unwrap_or(ExitSummary {
                code: None,
                signal: None,
            });
        (exit, true)
    }

    /// Stops the server with SIGTERM (SIGKILL to the group after `grace`), waits up to 3 s for its
    /// session to empty, and collects the stats line it printed at exit.
    pub fn shut_down(&mut self, grace: Duration) -> ServerEnd {
        let stats_before = self.stats_count();
        let (exit, needed_sigkill) = self.stop(grace);
        let leftovers = self.leftovers(Duration::from_secs(3));
        // The exit stats line may still be in the pipe; give the reader a moment for it.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.contract && self.stats_count() == stats_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let final_stats = if self.stats_count() > stats_before {
            self.last_stats()
        } else {
            None
        };
        ServerEnd {
            exit,
            needed_sigkill,
            leftovers,
            final_stats,
        }
    }

    /// After the server exited: waits up to `timeout` for the processes of its session and group to
    /// be gone, and returns what is still there.
    pub fn leftovers(&self, timeout: Duration) -> Leftovers {
        let deadline = Instant::now() + timeout;
        loop {
            let mut left = Leftovers::default();
            for p in procfs::session_members(self.pid, Some(self.pid)).unwrap_or_default() {
                if p.is_zombie() {
                    left.unreaped.push(p.pid);
                } else {
                    left.orphans.push(p.pid);
                }
            }
            if left.orphans.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to the process group and to any session member outside it, then reaps the server.
    pub fn kill_all(&mut self) {
        // The server is not reaped before this point, so its pid still names its group and session.
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        for p in procfs::session_members(self.pid, Some(self.pid)).unwrap_or_default() {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
        if !self.reaped {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.reaped = true;
                if self.exit.is_none() {
                    self.exit = Some(exit_summary(status));
                }
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A port that was free a moment ago (the kernel picks it; the small race is accepted).
fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(ServerError::NoFreePort)?;
    Ok(listener
        .local_addr()
        .map_err(ServerError::NoFreePort)?
        .port())
}

/// How a reaped server ended.
fn exit_summary(status: ExitStatus) -> ExitSummary {
    ExitSummary {
        code: status.code(),
        signal: status.signal(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_server_that_never_listens_is_not_ready_and_is_killed() {
        let spec = ServerSpec::command("sleep 31.5 {port}").expect("spec");
        let started = Instant::now();
        let err = match ServerProcess::spawn(&spec, Duration::from_millis(300)) {
            Err(e) => e,
            Ok(_) => panic!("sleep is no server"),
        };
        assert!(matches!(err, ServerError::NotReady { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let me = std::process::id() as i32;
        let left: Vec<i32> = procfs::children_of(me)
            .expect("proc")
            .into_iter()
            .filter(|p| !p.is_zombie())
            .filter(|p| {
                std::fs::read(format!("/proc/{}/cmdline", p.pid))
                    .is_ok_and(|c| c.windows(4).any(|w| w == b"31.5"))
            })
            .map(|p| p.pid)
            .collect();
        assert!(left.is_empty(), "not killed: {left:?}");
    }

    #[test]
    fn a_contract_server_that_exits_says_why() {
        let spec = ServerSpec::binary(Path::new("/bin/sh"), &[]).expect("spec");
        // `sh --port 0` fails at once with a message on stderr.
        let err = match ServerProcess::spawn(&spec, Duration::from_secs(5)) {
            Err(e) => e,
            Ok(_) => panic!("sh is no server"),
        };
        let text = err.to_string();
        assert!(
            text.starts_with(
                "the server (/bin/sh) exited (exit code 2) before it was ready; the server said: "
            ),
            "{text}"
        );
    }
}
