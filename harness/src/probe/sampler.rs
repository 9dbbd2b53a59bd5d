//! A background thread that watches a server's process tree at a fixed interval (100 ms in `run`)
//! and records a timeline: live children, zombies, the tree's PSS and the PSS per child. It reads
//! only /proc, so it can run beside a load generator in the same process.
//!
//! Counting children is cheap (one `stat` per process), but `smaps_rollup` walks a process's
//! whole memory map: a thousand of them take a few hundred milliseconds of kernel time. So each
//! sample counts every child but re-reads memory only within a time budget (a fifth of the
//! interval), never-measured children first, then the longest-unread; the rest keep their last
//! value. At steady state every child is re-read every few samples.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::capacity::StepMemory;
use crate::report::parts::{MemoryCounters, Sample};
use crate::sys::procfs::{self, MemoryRollup};

/// Samples one server's tree, keeping the last memory reading of each child between samples.
pub struct TreeSampler {
    pid: i32,
    /// Time allowed for `smaps_rollup` reads per sample; `None` reads every child every time.
    memory_budget: Option<Duration>,
    /// Last reading of each live child and the sample number it was taken at.
    memory: HashMap<i32, (MemoryRollup, u64)>,
    /// When each current zombie child was first seen as one.
    zombie_since: HashMap<i32, Instant>,
    samples: u64,
}

/// A zombie older than this counts as lingering.
pub const LINGERING_ZOMBIE: Duration = Duration::from_secs(1);

impl TreeSampler {
    pub fn new(pid: i32, memory_budget: Option<Duration>) -> TreeSampler {
        TreeSampler {
            pid,
            memory_budget,
            memory: HashMap::new(),
            zombie_since: HashMap::new(),
            samples: 0,
        }
    }

    /// Takes one sample; `t0` is the timeline's origin.
    pub fn sample(&mut self, t0: Instant) -> Sample {
        let started = Instant::now();
        self.samples += 1;
        let pid = self.pid;
        let processes = procfs::all_processes().unwrap_or_default();
        let ticks = procfs::clock_ticks_per_sec() as f64;
        let mut sample = Sample {
            t_secs: started.duration_since(t0).as_secs_f64(),
            live_children: 0,
            zombies: 0,
            lingering_zombies: 0,
            server_pss_kib: procfs::memory_rollup(pid).map_or(0, |m| m.pss_kib),
            children_pss_kib: 0,
            children_private_kib: 0,
            children_rss_kib: 0,
            tree_pss_kib: 0,
            pss_per_child_kib: None,
            children_unmeasured: 0,
            memory_reads: 1,
            server_fds: procfs::open_fd_count(pid).ok(),
            server_cpu_secs: 0.0,
            sample_ms: 0.0,
            memory: crate::sys::memory::read(),
        };
        if let Some(m) = sample.memory.as_mut() {
            m.others_rss_kib = Some(crate::sys::memory::others_rss_kib(
                &processes,
                Some(pid),
                crate::sys::memory::page_size(),
            ));
        }
        let mut live = Vec::new();
        let mut zombies = HashSet::new();
        for p in &processes {
            if p.pid == pid {
                sample.server_cpu_secs = (p.utime_ticks + p.stime_ticks) as f64 / ticks;
            } else if p.ppid == pid {
                if p.is_zombie() {
                    zombies.insert(p.pid);
                } else {
                    live.push(p.pid);
                }
            }
        }
        sample.live_children = live.len();
        sample.zombies = zombies.len();
        self.zombie_since.retain(|z, _| zombies.contains(z));
        for z in zombies {
            let since = *self.zombie_since.entry(z).or_insert(started);
            if started.duration_since(since) >= LINGERING_ZOMBIE {
                sample.lingering_zombies += 1;
            }
        }
        self.read_children_memory(&mut live, &mut sample);
        sample.tree_pss_kib = sample.server_pss_kib + sample.children_pss_kib;
        sample.sample_ms = started.elapsed().as_secs_f64() * 1000.0;
        sample
    }

