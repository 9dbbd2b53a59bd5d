//! What the harness does to a server under test: [`client`] (blocking echo clients), [`checks`]
//! (the named correctness cases), [`fault_checks`] (the same server reached through the fault
//! proxy), [`sampler`] (the process-tree timeline from /proc, and a step's memory from it),
//! [`socket_cost`] (the slab of one loopback socket, the load generator's share), [`load`] (a
//! `loadgen` load under the sampler, and the figures taken from its report) and [`soak`]
//! (loadgen rounds through the fault proxy, the server sampled every second).
//!
//! It uses `subject` (the server it probes), `sys` (the /proc readers), `report`'s data types
//! (what it measured) and `capacity`'s `StepMemory` (a step's memory); never `render` or
//! `commands`.
//!
//! Layers it may import: `subject`, `report`, `sys`, `capacity`, `faults`.
//! Crates it may import: `loadgen`, `libc`, `nix`, `serde`.

mod case_support;
pub mod checks;
pub mod client;
pub mod fault_checks;
pub mod load;
mod own_server_checks;
pub mod sampler;
pub mod soak;
pub mod socket_cost;
