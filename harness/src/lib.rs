//! The harness: starts an echo server (the workspace's fork echo server by default), checks that it
//! is correct, counts and measures its child processes from /proc, loads it through `loadgen`,
//! sweeps its capacity, and writes JSON reports, text, JUnit and SVG charts. `main.rs` only
//! dispatches the hidden server subcommand and [`cli::main`].
//!
//! The layers, top to bottom. Each imports only layers below it, and only those its folder's `//!`
//! header lists on its "Layers it may import:" line, with the external crates on the "Crates it
//! may import:" line; `ci/layers.py` fails CI on any import outside those lists and on any loop
//! between folders, and `ci/import_cycles.py` on a loop between files.
//!
//! - [`cli`]: clap types only, turned into each command's options; exit codes.
//! - [`commands`]: one file per subcommand, each starting at its `execute`: where `check`, `run`,
//!   `sweep`, `report`, `compare` and `plot` begin.
//! - [`probe`]: what the harness does to a server: echo clients, the named checks, the /proc
//!   sampler, a `loadgen` load under the sampler.
//! - [`subject`]: the server under test: which program and flags ([`subject::spec`]), spawned,
//!   waited for, stopped and killed on drop ([`subject::process`]), its stderr and stats lines.
//! - [`render`]: one renderer per output: [`render::units`], [`render::layout`] (tables,
//!   wrapping), [`render::text`], [`render::memory`], [`render::junit`], [`render::svg`] (a
//!   folder: one file per chart family). Reads reports; never starts or reads a process.
//! - [`faults`]: the fault-injecting proxy (toxics per direction on a seeded fraction of
//!   connections, and its own counts of what it did); a leaf, like `sys`.
//! - [`report`]: the JSON format of each report kind as plain serde data ([`report::check`],
//!   [`report::run`], [`report::sweep`]), [`report::AnyReport::read`], the one atomic write, and
//!   `compare`'s numbers and verdicts. Imports only `capacity`'s pure model, `sys`'s plain counter
//!   types and other crates' formats, so `report`, `compare` and `plot` work on files alone.
//! - [`sys`]: readers of the machine: /proc accounting ([`sys::procfs`]), memory counters
//!   ([`sys::memory`]), the one `/proc/sys` reader ([`sys::environment`]), this machine's limits
//!   ([`sys::limits`]), and the plain counter types they fill ([`sys::counters`]).
//! - [`capacity`]: the sweep's capacity model, pure arithmetic: the memory fit
//!   ([`capacity::fit`]), the limits and the predicted maximum ([`capacity::limits`]), the memory
//!   model ([`capacity::memory`]) and what a sweep report stores ([`capacity::model`]).

pub mod capacity;
pub mod cli;
pub mod commands;
pub mod faults;
pub mod probe;
pub mod render;
pub mod report;
pub mod subject;
pub mod sys;

/// The paths these modules had before the layout had folders, which the integration tests (and
/// scripts built on the crate) use: `harness::procfs::census`, `harness::checks::wait_until`.
pub use probe::checks;
pub use sys::procfs;

/// Unit tests that spawn processes and then count the test process's children hold this, so
/// that no other spawning unit test of this binary adds or removes a child under them.
#[cfg(test)]
pub(crate) fn test_fork_lock() -> std::sync::MutexGuard<'static, ()> {
    static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FORK_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
