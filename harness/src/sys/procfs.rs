//! Process accounting straight from /proc, no external tools: a server's children (by scanning every
//! `/proc/PID/stat` for its ppid), their states, their memory from `smaps_rollup`, the parent's open
//! descriptors, the processes left in a session after its leader died (orphans), and the kernel's
//! listen-queue overflow counters. Processes vanish between a directory listing and a read; every
//! reader treats that as "gone", never as an error.

use std::fs;
use std::io;

use crate::sys::counters::ListenCounters;

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    /// One letter: R, S, D, Z (zombie), T, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// CPU of the children this process has reaped (and of theirs), user and system: a fork
    /// server's echo work lands here once it reaps the child.
    pub cutime_ticks: u64,
    pub cstime_ticks: u64,
    /// Resident pages (field 24); 0 when the line is cut short before it.
    pub rss_pages: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parses one `/proc/PID/stat` line. The command name sits in parentheses and may itself contain
/// spaces and `)`, so the fixed fields are read after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    let session = rest.next()?.parse().ok()?;
    // tty_nr tpgid flags minflt cminflt majflt cmajflt, then utime stime.
    let mut rest = rest.skip(7);
    let utime_ticks = rest.next()?.parse().ok()?;
    let stime_ticks = rest.next()?.parse().ok()?;
    let cutime_ticks = rest.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cstime_ticks = rest.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    // priority nice num_threads itrealvalue starttime vsize, then rss.
    let rss_pages = rest.nth(6).and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        session,
        utime_ticks,
        stime_ticks,
        cutime_ticks,
        cstime_ticks,
        rss_pages,
    })
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist (any more).
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Every process visible in /proc right now.
pub fn all_processes() -> io::Result<Vec<ProcStat>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            out.push(stat);
        }
    }
    Ok(out)
}

/// The direct children of `ppid`, zombies included.
pub fn children_of(ppid: i32) -> io::Result<Vec<ProcStat>> {
    Ok(all_processes()?
        .into_iter()
        .filter(|p| p.ppid == ppid)
        .collect())
}

/// Children split by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildCensus {
    pub live: Vec<i32>,
    pub zombies: Vec<i32>,
}

pub fn census(ppid: i32) -> io::Result<ChildCensus> {
    let mut census = ChildCensus::default();
    for child in children_of(ppid)? {
        if child.is_zombie() {
            census.zombies.push(child.pid);
        } else {
            census.live.push(child.pid);
        }
    }
    census.live.sort_unstable();
    census.zombies.sort_unstable();
    Ok(census)
}

/// Processes whose session or process group is `id` (the server was started as the leader of both),
/// other than `except` (the leader itself, while it is still there). After the leader is gone these
/// are the orphans it left behind; zombies among them have exited and only wait for init to reap them.
pub fn session_members(id: i32, except: Option<i32>) -> io::Result<Vec<ProcStat>> {
    Ok(all_processes()?
        .into_iter()
        .filter(|p| (p.session == id || p.pgrp == id) && Some(p.pid) != except)
        .collect())
}

/// Memory of one process from `/proc/PID/smaps_rollup`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryRollup {
    pub rss_kib: u64,
    /// Proportional set size: shared pages divided among the processes sharing them, so the PSS
    /// of a tree adds up to what the tree really costs.
    pub pss_kib: u64,
    /// Private_Clean + Private_Dirty: what this process alone holds.
    pub private_kib: u64,
}

pub fn parse_smaps_rollup(text: &str) -> MemoryRollup {
    let mut m = MemoryRollup::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "Rss:" => m.rss_kib = value,
            "Pss:" => m.pss_kib = value,
            "Private_Clean:" | "Private_Dirty:" => m.private_kib += value,
            _ => {}
        }
    }
    m
}

/// `None` when the process is gone or is a zombie (which has no memory map left).
pub fn memory_rollup(pid: i32) -> Option<MemoryRollup> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    if text.is_empty() {
        return None;
    }
    Some(parse_smaps_rollup(&text))
}

