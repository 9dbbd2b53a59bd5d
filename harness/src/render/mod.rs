//! Output formats, one renderer each (as hyperfine's `export/`): [`units`] (every number printed
//! for people), [`layout`] (aligned tables, wrapping), [`text`] (terminal tables and summaries), [`memory`]
//! (the text of the total memory model), [`capacity`] (the text of the throughput and
//! CPU models), [`junit`] (check results for CI), [`svg`] (sweep and timeline charts), [`soak`]
//! (the soak's summary and trends) and [`html`] (a report as one self-contained page).
//!
//! It uses `report` and `capacity`'s model (what is drawn), and loadgen's atomic write (for the
//! chart files). Never `subject`, `probe` or `sys`: rendering works on a saved report alone.
//!
//! Layers it may import: `report`, `capacity`.
//! Crates it may import: `loadgen`, `plotters`, `quick_junit`, `chrono`, `thiserror`, `serde_json`.

pub mod capacity;
pub mod html;
pub mod junit;
pub mod layout;
pub mod memory;
pub mod soak;
pub mod svg;
pub mod text;
pub mod units;