    /// Reads the memory of as many of the `live` children as the memory budget allows (those
    /// never read first, then the longest unread) and fills in the sample's children figures,
    /// scaled up from the children whose memory is known.
    fn read_children_memory(&mut self, live: &mut [i32], sample: &mut Sample) {
        // A set, not `live.contains`: with thousands of children a linear search per entry made
        // this quadratic in the child count on every sample.
        let live_set: HashSet<i32> = live.iter().copied().collect();
        self.memory.retain(|child, _| live_set.contains(child));
        // Never-read children first, then the longest-unread.
        live.sort_by_key(|child| self.memory.get(child).map_or(0, |(_, at)| *at));
        let budget_end = self.memory_budget.map(|b| Instant::now() + b);
        for &child in live.iter() {
            // At least one read per sample whatever the clock says: on a loaded machine the
            // sampler can be preempted past its budget before its first read, and a run whose
            // children were never read would report no PSS at all.
            let read_one = sample.memory_reads > 1;
            if read_one && budget_end.is_some_and(|end| Instant::now() >= end) {
                break;
            }
            if let Some(m) = procfs::memory_rollup(child) {
                self.memory.insert(child, (m, self.samples));
            }
            sample.memory_reads += 1;
        }
        let (mut pss, mut private, mut rss, mut measured) = (0u64, 0u64, 0u64, 0usize);
        for child in live.iter() {
            if let Some((m, _)) = self.memory.get(child) {
                pss += m.pss_kib;
                private += m.private_kib;
                rss += m.rss_kib;
                measured += 1;
            }
        }
        sample.children_unmeasured = live.len() - measured;
        if measured > 0 {
            let per_child = pss as f64 / measured as f64;
            let scale = live.len() as f64 / measured as f64;
            sample.pss_per_child_kib = Some(per_child);
            sample.children_pss_kib = (pss as f64 * scale).round() as u64;
            sample.children_private_kib = (private as f64 * scale).round() as u64;
            sample.children_rss_kib = (rss as f64 * scale).round() as u64;
        }
    }
}

/// A running sampler; `stop` ends it and hands back the timeline.
pub struct Sampler {
    /// Dropping or sending on this wakes the thread at once and makes it return; it never
    /// outlives the `Sampler` by more than one sample.
    stop_tx: mpsc::Sender<()>,
    /// The timeline and the sampling thread's own CPU seconds (kept out of the load generator's).
    handle: JoinHandle<(Vec<Sample>, Option<f64>)>,
}

impl Sampler {
    /// Samples `pid` now and then every `interval` (on a fixed schedule, so a slow sample does
    /// not shift later ones; memory reads get a fifth of the interval) until stopped. Each
    /// sample's live child count is also stored in `live_children`, so that a progress display
    /// can follow the load without scanning /proc a second time.
    pub fn start(
        pid: i32,
        interval: Duration,
        live_children: Arc<AtomicUsize>,
    ) -> std::io::Result<Sampler> {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("tree-sampler".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut tree = TreeSampler::new(pid, Some(interval / 5));
                let mut timeline = Vec::new();
                let mut next = t0;
                loop {
                    let sample = tree.sample(t0);
                    live_children.store(sample.live_children, Ordering::Relaxed);
                    timeline.push(sample);
                    next += interval;
                    let now = Instant::now();
                    while next < now {
                        next += interval;
                    }
                    match stop_rx.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                (timeline, crate::sys::cpu::this_thread_secs())
            })?;
        Ok(Sampler { stop_tx, handle })
    }

    pub fn stop(self) -> Vec<Sample> {
        self.finish().0
    }

    /// Stops the sampler: the timeline, and the CPU seconds its thread used (`None` if unknown).
    pub fn finish(self) -> (Vec<Sample>, Option<f64>) {
        let _ = self.stop_tx.send(());
        self.handle.join().unwrap_or_default()
    }
}

/// The figures the report summary takes from a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSummary {
    pub samples: usize,
    pub peak_live_children: usize,
    pub max_zombies: usize,
    pub max_lingering_zombies: usize,
    pub peak_tree_pss_kib: u64,
    /// Median PSS per child over the samples taken at the peak child count.
    pub pss_per_child_kib: Option<f64>,
    pub private_per_child_kib: Option<f64>,
}

