//! The parent's table of live children and the reaper. Reaping is a `waitpid(-1, WNOHANG)` loop:
//! SIGCHLDs coalesce, so one signal may stand for many exited children, and the loop collects
//! every one of them; a child that is never collected stays a zombie.
//!
//! Layers it may import: `limits`, `log`, `metrics`, `pid_set`, `session`, `stats`.
//! Crates it may import: `nix`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::limits::SourceKey;
use crate::log;
use crate::metrics::durations::SessionDurations;
use crate::pid_set::PidSet;
use crate::session::SessionEnd;
use crate::stats::Stats;

struct ChildInfo {
    peer: Option<SocketAddr>,
    started: Instant,
}

pub struct ChildTable {
    /// Only the pids, in memory no child inherits (see `PidSet`): the parent writes it after
    /// every fork and reap without touching a page it shares with a child.
    live: PidSet,
    /// Peer and start time per child, kept only when `-v` logs them at reap time or
    /// `--max-per-source` needs each child's source when it is reaped.
    details: Option<HashMap<Pid, ChildInfo>>,
    /// Live sessions per source, for `--max-per-source`; kept in step with `live` by `insert`
    /// and `remove`, and without zero entries so it does not grow with every address ever seen.
    per_source: HashMap<SourceKey, u32>,
    /// Whether `per_source` is kept at all. Without `--max-per-source` it is not: every page the
    /// parent writes between two forks stays a private copy in the child forked before, so each
    /// needless write per fork costs up to a page of memory per live child.
    count_sources: bool,
    /// Session durations (fork to reap) for the metrics; `None` unless they are exported, so a
    /// parent without metrics writes nothing more per fork.
    durations: Option<SessionDurations>,
}

impl ChildTable {
    /// `keep_details`: remember each child's peer and start time for the reap log line;
    /// `count_sources`: count live sessions per source (implies keeping the peer).
    pub fn new(keep_details: bool, count_sources: bool) -> io::Result<ChildTable> {
        Ok(ChildTable {
            live: PidSet::new()?,
            details: (keep_details || count_sources).then(HashMap::new),
            per_source: HashMap::new(),
            count_sources,
            durations: None,
        })
    }

    /// Makes room for `additional` more children, so that `insert` after a fork never needs
    /// memory it might not get.
    pub fn reserve(&mut self, additional: usize) -> io::Result<()> {
        self.live.reserve(additional)
    }

    /// Whether each child's peer is kept (`-v`, `--max-per-source`, or the metrics' session
    /// durations), i.e. whether `insert` writes the heap, which every child shares copy-on-write.
    pub fn keeps_details(&self) -> bool {
        self.details.is_some()
    }

    /// Keeps each child's fork time (in the details) and counts session durations at reap.
    pub fn measure_durations(&mut self) {
        self.details.get_or_insert_with(HashMap::new);
        self.durations = Some(SessionDurations::default());
    }

    /// The session durations, when measured.
    pub fn durations(&self) -> Option<&SessionDurations> {
        self.durations.as_ref()
    }

    pub fn insert(&mut self, pid: Pid, peer: Option<SocketAddr>, stats: &mut Stats) {
        if let (true, Some(peer)) = (self.count_sources, peer) {
            *self.per_source.entry(SourceKey::of(peer.ip())).or_insert(0) += 1;
        }
        if !self.live.insert(pid) {
            crate::log_at!(
                log::INFO,
                "child {pid} could not be recorded (out of memory)"
            );
        }
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

    /// Live sessions from the same source as `peer` (see `SourceKey`); always 0 unless the
    /// table counts sources.
    pub fn live_from(&self, peer: SocketAddr) -> u32 {
        self.per_source
            .get(&SourceKey::of(peer.ip()))
            .copied()
            .unwrap_or(0)
    }

    /// Takes `pid` out of the table; its details when they are kept.
    fn remove(&mut self, pid: Pid) -> Option<ChildInfo> {
        self.live.remove(pid);
        let info = self.details.as_mut()?.remove(&pid)?;
        if let (true, Some(peer)) = (self.count_sources, info.peer) {
            let key = SourceKey::of(peer.ip());
            if let Some(count) = self.per_source.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.per_source.remove(&key);
                }
            }
        }
        Some(info)
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
        stats.reap_passes += 1;
        loop {
            let (pid, end) = match waitpid(Pid::from_raw(-1), flags) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(WaitStatus::Exited(pid, code)) => (pid, SessionEnd::from_exit_code(code)),
                Ok(WaitStatus::Signaled(pid, _, _)) => (pid, Some(SessionEnd::Signaled)),
                // Stopped/continued children are still alive; nothing to collect.
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                // No children left at all, yet the table lists some: someone else collected
                // them (an ignored SIGCHLD makes the kernel do it). Their pids may be reused by
                // now, so they must leave the table before anything signals them.
                Err(Errno::ECHILD) => {
                    self.forget_vanished(stats);
                    break;
                }
                Err(_) => break,
            };
            if let Some(info) = self.remove(pid) {
                crate::log_at!(
                    log::DEBUG,
                    "reaped child {pid} ({}) after {:.3}s: {}",
                    info.peer.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    info.started.elapsed().as_secs_f64(),
                    end.map_or_else(|| "unknown exit code".to_owned(), |e| format!("{e:?}"))
                );
                if let Some(durations) = self.durations.as_mut() {
                    durations.observe(info.started.elapsed());
                }
            }
            stats.record_reaped(end);
        }
        stats.live = self.live.len() as u64;
    }

    fn forget_vanished(&mut self, stats: &mut Stats) {
        if self.live.is_empty() {
            return;
        }
        crate::log_at!(
            log::INFO,
            "{} vanished without an exit status (was SIGCHLD ignored?)",
            log::count(self.live.len(), "child", "children")
        );
        for _ in 0..self.live.len() {
            stats.record_reaped(None);
        }
        self.live.clear();
        if let Some(details) = self.details.as_mut() {
            details.clear();
        }
        self.per_source.clear();
    }

    /// Sends a signal to every live child and returns how many were signalled. Each pid is first
    /// confirmed to be an unreaped child of this process (`waitid` with `WNOWAIT` collects
    /// nothing), so a stale entry can never hit an unrelated process that reused the pid; a
    /// zombie's pid is not reused until it is reaped.
    pub fn signal_all(&self, signal: Signal) -> usize {
        let mut signalled = 0;
        for pid in self.live.iter() {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            if waitid(Id::Pid(pid), flags).is_ok() && kill(pid, signal).is_ok() {
                signalled += 1;
            }
        }
        signalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_that_is_not_our_child_is_never_signalled_and_leaves_the_table() {
        // This test process has no children, so any pid is a stale entry; our own pid stands
        // for "a process that reused it". SIGCONT keeps the test harmless if this regresses.
        let mut stats = Stats::new();
        let mut table = ChildTable::new(false, false).unwrap();
        table.insert(nix::unistd::getpid(), None, &mut stats);
        assert_eq!(table.signal_all(Signal::SIGCONT), 0);
        table.reap_children(&mut stats);
        assert!(table.is_empty());
        assert_eq!(stats.reaped.other, 1);
        assert_eq!(stats.live, 0);
    }
}
