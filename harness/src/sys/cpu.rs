//! CPU time as the kernel accounts it: a server's whole process tree (every process of its session,
//! each with `utime + stime` and the `cutime + cstime` of the children it has reaped, so a fork
//! server's finished children are counted once, through their parent), this process's own CPU and
//! that of the children it reaped (`getrusage`), one thread's (`RUSAGE_THREAD`), and the whole
//! machine's busy time from `/proc/stat` (the independent check of the others).

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;

use crate::sys::procfs::{all_processes, clock_ticks_per_sec, ProcStat};

/// CPU seconds of one process and of the children it reaped.
pub fn with_reaped_children_secs(p: &ProcStat, ticks_per_sec: u64) -> f64 {
    (p.utime_ticks + p.stime_ticks + p.cutime_ticks + p.cstime_ticks) as f64 / ticks_per_sec as f64
}

/// CPU seconds of the tree led by `leader` (the server starts as the leader of its own session and
/// process group): every process of the session or group, zombies included (their time is not in
/// their parent's `cutime` until reaped). `None` when the leader is gone: its reaped children's time
/// went with it.
pub fn tree_cpu_secs(leader: i32) -> Option<f64> {
    let processes = all_processes().ok()?;
    sum_tree(&processes, leader, clock_ticks_per_sec())
}

fn sum_tree(processes: &[ProcStat], leader: i32, ticks_per_sec: u64) -> Option<f64> {
    processes.iter().find(|p| p.pid == leader)?;
    Some(
        processes
            .iter()
            .filter(|p| p.pid == leader || p.session == leader || p.pgrp == leader)
            .map(|p| with_reaped_children_secs(p, ticks_per_sec))
            .sum(),
    )
}

fn seconds(t: TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

/// User + system CPU of `who`, in seconds; `None` if `getrusage` fails.
pub fn rusage_secs(who: UsageWho) -> Option<f64> {
    let u = getrusage(who).ok()?;
    Some(seconds(u.user_time()) + seconds(u.system_time()))
}

/// The CPU this process has used, all its threads (ended ones included).
pub fn own_secs() -> Option<f64> {
    rusage_secs(UsageWho::RUSAGE_SELF)
}

/// The CPU of the children this process has waited for (and of theirs).
pub fn reaped_children_secs() -> Option<f64> {
    rusage_secs(UsageWho::RUSAGE_CHILDREN)
}

/// The calling thread's CPU.
pub fn this_thread_secs() -> Option<f64> {
    rusage_secs(UsageWho::RUSAGE_THREAD)
}

/// Busy CPU seconds of the whole machine since boot, summed over its CPUs, from the `cpu` line of
/// `/proc/stat`: user, nice, system, irq, softirq and steal (guest time is already inside user).
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    if v.len() < 8 {
        return None;
    }
    Some(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// [`parse_machine_busy_ticks`] of this machine, in seconds.
pub fn machine_busy_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    Some(parse_machine_busy_ticks(&text)? as f64 / clock_ticks_per_sec() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, session: i32, ticks: [u64; 4]) -> ProcStat {
        ProcStat {
            pid,
            comm: "x".into(),
            state: 'S',
            ppid: 1,
            pgrp: session,
            session,
            utime_ticks: ticks[0],
            stime_ticks: ticks[1],
            cutime_ticks: ticks[2],
            cstime_ticks: ticks[3],
            rss_pages: 0,
        }
    }

    #[test]
    fn tree_time_counts_the_leader_its_reaped_children_and_the_living() {
        let procs = [
            p(10, 10, [100, 50, 300, 200]), // the server: its own 150 + reaped 500
            p(11, 10, [5, 5, 0, 0]),        // a live child
            p(12, 10, [1, 2, 0, 0]),        // a zombie not yet reaped
            p(20, 20, [999, 999, 999, 999]),
        ];
        let secs = sum_tree(&procs, 10, 100).expect("leader present");
        assert!((secs - 6.63).abs() < 1e-9, "{secs}");
        assert_eq!(sum_tree(&procs[1..], 10, 100), None, "leader gone");
    }

    #[test]
    fn machine_busy_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 2 30 5000 7 1 4 3 50 0\ncpu0 50 1 15 2500 3 0 2 1 25 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(140));
        assert_eq!(parse_machine_busy_ticks("cpu0 1 2 3\n"), None);
        assert_eq!(parse_machine_busy_ticks("cpu  1 2 3\n"), None);
    }

    #[test]
    fn this_machine_and_process_have_cpu_figures() {
        // Burn a little CPU so every figure is past zero at 100 ticks a second.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert_ne!(x, 42);
        assert!(own_secs().is_some_and(|s| s > 0.0));
        assert!(this_thread_secs().is_some_and(|s| s > 0.0));
        assert!(reaped_children_secs().is_some());
        assert!(machine_busy_secs().is_some_and(|s| s > 0.0));
        let me = std::process::id() as i32;
        let mine = crate::sys::procfs::read_stat(me).expect("own stat");
        assert!(with_reaped_children_secs(&mine, clock_ticks_per_sec()) >= 0.0);
    }
}
