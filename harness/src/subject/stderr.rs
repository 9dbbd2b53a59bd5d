//! The server's stderr, read line by line on a thread of its own for as long as the server keeps it
//! open: its JSON stats lines (`{"event":"stats",...}`, on SIGUSR1 and at exit) parsed into the
//! server crate's own struct, and the last human lines kept for error messages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::{Arc, Mutex};

use crate::report::parts::ServerStats;

/// Parses a stats line; `None` for human log lines.
pub fn parse_stats_line(line: &str) -> Option<ServerStats> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if value.get("event")?.as_str()? != "stats" {
        return None;
    }
    serde_json::from_value(value).ok()
}

const RECENT_LINES: usize = 50;

#[derive(Debug, Default)]
struct Lines {
    /// The last few human lines, for error messages.
    recent: VecDeque<String>,
    stats: Vec<ServerStats>,
    /// The server closed its stderr (or it could not be read): no more lines will come.
    closed: bool,
}

/// What the stderr reader thread has seen so far.
#[derive(Debug, Clone, Default)]
pub struct StderrLog {
    /// Shared with the reader thread, which appends until the server closes its stderr; a
    /// poisoned lock reads as empty rather than panicking.
    lines: Arc<Mutex<Lines>>,
}

impl StderrLog {
    /// Starts the reader thread on `stderr` (nothing is read without one).
    pub fn follow(stderr: Option<ChildStderr>) -> StderrLog {
        let log = StderrLog::default();
        if let Some(stderr) = stderr {
            let lines = Arc::clone(&log.lines);
            let _ = std::thread::Builder::new()
                .name("server-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        let Ok(mut log) = lines.lock() else { return };
                        if let Some(stats) = parse_stats_line(&line) {
                            log.stats.push(stats);
                        } else {
                            if log.recent.len() == RECENT_LINES {
                                log.recent.pop_front();
                            }
                            log.recent.push_back(line);
                        }
                    }
                    if let Ok(mut log) = lines.lock() {
                        log.closed = true;
                    }
                });
        }
        log
    }

    /// The last human lines.
    pub fn recent(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the server closed its stderr, so [`StderrLog::recent`] is complete.
    pub fn closed(&self) -> bool {
        self.lines.lock().map(|l| l.closed).unwrap_or(true)
    }

    /// The most recent stats line seen.
    pub fn last_stats(&self) -> Option<ServerStats> {
        self.lines.lock().ok().and_then(|l| l.stats.last().cloned())
    }

    /// How many stats lines have been seen.
    pub fn stats_count(&self) -> usize {
        self.lines.lock().map(|l| l.stats.len()).unwrap_or(0)
    }
}

/// The line that says why a server gave up: its first `error` line (clap and most tools print
/// `error: ...` first and a `For more information, try '--help'.` hint last), else its last
/// non-blank line.
pub fn reason_line(lines: &[String]) -> Option<&str> {
    let blank = |l: &&String| l.trim().is_empty();
    lines
        .iter()
        .find(|l| {
            let l = l.trim_start().to_ascii_lowercase();
            l.starts_with("error") || l.contains(" error:") || l.contains(": error")
        })
        .or_else(|| lines.iter().rev().find(|l| !blank(l)))
        .map(|l| l.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_error_line_not_the_help_hint() {
        let clap: Vec<String> = [
            "error: invalid value '99999' for '--port <PORT>': 99999 is not in 0..=65535",
            "",
            "For more information, try '--help'.",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            reason_line(&clap),
            Some("error: invalid value '99999' for '--port <PORT>': 99999 is not in 0..=65535")
        );
        let plain: Vec<String> = ["starting", "cannot bind: in use", ""]
            .map(String::from)
            .to_vec();
        assert_eq!(reason_line(&plain), Some("cannot bind: in use"));
        assert_eq!(reason_line(&[]), None);
    }

    #[test]
    fn stats_lines_parse_and_log_lines_do_not() {
        let line = r#"{"event":"stats","accepted":3,"forked":3,"fork_failures":0,"live":1,"peak_live":2,"limit_hits":0,"emfile_pauses":0,"reaped":{"eof":1,"reset":1,"idle_timeout":0,"io_error":0,"panic":0,"orphaned":0,"signaled":0,"other":0}}"#;
        let stats = parse_stats_line(line).expect("stats");
        assert_eq!((stats.accepted, stats.live, stats.reaped.reset), (3, 1, 1));
        assert!(parse_stats_line("listening on 127.0.0.1:1").is_none());
        assert!(parse_stats_line(r#"{"event":"other"}"#).is_none());
    }
}
