//! Why a server could not be started: every one of these is a setup error (exit 2).

use std::path::PathBuf;

/// Why a server could not be started; all of these are setup errors (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("server binary {0} not found")]
    NotFound(PathBuf),
    #[error("server binary {0} is not an executable file")]
    NotExecutable(PathBuf),
    #[error("--server-cmd is empty")]
    EmptyCommand,
    #[error("--server-cmd {0:?} has no {{port}} placeholder")]
    NoPortPlaceholder(String),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the server ({program}) exited ({status}) before it was ready{stderr}")]
    ExitedEarly {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} printed {line:?} instead of `listening on IP:PORT`")]
    BadListeningLine { program: String, line: String },
    #[error("{program} was not ready within {secs:.1}s")]
    NotReady { program: String, secs: f64 },
    #[error("cannot find a free port: {0}")]
    NoFreePort(std::io::Error),
}
