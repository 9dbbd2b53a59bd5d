//! Why a session ended early, and how each cause is counted in the report.

use std::io;

use crate::report::Mismatch;
use crate::session::stats::ShardStats;

/// Why a session ended early.
#[derive(Debug)]
pub(crate) enum Failure {
    Mismatch(Mismatch),
    ShortEcho,
    ClosedEarly,
    EchoTimeout,
    Reset(String),
    Other(String),
    RunDeadline,
}

impl Failure {
    pub fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Failure::Reset(e.to_string())
            }
            io::ErrorKind::BrokenPipe => Failure::ClosedEarly,
            io::ErrorKind::TimedOut => Failure::EchoTimeout,
            _ => Failure::Other(e.to_string()),
        }
    }

    pub fn record(&self, shard: &mut ShardStats) {
        let s = &mut shard.errors.session;
        let (kind, example) = match self {
            Failure::Mismatch(m) => {
                s.mismatch += 1;
                shard.note_mismatch(m.clone());
                ("mismatch", m.to_string())
            }
            Failure::ShortEcho => {
                s.short_echo += 1;
                (
                    "short_echo",
                    "server closed in the middle of an echo".into(),
                )
            }
            Failure::ClosedEarly => {
                s.closed_early += 1;
                ("closed_early", "server closed while echoes were due".into())
            }
            Failure::EchoTimeout => {
                s.echo_timeout += 1;
                ("echo_timeout", "no echo within --io-timeout".into())
            }
            Failure::Reset(e) => {
                s.reset += 1;
                ("reset", e.clone())
            }
            Failure::Other(e) => {
                s.other += 1;
                ("other", e.clone())
            }
            Failure::RunDeadline => {
                s.run_deadline += 1;
                (
                    "run_deadline",
                    "outstanding at the hard run deadline".into(),
                )
            }
        };
        shard
            .errors
            .examples
            .entry(format!("session.{kind}"))
            .or_insert(example);
    }
}

/// Why a driver of a steady plan (`blocking`, `uring`) stopped before its plan was over.
pub(crate) enum Halt {
    Failed(Failure),
    /// The runner set `RunShared::stop`: the `Ending` guard counts the session by its cause.
    Stopped,
}
