//! One connection's life: wait for its ramp-up slot, connect, echo one message (the first echo),
//! wait at the barrier for every other connection, then run the measured phase and close
//! (`lifecycle`); or, under connection `--stages`, open and close as the plan ramps past it
//! (`staged`). The threads engine drives the same session on a blocking socket (`blocking`). The
//! echo loop and the exactly-once counting all of them share are in `echo`; `plan` says what a
//! session sends and until when, `failure` why it ended early, `connect` opens its socket,
//! `read_delay` reads with the kernel's receive timestamp, and `shared` is the run's state every
//! session sees.
//!
//! Below `engine`; it records into `report`'s types and reads the `config`.
//!
//! Layers it may import: `report`, `config`, `error`.
//! Crates it may import: `hdrhistogram`, `humantime`, `io_uring`, `libc`, `nix`, `socket2`, `tokio`.

pub(crate) mod blocking;
pub(crate) mod connect;
mod echo;
mod failure;
mod lifecycle;
pub(crate) mod pacer;
pub mod payload;
pub(crate) mod plan;
mod read_delay;
mod shared;
mod staged;
pub(crate) mod stats;
pub(crate) mod uring;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

pub(crate) use shared::{RunShared, Steady, STOP_DEADLINE, STOP_INTERRUPT};

/// The task of connection number `conn` on the tokio engine: a staged one under connection
/// `--stages`, else the plain [`lifecycle`] one.
pub(crate) fn connection_of(
    shared: &Arc<RunShared>,
    conn: u64,
) -> Pin<Box<dyn Future<Output = Option<Instant>> + Send>> {
    match shared.config.staged_connections() {
        true => Box::pin(staged::connection(shared.clone(), conn)),
        false => Box::pin(lifecycle::connection(shared.clone(), conn)),
    }
}
