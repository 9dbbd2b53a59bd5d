//! A tiny leveled logger writing to stderr. The server is single-threaded and forks, so a global
//! logging framework with background threads or locks held across `fork` is exactly what it must
//! not have; an atomic level and one `write` per line are enough. A log write that fails (stderr
//! is a pipe whose reader is gone, a full disk) is dropped and counted: logging must never take
//! the server down, which `eprintln!` does by panicking on EPIPE.
//!
//! Layers it may import: none.
//! Crates it may import: none.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Errors only (`-q`).
pub const QUIET: u8 = 0;
/// Start-up, shutdown and problems (the default).
pub const INFO: u8 = 1;
/// Every accept, fork and reap (`-v`).
pub const DEBUG: u8 = 2;
/// Escaped payload previews (`-vv`).
pub const TRACE: u8 = 3;

static LEVEL: AtomicU8 = AtomicU8::new(INFO);
/// `--log-format json`: access-log lines are JSON objects instead of logfmt.
static ACCESS_LOG_JSON: AtomicBool = AtomicBool::new(false);
/// Lines this process could not write. Each child has its own copy after `fork`, so the parent's
/// stats count only the parent's lines.
static WRITE_FAILURES: AtomicU64 = AtomicU64::new(0);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn enabled(level: u8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

pub fn set_access_log_json(json: bool) {
    ACCESS_LOG_JSON.store(json, Ordering::Relaxed);
}

pub fn access_log_json() -> bool {
    ACCESS_LOG_JSON.load(Ordering::Relaxed)
}

/// Logs a line at a level, prefixed with the program name and the pid (children log too).
#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write_line(format_args!(
                "fork-echo-server[{}]: {}",
                std::process::id(),
                format_args!($($arg)*)
            ));
        }
    };
}

/// Lines up to this long are formatted on the stack; longer ones (payload previews at `-vv`) on
/// the heap.
const STACK_LINE: usize = 1024;

/// A line being formatted in a fixed buffer; a write that does not fit fails.
struct StackLine {
    bytes: [u8; STACK_LINE],
    len: usize,
}

impl std::fmt::Write for StackLine {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes one line to stderr in a single `write` (lines of several processes sharing a pipe stay
/// whole up to PIPE_BUF); a failure is counted, never raised. The line is formatted on the stack:
/// a heap allocation writes malloc's pages, and in the parent every heap page written between
/// forks becomes a private copy in the children, in a child a page fault of its own.
pub fn write_line(line: std::fmt::Arguments<'_>) {
    let mut stack = StackLine {
        bytes: [0; STACK_LINE],
        len: 0,
    };
    let result = if std::fmt::Write::write_fmt(&mut stack, format_args!("{line}\n")).is_ok() {
        std::io::stderr()
            .lock()
            .write_all(&stack.bytes[..stack.len])
    } else {
        std::io::stderr()
            .lock()
            .write_all(format!("{line}\n").as_bytes())
    };
    if result.is_err() {
        WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many log lines this process failed to write.
pub fn write_failures() -> u64 {
    WRITE_FAILURES.load(Ordering::Relaxed)
}

/// Lets through one line per `interval` and counts the ones it held back, so a condition that
/// repeats thousands of times a second (EMFILE, fork failures) cannot flood stderr.
pub struct RateLimitedLog {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(interval: std::time::Duration) -> Self {
        RateLimitedLog {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Returns `Some(suppressed_since_last)` when a line may be written now.
    pub fn permit(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// `1 child`, `2 children`: a count with the noun in the right number.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An escaped, bounded preview of payload bytes: safe for binary data, unlike the tutorial's
/// `printf("%s")`, which stops at the first NUL and prints whatever garbage follows.
pub fn payload_preview(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut out: String = shown.escape_ascii().to_string();
    if bytes.len() > max {
        out.push_str(&format!("... (+{} bytes)", bytes.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn preview_escapes_binary_and_truncates() {
        assert_eq!(payload_preview(b"a\0b\xff\n", 64), "a\\x00b\\xff\\n");
        let long = vec![b'x'; 100];
        assert_eq!(
            payload_preview(&long, 64),
            format!("{}... (+36 bytes)", "x".repeat(64))
        );
    }

    #[test]
    fn stack_lines_fill_up_then_refuse() {
        use std::fmt::Write as _;
        let mut line = StackLine {
            bytes: [0; STACK_LINE],
            len: 0,
        };
        write!(line, "{}", "x".repeat(STACK_LINE - 1)).unwrap();
        assert!(write!(line, "yz").is_err());
        write!(line, "y").unwrap();
        assert_eq!(line.len, STACK_LINE);
    }

    #[test]
    fn counts_use_the_right_number() {
        assert_eq!(count(0, "session", "sessions"), "0 sessions");
        assert_eq!(count(1, "child", "children"), "1 child");
        assert_eq!(count(2, "child", "children"), "2 children");
    }

    #[test]
    fn rate_limit_counts_suppressed_lines() {
        let mut limiter = RateLimitedLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(limiter.permit(t0), Some(0));
        assert_eq!(limiter.permit(t0 + Duration::from_millis(10)), None);
        assert_eq!(limiter.permit(t0 + Duration::from_millis(20)), None);
        assert_eq!(limiter.permit(t0 + Duration::from_millis(1001)), Some(2));
    }
}
