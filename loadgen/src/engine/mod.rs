//! One run in this process: [`runner`] (`run_on` starts each connection's session on its engine,
//! [`sessions`]: as a task on one of the tokio runtimes of [`shards`], or on an OS thread of its
//! own, [`threads`]; then waits at the barrier and builds the report), [`start`] (waiting for
//! `--start-at` and the workers' shared barrier), [`limits`] (raising RLIMIT_NOFILE) and
//! [`progress`] (the live line on a TTY).
//!
//! Below `workers`; it drives `session`s and builds the `report`.
//!
//! Layers it may import: `session`, `report`, `config`, `error`, `interrupt`.
//! Crates it may import: `indicatif`, `libc`, `nix`, `tokio`.

pub(crate) mod limits;
pub(crate) mod progress;
pub(crate) mod runner;
pub(crate) mod sessions;
pub(crate) mod shards;
pub(crate) mod start;
pub(crate) mod threads;
