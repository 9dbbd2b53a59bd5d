//! One run in this process: [`runner`] (`run_on` spawns each connection's session on one of the
//! runtime handles it is given, waits at the barrier, and builds the report), [`shards`] (which
//! OS threads and runtimes those are), [`start`] (waiting for `--start-at` and the workers'
//! shared barrier), [`limits`] (raising RLIMIT_NOFILE) and [`progress`] (the live line on a TTY).
//!
//! Below `workers`; it drives `session`s and builds the `report`.
//!
//! Layers it may import: `session`, `report`, `config`, `error`, `interrupt`.
//! Crates it may import: `indicatif`, `libc`, `tokio`.

pub(crate) mod limits;
pub(crate) mod progress;
pub(crate) mod runner;
pub(crate) mod shards;
pub(crate) mod start;
