//! One connection's life: wait for its ramp-up slot, connect, echo one message (the first echo),
//! wait at the barrier for every other connection, then run the measured phase and close
//! (`lifecycle`); or, under connection `--stages`, open and close as the plan ramps past it
//! (`staged`). The echo loop and the counting both share are in `echo`.
//!
//! Below `engine`; it records into `report`'s types and reads the `config`.
//!
//! Layers it may import: `report`, `config`, `error`.
//! Crates it may import: `hdrhistogram`, `humantime`, `libc`, `nix`, `tokio`.

pub(crate) mod connect;
mod echo;
mod lifecycle;
pub(crate) mod pacer;
pub mod payload;
mod staged;
pub(crate) mod stats;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

pub(crate) use echo::{RunShared, Steady, STOP_DEADLINE, STOP_INTERRUPT};

/// The task of connection number `conn`: a staged one under connection `--stages`, else
/// [`connection`].
pub(crate) fn connection_of(
    shared: &Arc<RunShared>,
    conn: u64,
) -> Pin<Box<dyn Future<Output = Option<Instant>> + Send>> {
    match shared.config.staged_connections() {
        true => Box::pin(staged::connection(shared.clone(), conn)),
        false => Box::pin(lifecycle::connection(shared.clone(), conn)),
    }
}
