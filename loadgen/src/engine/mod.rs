//! How a run's connections are spread over OS threads. A run is driven by `runner::run_on`, which
//! starts each connection's session on its engine (`sessions`): as a task on one of the tokio
//! runtimes of `shards`, or on an OS thread of its own (`threads`).

pub(crate) mod limits;
pub(crate) mod pacer;
pub(crate) mod runner;
pub(crate) mod sessions;
pub(crate) mod shards;
pub(crate) mod start;
pub(crate) mod threads;
