//! Reads `capacity`'s [`Limits`] from a `/proc` tree, a cgroup mount and the process's rlimits:
//! the one part of the capacity model that reads the machine, kept here so `capacity` is pure
//! arithmetic.
//!
//! The roots are parameters so tests can point them at a fake tree; each file format has a small
//! parser of its own, tested on the text the kernel writes (`/proc/meminfo`'s is the `procfs-core`
//! crate's, through `sys::memory`).

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};

use crate::capacity::limits::{LimitInputs, Limits};
use crate::sys::environment::{read_u64, sysctl, sysctl_u64};
use crate::sys::memory;

/// `CAP_SYS_ADMIN` and `CAP_SYS_RESOURCE`: either exempts a process from `RLIMIT_NPROC`.
const NPROC_EXEMPT_CAPS: u64 = (1 << 21) | (1 << 24);

/// The rlimits and real uid of the process that will run the load generator and spawn the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rlimits {
    /// `None` when unlimited or unreadable.
    pub nproc_soft: Option<u64>,
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    pub uid: u32,
}

impl Rlimits {
    pub fn of_this_process() -> Rlimits {
        let finite = |v: u64| (v != RLIM_INFINITY).then_some(v);
        let nproc = getrlimit(Resource::RLIMIT_NPROC).ok();
        let nofile = getrlimit(Resource::RLIMIT_NOFILE).ok();
        Rlimits {
            nproc_soft: nproc.and_then(|(soft, _)| finite(soft)),
            nofile_soft: nofile.and_then(|(soft, _)| finite(soft)),
            nofile_hard: nofile.and_then(|(_, hard)| finite(hard)),
            uid: nix::unistd::getuid().as_raw(),
        }
    }
}

pub(super) fn read(
    proc_root: &Path,
    cgroup_root: &Path,
    rlimits: &Rlimits,
    inputs: &LimitInputs,
) -> Limits {
    let read_text = |rel: &str| fs::read_to_string(proc_root.join(rel)).ok();
    let self_status = read_text("self/status");
    let cap_eff = self_status.as_deref().and_then(parse_cap_eff);
    let nproc_enforced =
        rlimits.uid != 0 && cap_eff.is_some_and(|caps| caps & NPROC_EXEMPT_CAPS == 0);
    Limits {
        memory_budget_bytes: inputs.memory_budget_bytes,
        mem_available_bytes: read_text("meminfo")
            .as_deref()
            .and_then(memory::parse_meminfo)
            .map(|m| m.mem_available_kib * 1024),
        rlimit_nproc_soft: rlimits.nproc_soft,
        nproc_used: count_user_tasks(proc_root, rlimits.uid),
        nproc_enforced,
        cgroup_pids_headroom: read_text("self/cgroup")
            .and_then(|text| cgroup_pids_headroom(cgroup_root, &text)),
        pid_max: sysctl_u64(proc_root, "kernel/pid_max"),
        threads_max: sysctl_u64(proc_root, "kernel/threads-max"),
        tasks_used: read_text("loadavg")
            .as_deref()
            .and_then(parse_loadavg_tasks),
        server_max_children: inputs.server_max_children,
        loadgen_nofile_soft: rlimits.nofile_soft,
        loadgen_nofile_hard: rlimits.nofile_hard,
        loadgen_fds_used: fs::read_dir(proc_root.join("self/fd"))
            .ok()
            .map(|dir| dir.count() as u64),
        file_max: sysctl_u64(proc_root, "fs/file-max"),
        files_used: sysctl(proc_root, "fs/file-nr")
            .and_then(|t| t.split_whitespace().next()?.parse().ok()),
        ephemeral_ports_per_ip: sysctl(proc_root, "net/ipv4/ip_local_port_range")
            .as_deref()
            .and_then(parse_port_range)
            .map(|range| {
                let reserved = sysctl(proc_root, "net/ipv4/ip_local_reserved_ports")
                    .map(|t| parse_reserved_ports(&t))
                    .unwrap_or_default();
                usable_ports(range, &reserved)
            }),
        source_ips: inputs.source_ips.max(1),
    }
}

impl Limits {
    /// Reads the limits of this machine and of this process (the load generator runs in it) from
    /// `/proc`, `/sys/fs/cgroup` and `getrlimit`. Call it before the server starts, so the server's own
    /// tasks are not counted as used. A file that cannot be read leaves its field `None`.
    pub fn read_from_system(inputs: &LimitInputs) -> Limits {
        read(
            Path::new("/proc"),
            Path::new("/sys/fs/cgroup"),
            &Rlimits::of_this_process(),
            inputs,
        )
    }
}

