//! Counters of the parent process. The serde struct is the stats line's format: the harness and
//! tests parse the JSON line printed on SIGUSR1 and at exit.
//!
//! Layers it may import: `log`, `session`.
//! Crates it may import: `serde`, `serde_json`.

use serde::{Deserialize, Serialize};

use crate::session::SessionEnd;

/// Children reaped, by why they ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapedByReason {
    pub eof: u64,
    pub reset: u64,
    pub idle_timeout: u64,
    pub io_error: u64,
    pub panic: u64,
    pub orphaned: u64,
    /// Killed by a signal (shutdown escalation, OOM killer, an operator).
    pub signaled: u64,
    /// An exit code this server never uses, or a child that vanished without an exit status.
    pub other: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Always `"stats"`, so a log reader can pick the line out of stderr. Optional when read
    /// back, so reports that embed the counters without it still parse.
    #[serde(default)]
    pub event: String,
    pub accepted: u64,
    pub forked: u64,
    pub fork_failures: u64,
    pub live: u64,
    pub peak_live: u64,
    /// `--at-limit wait`: times accepting paused at the limit; `close`: clients closed at once.
    pub limit_hits: u64,
    /// Times accepting paused because the process or system ran out of descriptors.
    pub emfile_pauses: u64,
    /// Clients closed at once because their source had `--max-per-source` sessions live.
    #[serde(default)]
    pub per_source_refused: u64,
    /// Times accepting paused for `--max-rate` (connects wait in the backlog meanwhile).
    #[serde(default)]
    pub rate_limited: u64,
    pub reaped: ReapedByReason,
    /// Scans of the child list for exited children (`waitpid` loops). The kernel visits every
    /// live child in each, so this against `reaped` shows what reaping costs the parent: one
    /// pass per SIGCHLD read with few children live, fewer when many are (see `ReapPacing`).
    /// Defaults to 0 when read from a server that predates it.
    #[serde(default)]
    pub reap_passes: u64,
    /// Log lines the parent could not write to stderr (dropped, not fatal). Defaults to 0 when
    /// read from a server that predates it.
    #[serde(default)]
    pub log_write_failures: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            event: "stats".to_owned(),
            ..Stats::default()
        }
    }

    pub fn record_reaped(&mut self, end: Option<SessionEnd>) {
        let slot = match end {
            Some(SessionEnd::Eof) => &mut self.reaped.eof,
            Some(SessionEnd::Reset) => &mut self.reaped.reset,
            Some(SessionEnd::IdleTimeout) => &mut self.reaped.idle_timeout,
            Some(SessionEnd::IoError) => &mut self.reaped.io_error,
            Some(SessionEnd::Panic) => &mut self.reaped.panic,
            Some(SessionEnd::Orphaned) => &mut self.reaped.orphaned,
            Some(SessionEnd::Signaled) => &mut self.reaped.signaled,
            None => &mut self.reaped.other,
        };
        *slot += 1;
    }

    /// Writes the stats line to stderr, like every log line without ever failing the caller.
    pub fn print(&mut self) {
        self.log_write_failures = crate::log::write_failures();
        crate::log::write_line(format_args!("{}", self.to_json_line()));
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|err| format!("{{\"event\":\"stats\",\"error\":\"{err}\"}}"))
    }
}
