//! `--engine auto` for a closed loop, decided by the server: one probe connection
//! (`target_probe`) says whether each connection gets a process of its own. A fork-per-connection
//! server, or one this host cannot see into, gets the uring engine (the threads engine where this
//! kernel refuses io_uring to this process); a server that serves its
//! connections inside the listening process gets the tokio engine (loadgen/BENCH.md, "`--engine
//! auto`"). The CLI and library callers (the harness) decide alike, so a harness run against an
//! event-loop server is measured with the engine that measures it, not with the threads engine.
//!
//! Layers it may import: `config`, `target_probe`, `session`.
//! Crates it may import: none.

use std::time::Duration;

use crate::config::{Config, Engine};
use crate::target_probe::{probe, ServerModel};

/// The most the probe (one connection, one echoed byte) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections per CPU from which the uring engine beats the threads engine against a fork
/// server: on 2 CPUs it lost slightly at 1-4 connections (one session per driver batches
/// nothing) and won from 8 (loadgen/BENCH.md, "The uring engine").
const URING_CONNS_PER_CPU: usize = 4;

/// The engine `auto` gives a closed loop of `conns` connections against a fork-per-connection
/// server: uring from [`URING_CONNS_PER_CPU`] connections per CPU where this kernel lets
/// loadgen use io_uring, else threads.
pub fn fork_server_engine(conns: usize) -> Engine {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if conns >= URING_CONNS_PER_CPU * cpus && crate::session::uring::available() {
        Engine::Uring
    } else {
        Engine::Threads
    }
}

/// Fixes `config.engine` when it is `auto` and only the server can decide it (a flag only the
/// tokio engine honours decides it otherwise), so the report's `engine` and every worker get the
/// one chosen. Returns what the probe found, for saying why; `None` when nothing was probed.
/// The probe connects: call it after the checks that need no server.
pub fn choose_engine(config: &mut Config) -> Option<ServerModel> {
    if config.engine != Engine::Auto || config.engine() != Engine::Threads {
        return None;
    }
    let model = probe(config.addr, PROBE_TIMEOUT);
    config.engine = match model {
        ServerModel::InProcess { .. } => Engine::Tokio,
        _ => fork_server_engine(config.conns),
    };
    Some(model)
}