/// `CapEff:` of a `/proc/PID/status`, a hex bit mask.
fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// `(real uid, threads)` from a `/proc/PID/status`.
fn parse_uid_threads(status: &str) -> Option<(u32, u64)> {
    let mut uid = None;
    let mut threads = None;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = rest.split_whitespace().next()?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Threads:") {
            threads = rest.trim().parse().ok();
        }
    }
    Some((uid?, threads?))
}

/// Tasks (threads) whose real uid is `uid`: what the kernel compares with `RLIMIT_NPROC`.
fn count_user_tasks(proc_root: &Path, uid: u32) -> Option<u64> {
    let entries = fs::read_dir(proc_root).ok()?;
    let mut tasks = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        // A process may exit between the listing and the read; it no longer counts.
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Some((owner, threads)) = parse_uid_threads(&status) {
            if owner == uid {
                tasks += threads;
            }
        }
    }
    Some(tasks)
}

/// Total tasks from `/proc/loadavg` (`0.06 0.05 0.01 1/86 3607`: the 86).
fn parse_loadavg_tasks(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// `ip_local_port_range`: `32768\t60999`, inclusive.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    let lo = it.next()?.ok()?;
    let hi = it.next()?.ok()?;
    (lo <= hi).then_some((lo, hi))
}

/// `ip_local_reserved_ports`: empty, or `8080,9000-9010`.
fn parse_reserved_ports(text: &str) -> Vec<(u16, u16)> {
    text.trim()
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => {
                    let p = part.parse().ok()?;
                    Some((p, p))
                }
            }
        })
        .collect()
}

fn usable_ports((lo, hi): (u16, u16), reserved: &[(u16, u16)]) -> u64 {
    (lo..=hi)
        .filter(|p| !reserved.iter().any(|&(a, b)| (a..=b).contains(p)))
        .count() as u64
}

