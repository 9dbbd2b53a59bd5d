//! The machine's memory as the kernel counts it: the `/proc/meminfo` lines a connection moves
//! (`MemAvailable`, `MemFree`, `KernelStack`, `PageTables`, `Slab`, `SUnreclaim`, `SReclaimable`), the TCP socket memory and
//! socket count of `/proc/net/sockstat`, and this process's own resident memory (the load
//! generator runs inside the harness, so its growth is part of what `MemAvailable` loses).
//!
//! `/proc/meminfo` is parsed by the `procfs-core` crate; `/proc/net/sockstat` has no parser there,
//! so it has a small one here. Both take file contents, so the tests feed them fake files. These are
//! read once per sample, not once per child, so they are not on the sampler's per-child hot path.

use std::fs;
use std::path::Path;

use procfs_core::{FromRead, Meminfo};

use crate::sys::procfs::ProcStat;

pub use crate::sys::counters::MemoryCounters;

/// The kernel's page size for `/proc/net/sockstat`'s `mem` (counted in pages).
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(4096)
}

/// The `/proc/meminfo` figures a connection moves, in KiB; `None` when the text is not meminfo.
pub fn parse_meminfo(text: &str) -> Option<MeminfoFigures> {
    let m = Meminfo::from_read(text.as_bytes()).ok()?;
    let kib = |bytes: u64| bytes / 1024;
    Some(MeminfoFigures {
        mem_available_kib: kib(m.mem_available?),
        kernel_stack_kib: kib(m.kernel_stack?),
        page_tables_kib: kib(m.page_tables?),
        slab_kib: kib(m.slab),
        sunreclaim_kib: kib(m.s_unreclaim?),
        sreclaimable_kib: kib(m.s_reclaimable?),
        mem_free_kib: kib(m.mem_free),
    })
}

/// The part of [`MemoryCounters`] that comes from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeminfoFigures {
    pub mem_available_kib: u64,
    pub kernel_stack_kib: u64,
    pub page_tables_kib: u64,
    pub slab_kib: u64,
    pub sunreclaim_kib: u64,
    pub sreclaimable_kib: u64,
    pub mem_free_kib: u64,
}

/// `(TCP mem in pages, TCP sockets allocated)` from `/proc/net/sockstat`'s `TCP:` line
/// (`TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3`).
pub fn parse_sockstat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| -> Option<u64> {
        let at = fields.iter().position(|f| *f == name)?;
        fields.get(at + 1)?.parse().ok()
    };
    Some((value("mem")?, value("alloc")?))
}

/// `VmRSS:` of a `/proc/PID/status`, in KiB.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Reads the counters under `proc_root` (`/proc` outside tests); `None` when meminfo or sockstat
/// cannot be read or parsed. `self_rss_kib` is this process's, read through `proc_root/self`.
pub fn read_counters(proc_root: &Path, page_size: u64) -> Option<MemoryCounters> {
    let meminfo = parse_meminfo(&fs::read_to_string(proc_root.join("meminfo")).ok()?)?;
    let (mem_pages, tcp_alloc) =
        parse_sockstat(&fs::read_to_string(proc_root.join("net/sockstat")).ok()?)?;
    let self_rss_kib = fs::read_to_string(proc_root.join("self/status"))
        .ok()
        .as_deref()
        .and_then(parse_status_rss_kib);
    Some(MemoryCounters {
        mem_available_kib: meminfo.mem_available_kib,
        kernel_stack_kib: meminfo.kernel_stack_kib,
        page_tables_kib: meminfo.page_tables_kib,
        slab_kib: meminfo.slab_kib,
        sunreclaim_kib: meminfo.sunreclaim_kib,
        sreclaimable_kib: Some(meminfo.sreclaimable_kib),
        mem_free_kib: Some(meminfo.mem_free_kib),
        tcp_mem_kib: mem_pages.saturating_mul(page_size) / 1024,
        tcp_sockets: tcp_alloc,
        harness_rss_kib: self_rss_kib,
        others_rss_kib: None,
    })
}

/// Resident KiB of every process in `processes` except `tree` (the server and its children, when
/// there is a server) and this process.
pub fn others_rss_kib(processes: &[ProcStat], tree: Option<i32>, page_size: u64) -> u64 {
    let me = std::process::id() as i32;
    let in_tree = |p: &ProcStat| tree.is_some_and(|t| p.pid == t || p.ppid == t);
    let pages: u64 = processes
        .iter()
        .filter(|p| p.pid != me && !in_tree(p))
        .map(|p| p.rss_pages)
        .sum();
    pages.saturating_mul(page_size) / 1024
}

/// [`read`] before a server starts: the counters and every other process's resident memory.
pub fn read_baseline() -> Option<MemoryCounters> {
    let processes = crate::sys::procfs::all_processes().ok()?;
    let page = page_size();
    let mut counters = read_counters(Path::new("/proc"), page)?;
    counters.others_rss_kib = Some(others_rss_kib(&processes, None, page));
    Some(counters)
}

