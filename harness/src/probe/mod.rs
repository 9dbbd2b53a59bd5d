//! What the harness does to a server under test: [`client`] (blocking echo clients), [`checks`]
//! (the named correctness cases), [`fault_checks`] (the same server reached through the fault
//! proxy), [`sampler`] (the process-tree timeline from /proc, and a step's memory from it),
//! [`socket_cost`] (the slab of one loopback socket, the load generator's share), [`load`] (a
//! `loadgen` load under the sampler, and the figures taken from its report) and [`soak`]
//! (loadgen rounds through the fault proxy, the server sampled every second).
//!
//! May import: `target` (the server it probes), `faults` (the proxy), `capacity`'s data types,
//! `sys` and `report`'s data types.

pub mod checks;
pub mod client;
pub mod fault_checks;
pub mod load;
pub mod sampler;
pub mod soak;
pub mod socket_cost;
