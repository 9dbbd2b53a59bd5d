//! The machine the harness runs on: the one reader of `/proc/sys` (and of the other one-number
//! files under `/proc` and the cgroup tree), and the [`Environment`] a report records.

use std::path::Path;

use crate::sys::counters::Environment;

/// `/proc/sys/<name>` under `proc_root` (`/proc`, or a fake tree in tests), trimmed; `None` when
/// it cannot be read. `name` is the sysctl with slashes: `kernel/pid_max`, `fs/file-nr`.
pub fn sysctl(proc_root: &Path, name: &str) -> Option<String> {
    read_trimmed(&proc_root.join("sys").join(name))
}

/// A sysctl that holds one number, as most do.
pub fn sysctl_u64(proc_root: &Path, name: &str) -> Option<u64> {
    sysctl(proc_root, name)?.parse().ok()
}

/// A file that holds one number (a sysctl, a cgroup's `pids.current`).
pub fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `MemTotal:` of a `/proc/meminfo`, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let rest = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Environment {
    /// This machine and this process, now.
    pub fn collect() -> Environment {
        let proc_root = Path::new("/proc");
        let nofile =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok();
        Environment {
            hostname: sysctl(proc_root, "kernel/hostname").unwrap_or_default(),
            kernel: sysctl(proc_root, "kernel/osrelease").unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            somaxconn: sysctl_u64(proc_root, "net/core/somaxconn"),
            pid_max: sysctl_u64(proc_root, "kernel/pid_max"),
            nofile_soft: nofile.map(|(soft, _)| soft),
            nofile_hard: nofile.map(|(_, hard)| hard),
            mem_total_kib: std::fs::read_to_string(proc_root.join("meminfo"))
                .ok()
                .and_then(|text| mem_total_kib(&text)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_total_is_read_from_meminfo() {
        let text = "MemTotal:       24684092 kB\nMemFree:  1 kB\n";
        assert_eq!(super::mem_total_kib(text), Some(24_684_092));
        assert_eq!(super::mem_total_kib("MemFree: 1 kB\n"), None);
    }
}
