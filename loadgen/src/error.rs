//! Setup errors: everything that stops a run before or outside the measurement. The CLI maps
//! each of them to exit code 2 with its one-line message.
//!
//! A leaf.
//!
//! Layers it may import: none.
//! Crates it may import: `thiserror`.

use std::path::PathBuf;

/// Why a run could not be set up (or a report could not be read/written).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is inconsistent (e.g. `--size 0`, both `--duration` and `--messages`).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The target could not be resolved to an address.
    #[error("cannot resolve {target}: {reason}")]
    Resolve { target: String, reason: String },
    /// A process or system limit makes the requested load impossible; the message names the fix.
    #[error("{0}")]
    Limit(String),
    /// The tokio runtime could not be built.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// A report or histogram file could not be read or written.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// Reports that cannot be merged (none given, different schema versions, corrupt histograms).
    #[error("cannot merge reports: {0}")]
    Merge(String),
}
