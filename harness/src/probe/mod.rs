//! What the harness does to a server under test: [`client`] (blocking echo clients), [`checks`]
//! (the named correctness cases), [`sampler`] (the process-tree timeline from /proc, and a step's
//! memory from it), [`socket_cost`] (the slab of one loopback socket, the load generator's share)
//! and [`load`] (a `loadgen` load under the sampler, and the figures taken from its report).
//!
//! May import: `target` (the server it probes), `capacity`'s data types, `sys` and `report`'s data
//! types.

pub mod checks;
pub mod client;
pub mod load;
pub mod sampler;
pub mod socket_cost;