pub fn summarize(timeline: &[Sample]) -> TimelineSummary {
    let peak = timeline.iter().map(|s| s.live_children).max().unwrap_or(0);
    let at_peak: Vec<&Sample> = timeline
        .iter()
        .filter(|s| s.live_children == peak && peak > 0)
        .collect();
    let median = |mut v: Vec<f64>| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    };
    TimelineSummary {
        samples: timeline.len(),
        peak_live_children: peak,
        max_zombies: timeline.iter().map(|s| s.zombies).max().unwrap_or(0),
        max_lingering_zombies: timeline
            .iter()
            .map(|s| s.lingering_zombies)
            .max()
            .unwrap_or(0),
        peak_tree_pss_kib: timeline.iter().map(|s| s.tree_pss_kib).max().unwrap_or(0),
        pss_per_child_kib: median(at_peak.iter().filter_map(|s| s.pss_per_child_kib).collect()),
        private_per_child_kib: median(
            at_peak
                .iter()
                .map(|s| s.children_private_kib as f64 / s.live_children as f64)
                .collect(),
        ),
    }
}

/// The samples taken at `peak` live children that pass `keep`: those in which every child's
/// memory was read when there are any, else all of them (a partly read sample still counts every
/// child; only its memory figures are scaled up from the children read).
pub fn peak_samples(
    timeline: &[Sample],
    peak: usize,
    keep: impl Fn(&Sample) -> bool,
) -> Vec<&Sample> {
    let at_peak: Vec<&Sample> = timeline
        .iter()
        .filter(|s| peak > 0 && s.live_children == peak && keep(s))
        .collect();
    let complete: Vec<&Sample> = at_peak
        .iter()
        .copied()
        .filter(|s| s.children_unmeasured == 0)
        .collect();
    if complete.is_empty() {
        at_peak
    } else {
        complete
    }
}