/// Number of open descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn open_fd_count(pid: i32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

impl ListenCounters {
    /// Reads the counters now, from `/proc/net/netstat`.
    pub fn read() -> io::Result<ListenCounters> {
        parse_netstat(&fs::read_to_string("/proc/net/netstat")?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no TcpExt ListenOverflows/ListenDrops in /proc/net/netstat",
            )
        })
    }
}

/// `/proc/net/netstat` holds pairs of lines: `TcpExt: Name Name ...` then `TcpExt: 1 2 ...`.
pub fn parse_netstat(text: &str) -> Option<ListenCounters> {
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let values = lines.next()?;
        if !header.starts_with("TcpExt:") {
            continue;
        }
        let mut counters = ListenCounters::default();
        let (mut found_overflows, mut found_drops) = (false, false);
        for (name, value) in header
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            match name {
                "ListenOverflows" => {
                    counters.listen_overflows = value.parse().ok()?;
                    found_overflows = true;
                }
                "ListenDrops" => {
                    counters.listen_drops = value.parse().ok()?;
                    found_drops = true;
                }
                _ => {}
            }
        }
        return (found_overflows && found_drops).then_some(counters);
    }
    None
}

/// Clock ticks per second for the utime/stime fields.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_after_the_last_paren() {
        let line = "4242 (evil) name (x) S) R 17 4242 4242 0 -1 4194560 1 2 3 4 55 66 0 0 20 0 1 0";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "evil) name (x) S");
        assert_eq!(stat.state, 'R');
        assert_eq!((stat.ppid, stat.pgrp, stat.session), (17, 4242, 4242));
        assert_eq!((stat.utime_ticks, stat.stime_ticks), (55, 66));
        assert!(!stat.is_zombie());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn stat_reads_resident_pages_when_the_line_has_them() {
        let full = "77 (rustc) R 1 77 77 0 -1 4194560 10 0 0 0 55 66 7 8 20 0 8 0 12345 901234688 20480 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(full).expect("parses");
        assert_eq!(stat.rss_pages, 20480);
        assert_eq!((stat.cutime_ticks, stat.cstime_ticks), (7, 8));
        let short = "4242 (x) R 17 4242 4242 0 -1 4194560 1 2 3 4 55 66 0 0 20 0 1 0";
        assert_eq!(parse_stat(short).expect("parses").rss_pages, 0);
    }

    #[test]
    fn own_stat_and_children_are_read() {
        let _lock = crate::test_fork_lock();
        let me = std::process::id() as i32;
        let stat = read_stat(me).expect("own stat");
        assert_eq!(stat.pid, me);
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let found = census(me).expect("census");
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.live.contains(&(child.id() as i32)), "{found:?}");
    }

    #[test]
    fn smaps_rollup_sums_private() {
        let text = "00400000-7ffd [rollup]\nRss: 1000 kB\nPss: 400 kB\nShared_Clean: 600 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 300 kB\n";
        let m = parse_smaps_rollup(text);
        assert_eq!((m.rss_kib, m.pss_kib, m.private_kib), (1000, 400, 400));
        let own = memory_rollup(std::process::id() as i32).expect("own rollup");
        assert!(own.pss_kib > 0);
    }

    #[test]
    fn netstat_counters_parse_and_diff() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\nIpExt: InNoRoutes\nIpExt: 0\n";
        let c = parse_netstat(text).expect("parses");
        assert_eq!((c.listen_overflows, c.listen_drops), (7, 9));
        let later = ListenCounters {
            listen_overflows: 10,
            listen_drops: 9,
        };
        assert_eq!(
            later.since(&c),
            ListenCounters {
                listen_overflows: 3,
                listen_drops: 0
            }
        );
        assert!(ListenCounters::read().is_ok());
    }
}
