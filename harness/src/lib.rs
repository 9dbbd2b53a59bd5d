//! Capacity model and plots for sweeps of a fork-per-connection echo server.

pub mod capacity;
pub mod plot;