/// [`read_counters`] of this machine.
pub fn read() -> Option<MemoryCounters> {
    read_counters(Path::new("/proc"), page_size())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A whole `/proc/meminfo` as kernel 6.18 writes it (the crate wants every mandatory line).
    pub(crate) const MEMINFO: &str = "\
MemTotal:       24684092 kB
MemFree:        20000000 kB
MemAvailable:   22000000 kB
Buffers:          100000 kB
Cached:          1500000 kB
SwapCached:            0 kB
Active:          1200000 kB
Inactive:         900000 kB
Active(anon):     600000 kB
Inactive(anon):        0 kB
Active(file):     600000 kB
Inactive(file):   900000 kB
Unevictable:           0 kB
Mlocked:               0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:               100 kB
Writeback:             0 kB
AnonPages:        600000 kB
Mapped:           200000 kB
Shmem:              1000 kB
KReclaimable:     150000 kB
Slab:             300000 kB
SReclaimable:     150000 kB
SUnreclaim:       150000 kB
KernelStack:       12000 kB
PageTables:        20000 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12342044 kB
Committed_AS:    3000000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       30000 kB
VmallocChunk:          0 kB
Percpu:             2000 kB
HardwareCorrupted:     0 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
Unaccepted:            0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:      200000 kB
DirectMap2M:    25000000 kB
";

    const SOCKSTAT: &str = "sockets: used 2039\n\
TCP: inuse 2006 orphan 0 tw 9524 alloc 2010 mem 202\n\
UDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";

    #[test]
    fn meminfo_and_sockstat_parse_what_the_kernel_writes() {
        let m = parse_meminfo(MEMINFO).expect("meminfo");
        assert_eq!(
            m,
            MeminfoFigures {
                mem_available_kib: 22_000_000,
                kernel_stack_kib: 12_000,
                page_tables_kib: 20_000,
                slab_kib: 300_000,
                sunreclaim_kib: 150_000,
                sreclaimable_kib: 150_000,
                mem_free_kib: 20_000_000,
            }
        );
        assert_eq!(parse_meminfo("MemAvailable: 5 kB\n"), None, "not meminfo");
        let no_stack = MEMINFO.replace("KernelStack:       12000 kB\n", "");
        assert_eq!(parse_meminfo(&no_stack), None);
        assert_eq!(parse_sockstat(SOCKSTAT), Some((202, 2010)));
        assert_eq!(parse_sockstat("TCP: inuse 1\n"), None);
        assert_eq!(parse_sockstat("UDP: inuse 0 mem 0\n"), None);
        assert_eq!(
            parse_status_rss_kib("Name:\tx\nVmRSS:\t   51234 kB\n"),
            Some(51_234)
        );
    }

    #[test]
    fn reads_a_fake_proc_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("net")).expect("mkdir");
        fs::create_dir_all(root.join("self")).expect("mkdir");
        fs::write(root.join("meminfo"), MEMINFO).expect("write");
        fs::write(root.join("net/sockstat"), SOCKSTAT).expect("write");
        fs::write(root.join("self/status"), "VmRSS:\t 4096 kB\n").expect("write");
        let c = read_counters(root, 4096).expect("counters");
        assert_eq!(c.mem_available_kib, 22_000_000);
        assert_eq!(c.tcp_mem_kib, 202 * 4);
        assert_eq!(c.tcp_sockets, 2010);
        assert_eq!(c.harness_rss_kib, Some(4096));
        fs::remove_file(root.join("net/sockstat")).expect("rm");
        assert_eq!(read_counters(root, 4096), None);
    }

    #[test]
    fn others_leave_out_the_tree_and_this_process() {
        let p = |pid, ppid, rss_pages| ProcStat {
            pid,
            comm: "x".into(),
            state: 'S',
            ppid,
            pgrp: pid,
            session: pid,
            utime_ticks: 0,
            stime_ticks: 0,
            cutime_ticks: 0,
            cstime_ticks: 0,
            rss_pages,
        };
        let me = std::process::id() as i32;
        let procs = [
            p(me, 1, 1000),
            p(500, 1, 10),
            p(600, 1, 20),
            p(601, 600, 40),
        ];
        assert_eq!(others_rss_kib(&procs, Some(600), 4096), 10 * 4);
        assert_eq!(others_rss_kib(&procs, None, 4096), 70 * 4);
    }

    #[test]
    fn reads_this_machine() {
        let c = read().expect("this machine has meminfo and sockstat");
        assert!(c.mem_available_kib > 0 && c.kernel_stack_kib > 0, "{c:?}");
        assert!(c.harness_rss_kib.is_some_and(|k| k > 0), "{c:?}");
    }
}