/// The smallest `pids.max - pids.current` from the process's pids cgroup up to the mount root.
///
/// `self_cgroup` is `/proc/self/cgroup`: the v2 line `0::/path` under `cgroup_root` (or under
/// `cgroup_root/unified` on a hybrid v1/v2 system), else the v1 line `N:pids:/path` under
/// `cgroup_root/pids`. `None` when no level has a finite `pids.max`.
fn cgroup_pids_headroom(cgroup_root: &Path, self_cgroup: &str) -> Option<u64> {
    let mut bases: Vec<(PathBuf, &str)> = Vec::new();
    for line in self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            bases.push((cgroup_root.to_path_buf(), path));
            bases.push((cgroup_root.join("unified"), path));
        } else if controllers.split(',').any(|c| c == "pids") {
            bases.push((cgroup_root.join("pids"), path));
        }
    }
    let mut headroom: Option<u64> = None;
    for (base, path) in bases {
        let mut dir = base.join(path.trim_start_matches('/'));
        loop {
            let max = fs::read_to_string(dir.join("pids.max")).ok();
            let current = read_u64(&dir.join("pids.current"));
            if let (Some(max), Some(current)) = (max, current) {
                if let Ok(max) = max.trim().parse::<u64>() {
                    let left = max.saturating_sub(current);
                    headroom = Some(headroom.map_or(left, |h| h.min(left)));
                }
            }
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    headroom
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    fn status(uid: u32, threads: u64) -> String {
        format!(
            "Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nThreads:\t{threads}\nCapEff:\t0000000000000000\n"
        )
    }

    #[test]
    fn parsers_read_what_the_kernel_writes() {
        assert_eq!(
            parse_cap_eff("CapPrm:\t0\nCapEff:\t000001fffeffffff\n"),
            Some(0x1fffeffffff)
        );
        assert_eq!(parse_uid_threads(&status(1000, 7)), Some((1000, 7)));
        assert_eq!(parse_uid_threads("Name:\tx\n"), None);
        assert_eq!(parse_loadavg_tasks("0.06 0.05 0.01 1/86 3607\n"), Some(86));
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_reserved_ports("\n"), vec![]);
        assert_eq!(
            parse_reserved_ports("8080,40000-40009\n"),
            vec![(8080, 8080), (40000, 40009)]
        );
        assert_eq!(usable_ports((32768, 60999), &[]), 28_232);
        assert_eq!(
            usable_ports((32768, 60999), &[(8080, 8080), (40000, 40009)]),
            28_222
        );
    }

    #[test]
    fn reads_a_fake_proc_and_cgroup_tree() {
        let proc_dir = tempfile::tempdir().expect("tempdir");
        let cg_dir = tempfile::tempdir().expect("tempdir");
        let (p, cg) = (proc_dir.path(), cg_dir.path());
        write(p, "self/status", &status(1000, 1));
        write(p, "self/fd/0", "");
        write(p, "self/fd/1", "");
        write(p, "self/cgroup", "0::/user.slice/session-1.scope\n");
        write(p, "1/status", &status(0, 1));
        write(p, "200/status", &status(1000, 4));
        write(p, "201/status", &status(1000, 2));
        write(
            p,
            "meminfo",
            &crate::sys::memory::tests::MEMINFO.replace("22000000 kB", "2048 kB"),
        );
        write(p, "loadavg", "0.00 0.00 0.00 2/150 999\n");
        write(p, "sys/kernel/pid_max", "32768\n");
        write(p, "sys/kernel/threads-max", "192730\n");
        write(p, "sys/fs/file-max", "9223372036854775807\n");
        write(p, "sys/fs/file-nr", "1248\t0\t9223372036854775807\n");
        write(p, "sys/net/ipv4/ip_local_port_range", "32768\t60999\n");
        write(p, "sys/net/ipv4/ip_local_reserved_ports", "\n");
        write(cg, "cgroup.controllers", "pids memory\n");
        write(cg, "user.slice/pids.max", "10000\n");
        write(cg, "user.slice/pids.current", "9000\n");
        write(cg, "user.slice/session-1.scope/pids.max", "max\n");
        write(cg, "user.slice/session-1.scope/pids.current", "12\n");

        let rlimits = Rlimits {
            nproc_soft: Some(4096),
            nofile_soft: Some(1024),
            nofile_hard: Some(524_288),
            uid: 1000,
        };
        let inputs = LimitInputs {
            memory_budget_bytes: Some(1 << 30),
            server_max_children: Some(64),
            source_ips: 0,
        };
        let l = read(p, cg, &rlimits, &inputs);
        // `self` is skipped: in the real /proc it links to a numeric entry that is counted.
        assert_eq!(l.nproc_used, Some(6), "200 and 201 belong to uid 1000");
        assert!(l.nproc_enforced);
        assert_eq!(l.cgroup_pids_headroom, Some(1000));
        assert_eq!(l.mem_available_bytes, Some(2048 * 1024));
        assert_eq!(l.tasks_used, Some(150));
        assert_eq!((l.pid_max, l.threads_max), (Some(32768), Some(192_730)));
        assert_eq!(
            (l.file_max, l.files_used),
            (Some(i64::MAX as u64), Some(1248))
        );
        assert_eq!(l.loadgen_fds_used, Some(2));
        assert_eq!(l.ephemeral_ports_per_ip, Some(28_232));
        assert_eq!(l.source_ips, 1);
        assert_eq!(l.server_max_children, Some(64));

        // Root is exempt from RLIMIT_NPROC; so is a process holding CAP_SYS_RESOURCE.
        let root = Rlimits { uid: 0, ..rlimits };
        assert!(!read(p, cg, &root, &inputs).nproc_enforced);
        write(
            p,
            "self/status",
            "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000001000000\n",
        );
        assert!(!read(p, cg, &rlimits, &inputs).nproc_enforced);
    }

    #[test]
    fn cgroup_v1_pids_controller_is_found() {
        let cg_dir = tempfile::tempdir().expect("tempdir");
        let cg = cg_dir.path();
        write(cg, "pids/docker/abc/pids.max", "500\n");
        write(cg, "pids/docker/abc/pids.current", "20\n");
        let text = "9:name=systemd:/\n8:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n";
        assert_eq!(cgroup_pids_headroom(cg, text), Some(480));
        assert_eq!(cgroup_pids_headroom(cg, "0::/\n"), None);
    }

    #[test]
    fn reads_this_machine() {
        let l = Limits::read_from_system(&LimitInputs::default());
        let pid_max = fs::read_to_string("/proc/sys/kernel/pid_max").expect("pid_max");
        assert_eq!(l.pid_max, pid_max.trim().parse().ok());
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(
            l.loadgen_nofile_soft,
            (soft != RLIM_INFINITY).then_some(soft)
        );
        assert!(l.nproc_used.is_some_and(|n| n >= 1), "{l:?}");
        assert!(l.ephemeral_ports_per_ip.is_some_and(|n| n > 0), "{l:?}");
        assert!(crate::capacity::predict_max(&l, &Default::default()).is_some());
    }
}
