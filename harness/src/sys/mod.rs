//! Readers of the machine: [`procfs`] (processes, their memory and descriptors, the listen-queue
//! counters, all from `/proc`), [`memory`] (the kernel's memory counters of `/proc/meminfo` and
//! `/proc/net/sockstat`), [`environment`] (the one `/proc/sys` reader, and the machine a report
//! records), [`limits`] (this machine's limits on concurrent connections) and [`cpu`] (CPU time of
//! a process tree, of this process and its reaped children, and of the whole machine).
//!
//! The counters these readers fill in are plain data in [`counters`] (which `report` embeds), and
//! [`limits`] fills in `capacity`'s `Limits`: so `sys` imports only the pure `capacity` layer.
//! Nothing here starts or signals a process.
//!
//! Layers it may import: `capacity`.
//! Crates it may import: `libc`, `nix`, `procfs_core`, `serde`.

pub mod counters;
pub mod cpu;
pub mod environment;
pub mod limits;
pub mod memory;
pub mod procfs;
