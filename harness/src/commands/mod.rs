//! One file per subcommand, each starting at its `execute`: [`check`], [`run`], [`sweep`] (with
//! [`sweep_step`] for one rung of the ladder and [`progress`] for its display), [`report`],
//! [`compare`], [`plot`], [`soak`] and [`proxy`] (the fault proxy on its own); [`save`] writes what they produce and [`outcome`] is how they end.
//!
//! Takes validated options from `cli`, never clap types; every layer below it is its to use.
//!
//! Layers it may import: `probe`, `subject`, `render`, `report`, `sys`, `capacity`, `faults`.
//! Crates it may import: `loadgen`, `indicatif`, `serde`, `serde_json`, `tokio`.

pub mod check;
pub mod compare;
pub mod outcome;
pub mod plot;
pub mod progress;
pub mod proxy;
pub mod report;
pub mod run;
pub mod save;
pub mod soak;
pub mod sweep;
pub mod sweep_step;
