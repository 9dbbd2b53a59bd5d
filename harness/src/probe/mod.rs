//! What the harness does to a server under test: [`client`] (blocking echo clients), [`checks`]
//! (the named correctness cases), [`sampler`] (the process-tree timeline from /proc, and a step's
//! memory from it), [`socket_cost`] (the slab of one loopback socket, the load generator's share)
//! and [`load`] (a `loadgen` load under the sampler, and the figures taken from its report).
//!
//! It uses `subject` (the server it probes), `sys` (the /proc readers), `report`'s data types
//! (what it measured) and `capacity`'s `StepMemory` (a step's memory); never `render` or
//! `commands`.
//!
//! Layers it may import: `subject`, `report`, `sys`, `capacity`.
//! Crates it may import: `loadgen`, `libc`, `nix`, `serde`.

pub mod checks;
pub mod client;
pub mod load;
pub mod sampler;
pub mod socket_cost;