/// The kernel's side of a load's memory: the change of each counter from `baseline` (read before
/// the server started) to the samples at the peak child count (those in which every child's memory
/// was read, when there are any), as medians; the server's user space is the parent's PSS plus the
/// children's private memory. The load generator's share is its RSS growth and `loadgen_sockets`
/// x `socket_slab_bytes`. `None` when no sample saw a child (nothing to attribute) or none at the
/// peak read the counters.
pub fn step_memory(
    baseline: &MemoryCounters,
    timeline: &[Sample],
    loadgen_sockets: u64,
    socket_slab_bytes: Option<f64>,
) -> Option<StepMemory> {
    let peak = timeline.iter().map(|s| s.live_children).max()?;
    if peak == 0 {
        return None;
    }
    let basis = peak_samples(timeline, peak, |s| s.memory.is_some());
    if basis.is_empty() {
        return None;
    }
    let median = |f: &dyn Fn(&Sample, &MemoryCounters) -> f64| -> f64 {
        let mut v: Vec<f64> = basis
            .iter()
            .filter_map(|s| s.memory.as_ref().map(|m| f(s, m)))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let kib = |v: u64| v as f64 * 1024.0;
    let rise =
        |pick: fn(&MemoryCounters) -> u64| median(&|_, m| kib(pick(m)) - kib(pick(baseline)));
    let optional_rise = |pick: fn(&MemoryCounters) -> Option<u64>| -> Option<f64> {
        let before = pick(baseline)?;
        basis
            .iter()
            .all(|s| s.memory.as_ref().and_then(pick).is_some())
            .then(|| median(&|_, m| pick(m).map_or(0.0, |now| kib(now) - kib(before))))
    };
    let others_rss_bytes = match baseline.others_rss_kib {
        Some(before) => median(&|_, m| m.others_rss_kib.map_or(0.0, |now| kib(now) - kib(before))),
        None => 0.0,
    };
    let loadgen_rss_bytes = match baseline.harness_rss_kib {
        Some(before) => median(&|_, m| m.harness_rss_kib.map_or(0.0, |now| kib(now) - kib(before))),
        None => 0.0,
    };
    Some(StepMemory {
        mem_available_drop_bytes: median(&|_, m| {
            kib(baseline.mem_available_kib) - kib(m.mem_available_kib)
        }),
        kernel_stack_bytes: rise(|m| m.kernel_stack_kib),
        page_tables_bytes: rise(|m| m.page_tables_kib),
        slab_bytes: rise(|m| m.slab_kib),
        sunreclaim_bytes: rise(|m| m.sunreclaim_kib),
        sreclaimable_bytes: optional_rise(|m| m.sreclaimable_kib),
        mem_free_drop_bytes: optional_rise(|m| m.mem_free_kib).map(|r| -r),
        tcp_mem_bytes: rise(|m| m.tcp_mem_kib),
        user_private_bytes: median(&|s, _| kib(s.server_pss_kib + s.children_private_kib)),
        loadgen_rss_bytes,
        others_rss_bytes,
        loadgen_sockets,
        loadgen_socket_slab_bytes: socket_slab_bytes.unwrap_or(0.0) * loadgen_sockets as f64,
        samples: basis.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_sees_a_child_and_stops_promptly() {
        let _lock = crate::test_fork_lock();
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let live = Arc::new(AtomicUsize::new(0));
        let sampler =
            Sampler::start(me, Duration::from_millis(20), Arc::clone(&live)).expect("start");
        // The first sample is taken at once and one more every 20 ms: 150 ms gives several.
        std::thread::sleep(Duration::from_millis(150));
        let stopping = Instant::now();
        let timeline = sampler.stop();
        let stopped_in = stopping.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        // On a loaded machine one sample (a scan of all of /proc) can take hundreds of
        // milliseconds, so both bounds are in units of the slowest sample: stop waits for at most
        // the sample in progress, never for the next interval or forever.
        let slowest = Duration::from_secs_f64(
            timeline.iter().map(|s| s.sample_ms).fold(0.0, f64::max) / 1000.0,
        );
        assert!(
            stopped_in < Duration::from_secs(1) + slowest * 2,
            "stop must be prompt: {stopped_in:?} with samples of up to {slowest:?}"
        );
        assert!(
            timeline.len() >= 2 || slowest > Duration::from_millis(75),
            "{timeline:?}"
        );
        assert!(timeline.iter().all(|s| s.live_children >= 1));
        assert_eq!(
            live.load(Ordering::Relaxed),
            timeline.last().expect("samples").live_children
        );
        assert!(timeline.windows(2).all(|w| w[0].t_secs < w[1].t_secs));
        let summary = summarize(&timeline);
        assert!(summary.peak_live_children >= 1);
        assert!(summary.pss_per_child_kib.unwrap_or(0.0) > 0.0);
        assert!(summary.peak_tree_pss_kib > 0);
    }

    #[test]
    fn memory_reads_stay_within_the_budget_and_catch_up() {
        let _lock = crate::test_fork_lock();
        let me = std::process::id() as i32;
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect();
        // Until a child has run, its fresh address space can read as 0 kB PSS: wait (with a
        // deadline) until each one sleeps in `sleep` itself.
        let deadline = Instant::now() + Duration::from_secs(20);
        for child in &children {
            while crate::sys::procfs::read_stat(child.id() as i32).map(|s| s.state) != Some('S')
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let t0 = Instant::now();
        let mut starved = TreeSampler::new(me, Some(Duration::ZERO));
        let first = starved.sample(t0);
        let mut full = TreeSampler::new(me, None);
        let complete = full.sample(t0);
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(first.live_children >= 3);
        // A zero budget still counts every child but reads only one child's memory: one read per
        // sample is the floor, so a preempted sampler still makes progress.
        assert_eq!(first.memory_reads, 2);
        assert_eq!(first.children_unmeasured, first.live_children - 1);
        assert!(first.pss_per_child_kib.is_some());
        assert_eq!(complete.children_unmeasured, 0);
        assert_eq!(complete.memory_reads, complete.live_children + 1);
        assert!(complete.children_pss_kib > 0, "{complete:?}");
        assert!(complete.children_rss_kib >= complete.children_pss_kib);
    }

    #[test]
    fn zombies_that_stay_count_as_lingering() {
        let _lock = crate::test_fork_lock();
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let zombie = child.id() as i32;
        // Not waited for: once it exits it stays a zombie of this process.
        assert!(crate::checks::wait_until(Duration::from_secs(5), || {
            procfs::read_stat(zombie).is_some_and(|s| s.is_zombie())
        }));
        let t0 = Instant::now();
        let mut tree = TreeSampler::new(me, Some(Duration::ZERO));
        let first = tree.sample(t0);
        std::thread::sleep(LINGERING_ZOMBIE + Duration::from_millis(50));
        let later = tree.sample(t0);
        let _ = child.wait();
        assert!(first.zombies >= 1);
        assert_eq!(
            first.lingering_zombies, 0,
            "new zombies are not lingering yet"
        );
        assert!(later.lingering_zombies >= 1, "{later:?}");
    }

    #[test]
    fn step_memory_is_the_median_change_at_the_peak_less_the_load_generator() {
        let counters = |avail: u64, stack: u64, rss: u64| MemoryCounters {
            mem_available_kib: avail,
            kernel_stack_kib: stack,
            page_tables_kib: 1000 + stack * 3,
            slab_kib: 5000 + stack * 2,
            sunreclaim_kib: 4000 + stack * 2,
            sreclaimable_kib: Some(1000),
            mem_free_kib: Some(avail / 2),
            tcp_mem_kib: 8,
            tcp_sockets: 10,
            harness_rss_kib: Some(rss),
            others_rss_kib: Some(777),
        };
        let sample = |live: usize, memory: MemoryCounters| Sample {
            t_secs: 0.0,
            live_children: live,
            zombies: 0,
            lingering_zombies: 0,
            server_pss_kib: 1000,
            children_pss_kib: 40 * live as u64,
            children_private_kib: 30 * live as u64,
            children_rss_kib: 90 * live as u64,
            tree_pss_kib: 1000 + 40 * live as u64,
            pss_per_child_kib: Some(40.0),
            children_unmeasured: 0,
            memory_reads: live + 1,
            server_fds: Some(4),
            server_cpu_secs: 0.0,
            sample_ms: 1.0,
            memory: Some(memory),
        };
        let baseline = counters(100_000, 100, 5000);
        let timeline = [
            sample(0, counters(99_000, 100, 5000)),
            sample(10, counters(98_000, 260, 5100)),
            sample(10, counters(97_000, 260, 5100)), // the median of three
            sample(10, counters(90_000, 260, 5100)),
        ];
        let m = step_memory(&baseline, &timeline, 10, Some(2048.0)).expect("memory");
        let kib = 1024.0;
        assert_eq!(m.samples, 3);
        assert_eq!(m.mem_available_drop_bytes, 3000.0 * kib);
        assert_eq!(m.kernel_stack_bytes, 160.0 * kib);
        assert_eq!(m.page_tables_bytes, 480.0 * kib);
        assert_eq!(m.slab_bytes, 320.0 * kib);
        assert_eq!(m.user_private_bytes, (1000.0 + 300.0) * kib);
        assert_eq!(m.loadgen_rss_bytes, 100.0 * kib);
        assert_eq!(m.loadgen_socket_slab_bytes, 20480.0);
        assert_eq!(m.server_slab_bytes(), 320.0 * kib - 20480.0);
        // No child ever seen: nothing to attribute.
        assert_eq!(step_memory(&baseline, &timeline[..1], 0, None), None);
    }

    #[test]
    fn summary_takes_the_peak() {
        let s = |live, zombies, pss: u64| Sample {
            t_secs: 0.0,
            live_children: live,
            zombies,
            lingering_zombies: zombies / 2,
            server_pss_kib: 100,
            children_pss_kib: pss,
            children_private_kib: pss / 2,
            children_rss_kib: pss * 3,
            tree_pss_kib: 100 + pss,
            pss_per_child_kib: (live > 0).then(|| pss as f64 / live as f64),
            children_unmeasured: 0,
            memory_reads: live + 1,
            server_fds: Some(5),
            server_cpu_secs: 0.0,
            sample_ms: 1.0,
            memory: None,
        };
        let summary = summarize(&[s(0, 0, 0), s(10, 2, 500), s(10, 0, 600), s(4, 1, 200)]);
        assert_eq!(summary.peak_live_children, 10);
        assert_eq!(summary.max_zombies, 2);
        assert_eq!(summary.max_lingering_zombies, 1);
        assert_eq!(summary.peak_tree_pss_kib, 700);
        assert_eq!(summary.pss_per_child_kib, Some(60.0));
        assert_eq!(summary.private_per_child_kib, Some(30.0));
    }
}
