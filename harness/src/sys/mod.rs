//! Leaf readers of the machine: [`procfs`] (processes, their memory and descriptors, the
//! listen-queue counters, all from `/proc`), [`memory`] (the kernel's memory counters of
//! `/proc/meminfo` and `/proc/net/sockstat`) and [`environment`] (the one `/proc/sys` reader, and
//! the machine a report records), [`cpu`] (CPU time of a process tree, of this process and its
//! reaped children, and of the whole machine).
//!
//! May import: `report`'s data types, which these readers fill in. Nothing here starts or signals a
//! process.

pub mod cpu;
pub mod environment;
pub mod memory;
pub mod procfs;
