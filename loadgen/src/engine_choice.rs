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
        _ if crate::session::uring::available() => Engine::Uring,
        _ => Engine::Threads,
    };
    Some(model)
}
