//! A fault-injecting TCP proxy for loopback, in the manner of Toxiproxy: it sits between a client
//! and the server under test and, for a seeded fraction of connections, slices, delays, throttles,
//! resets, stalls or closes the byte stream in either direction ([`plan`] says what and to whom,
//! [`pump`] does it to one direction, [`proxy`] runs the listener and ends each connection as its
//! toxics decided). It counts its own actions ([`counts`]) so that what a client or the server
//! saw can be held against what was done to them. Used by `harness check --faults`, `harness
//! soak`, `harness proxy` and the tests that run loadgen through it.
//!
//! Imports nothing else of the harness (a leaf layer beside `sys`); of other crates tokio, socket2
//! (SO_LINGER), serde, and loadgen's payload generator for its seeded draws.
//!
//! Layers it may import: none.
//! Crates it may import: `tokio`, `socket2`, `serde`, `loadgen`, `humantime`.

pub mod counts;
pub mod plan;
pub mod proxy;
pub mod pump;

pub use counts::ProxyCounts;
pub use plan::{CutAction, Direction, FaultPlan, Profile};
pub use proxy::FaultProxy;
