//! One file per subcommand, each starting at its `execute`: [`check`], [`run`], [`sweep`] (with
//! [`sweep_step`] for one rung of the ladder and [`progress`] for its display), [`report`],
//! [`compare`] and [`plot`]; [`save`] writes what they produce and [`outcome`] is how they end.
//!
//! Takes validated options from `cli`, never clap types; every layer below it is its to use.
//!
//! Layers it may import: `probe`, `subject`, `render`, `report`, `sys`, `capacity`.
//! Crates it may import: `loadgen`, `indicatif`, `serde`.

pub mod check;
pub mod compare;
pub mod outcome;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run;
pub mod save;
pub mod sweep;
pub mod sweep_step;
