//! The server under test: [`spec`] (which program, its argv and flags, its `--max-children`),
//! [`process`] (spawn, ready, stop, what it left behind, and the `Drop` that kills its group),
//! [`stderr`] (its log and stats lines) and [`error`] (why it could not start).
//!
//! It uses `sys` (to find its children and orphans in /proc) and `report`'s data types (how it
//! ended). Nothing here talks to the server over the network beyond the readiness connect.
//!
//! Layers it may import: `report`, `sys`.
//! Crates it may import: `fork_echo_server`, `libc`, `nix`, `serde_json`, `thiserror`.

pub mod error;
pub mod process;
pub mod spec;
pub mod stderr;
