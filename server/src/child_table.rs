//! The parent's table of live children and the reaper. Reaping is a `waitpid(-1, WNOHANG)` loop:
//! SIGCHLDs coalesce, so one signal may stand for many exited children, and the loop collects
//! every one of them; a child that is never collected stays a zombie.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::log;
use crate::session::SessionEnd;
use crate::stats::Stats;

struct ChildInfo {
    peer: Option<SocketAddr>,
    started: Instant,
}

pub struct ChildTable {
    /// Only the pids: the table is part of the memory every `fork` copies page-table entries
    /// for, so it stays as small as it can (4 bytes per child, not 56).
    live: HashSet<Pid>,
    /// Peer and start time per child, kept only when `-v` logs them at reap time.
    details: Option<HashMap<Pid, ChildInfo>>,
}

impl ChildTable {
    /// `keep_details`: remember each child's peer and start time for the reap log line.
    pub fn new(keep_details: bool) -> ChildTable {
        ChildTable {
            live: HashSet::new(),
            details: keep_details.then(HashMap::new),
        }
    }

    pub fn insert(&mut self, pid: Pid, peer: Option<SocketAddr>, stats: &mut Stats) {
        self.live.insert(pid);
        if let Some(details) = self.details.as_mut() {
            details.insert(
                pid,
                ChildInfo {
                    peer,
                    started: Instant::now(),
                },
            );
        }
        stats.forked += 1;
        stats.live = self.live.len() as u64;
        stats.peak_live = stats.peak_live.max(stats.live);
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Collects every exited child without blocking.
    pub fn reap_children(&mut self, stats: &mut Stats) {
        self.reap(Some(WaitPidFlag::WNOHANG), stats);
    }

    /// Waits for every remaining child; only used after they were sent SIGKILL.
    pub fn reap_all_blocking(&mut self, stats: &mut Stats) {
        self.reap(None, stats);
    }

    fn reap(&mut self, flags: Option<WaitPidFlag>, stats: &mut Stats) {
        loop {
            let (pid, end) = match waitpid(Pid::from_raw(-1), flags) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(WaitStatus::Exited(pid, code)) => (pid, SessionEnd::from_exit_code(code)),
                Ok(WaitStatus::Signaled(pid, _, _)) => (pid, Some(SessionEnd::Signaled)),
                // Stopped/continued children are still alive; nothing to collect.
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                // ECHILD: no children left at all.
                Err(_) => break,
            };
            self.live.remove(&pid);
            if let Some(info) = self.details.as_mut().and_then(|d| d.remove(&pid)) {
                crate::log_at!(
                    log::DEBUG,
                    "reaped child {pid} ({}) after {:.3}s: {}",
                    info.peer.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    info.started.elapsed().as_secs_f64(),
                    end.map_or_else(|| "unknown exit code".to_owned(), |e| format!("{e:?}"))
                );
            }
            stats.record_reaped(end);
        }
        stats.live = self.live.len() as u64;
    }

    /// Sends a signal to every live child; a child that already exited (ESRCH) is reaped later.
    pub fn signal_all(&self, signal: Signal) {
        for pid in &self.live {
            let _ = kill(*pid, signal);
        }
    }
}
