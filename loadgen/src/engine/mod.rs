//! How a run's connections are spread over OS threads. A run is driven by `runner::run_on`, which
//! spawns each connection's session on one of the runtime handles it is given; this module
//! decides which runtimes those are.

pub(crate) mod limits;
pub(crate) mod pacer;
pub(crate) mod runner;
pub(crate) mod shards;
pub mod stages;
pub(crate) mod start;
