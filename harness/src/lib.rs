//! The harness: starts an echo server (the workspace's fork echo server by default), checks that it
//! is correct, counts and measures its child processes from /proc, loads it through `loadgen`, and
//! writes JSON reports. `main.rs` only dispatches to `cli::main`.

pub mod checks;
pub mod client;
pub mod procfs;
pub mod sampler;
pub mod server;
