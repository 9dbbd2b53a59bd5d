//! The environment a report records: host, kernel, CPUs and loadgen version, read from /proc
//! and libc without shelling out.

use crate::report::Environment;

/// The environment of this process.
pub(crate) fn current() -> Environment {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut hostname = read("/proc/sys/kernel/hostname");
    if hostname.is_empty() {
        hostname = "unknown".into();
    }
    let release = read("/proc/sys/kernel/osrelease");
    let kernel = if release.is_empty() {
        std::env::consts::OS.to_string()
    } else {
        format!("{} {release}", std::env::consts::OS)
    };
    Environment {
        hostname,
        kernel,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id() as u64,
    }
}
