//! One rung of `harness sweep`'s ladder: a fresh server, one `loadgen` load of that many
//! connections under the tree sampler, the server stopped, and the step's figures (burst, steady,
//! tree, memory, CPU) taken from loadgen's report, the timeline and the kernel's clocks.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capacity::cpu::StepCpu;
use crate::commands::progress::SweepProgress;
use crate::probe::load::{self, LatencyFigures};
use crate::probe::sampler;
use crate::report::parts::Sample;
use crate::report::sweep::{BurstFigures, SteadyFigures, SweepStep, TreeFigures};
use crate::subject::error::ServerError;
use crate::subject::process::{ServerProcess, READY_TIMEOUT, STOP_GRACE};
use crate::subject::spec::ServerSpec;
use crate::sys::{cpu, procfs};

/// What every step's load is made of: the sweep's options without the ladder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoad {
    /// Length of the steady phase after the connect burst.
    pub duration: Duration,
    /// Message size in bytes.
    pub size: usize,
    pub sample_interval: Duration,
    /// Slab bytes of one loopback socket (the load generator's share per connection), if measured.
    pub socket_slab_bytes: Option<f64>,
    /// loadgen's connect timeout for the step.
    pub connect_timeout: Duration,
    /// loadgen's echo timeout for the step.
    pub io_timeout: Duration,
}

impl StepLoad {
    /// The step's loadgen configuration against `addr`.
    pub fn loadgen_config(&self, addr: std::net::SocketAddr, conns: u64) -> loadgen::Config {
        loadgen::Config {
            addr,
            conns: conns as usize,
            duration: Some(self.duration),
            messages: None,
            size: self.size,
            progress: false,
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            ..loadgen::Config::default()
        }
    }
}

/// The record of a step whose server did not start.
pub fn failed_to_start(conns: u64, e: &ServerError) -> SweepStep {
    SweepStep {
        conns,
        ok: false,
        failure: Some(format!("the server did not start: {e}")),
        burst: None,
        steady: None,
        tree: tree_figures(&[], None),
        memory: None,
        cpu: None,
        listen_queue: Default::default(),
        server_end: None,
        wall_secs: 0.0,
        timeline: Vec::new(),
    }
}

/// How long a step waits after its load for the server to reap every child, so that the tree's
/// CPU includes their exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One step: fresh server, one load under the sampler, server stopped.
pub fn run_step(
    spec: &ServerSpec,
    step_load: &StepLoad,
    index: usize,
    conns: u64,
    progress: &SweepProgress,
) -> Result<SweepStep, ServerError> {
    let started = Instant::now();
    // Read before the server exists and again after it is gone: the step's memory is every
    // counter's change from the mean of the two (see `MemoryCounters::midpoint`).
    let memory_baseline = crate::sys::memory::read_baseline();
    let mut server = ServerProcess::spawn(spec, READY_TIMEOUT)?;
    let config = step_load.loadgen_config(server.addr(), conns);
    let live_children = Arc::new(AtomicUsize::new(0));
    let watch = progress.watch_load(index, Arc::clone(&live_children), conns, step_load.duration);
    let cpu_window = CpuWindow::open(server.pid());
    let phase = load::run_load(
        config,
        server.pid(),
        step_load.sample_interval,
        live_children,
    );
    drop(watch);
    let drained = wait_for_drain(server.pid());
    let cpu = cpu_window.and_then(|w| w.close(server.pid(), drained, &phase));
    // Whether the server survived the load, before it is asked to stop.
    let died_during_load = server.try_exit();
    let server_end = server.shut_down(STOP_GRACE);
    // Once the server's session is empty: the second half of the step's memory baseline.
    let memory_after = crate::sys::memory::read_baseline();

    let mut problems = Vec::new();
    if let Some(exit) = &died_during_load {
        problems.push(format!("the server exited during the load ({exit})"));
    }
    let (burst, steady, established) = load_figures(&phase.report, &mut problems);
    if !server_end.leftovers.orphans.is_empty() {
        problems.push(format!(
            "{} orphans left after the server stopped",
            server_end.leftovers.orphans.len()
        ));
    }
    if server_end.needed_sigkill {
        problems.push("the server needed SIGKILL to stop".into());
    }
    Ok(SweepStep {
        conns,
        ok: problems.is_empty(),
        failure: (!problems.is_empty()).then(|| problems.join("; ")),
        burst,
        steady,
        tree: tree_figures(&phase.timeline, established),
        memory: load::load_memory(
            memory_baseline,
            memory_after,
            &phase,
            step_load.socket_slab_bytes,
        ),
        cpu,
        listen_queue: phase.listen_queue,
        server_end: Some(server_end),
        wall_secs: started.elapsed().as_secs_f64(),
        timeline: phase.timeline,
    })
}

/// The burst and steady figures of a load and its established connections; what went wrong is
/// added to `problems`.
fn load_figures(
    report: &Result<loadgen::Report, loadgen::Error>,
    problems: &mut Vec<String>,
) -> (Option<BurstFigures>, Option<SteadyFigures>, Option<u64>) {
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            problems.push(format!("the load could not run: {e}"));
            return (None, None, None);
        }
    };
    let c = &report.counters;
    if c.connections_established == 0 {
        problems.extend(load::failures(report));
    } else if c.connections_failed + c.messages_failed > 0 || report.errors.total() > 0 {
        problems.push(format!(
            "{} failed connections, {} failed messages ({})",
            c.connections_failed,
            c.messages_failed,
            report.errors.summary()
        ));
    }
    if c.connections_established > 0 && report.all_first_echo_secs.is_none() {
        problems.push(format!(
            "only {} of {} established connections echoed once",
            c.first_echoes, c.connections_established
        ));
    }
    let latency = LatencyFigures::of(report);
    let burst = BurstFigures {
        connections_attempted: c.connections_attempted,
        connections_established: c.connections_established,
        connections_failed: c.connections_failed,
        connect_p99_us: latency.connect_p99_us,
        first_echo_p50_us: latency.first_echo_p50_us,
        first_echo_p99_us: latency.first_echo_p99_us,
        all_first_echo_secs: report.all_first_echo_secs,
        accept_fork_per_sec: report
            .all_first_echo_secs
            .filter(|s| *s > 0.0)
            .map(|s| c.connections_established as f64 / s),
    };
    let steady = SteadyFigures {
        measured_secs: report.measured_secs,
        messages: c.measured_messages,
        messages_per_sec: report.messages_per_sec,
        echo_p50_us: latency.echo_p50_us,
        echo_p99_us: latency.echo_p99_us,
        echo_p999_us: latency.echo_p999_us,
        echo_mean_us: latency.echo_mean_us,
        read_delay_p99_us: latency.read_delay_p99_us,
        read_delay_mean_us: latency.read_delay_mean_us,
        errors: report.errors.total(),
    };
    (Some(burst), Some(steady), Some(c.connections_established))
}

/// Polls (every 10 ms, up to [`DRAIN_TIMEOUT`]) until the server has no child left, live or
/// zombie; whether it got there. A server that is gone has none.
fn wait_for_drain(pid: i32) -> bool {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        match procfs::census(pid) {
            Ok(c) if c.live.is_empty() && c.zombies.is_empty() => return true,
            Err(_) => return false,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The CPU clocks read when a step's load starts; closed after the server has reaped its
/// children.
struct CpuWindow {
    opened: Instant,
    server_cpu_secs: f64,
    machine_busy_secs: Option<f64>,
}

impl CpuWindow {
    /// `None` when the server's tree cannot be read.
    fn open(server_pid: i32) -> Option<CpuWindow> {
        Some(CpuWindow {
            opened: Instant::now(),
            server_cpu_secs: cpu::tree_cpu_secs(server_pid)?,
            machine_busy_secs: cpu::machine_busy_secs(),
        })
    }

    /// The step's CPU; `None` when the server is gone (its reaped children's time went with it)
    /// or the load did not run.
    fn close(self, server_pid: i32, drained: bool, phase: &load::LoadPhase) -> Option<StepCpu> {
        let server_cpu_secs = cpu::tree_cpu_secs(server_pid)? - self.server_cpu_secs;
        let machine_busy_secs = cpu::machine_busy_secs()
            .zip(self.machine_busy_secs)
            .map(|(after, before)| after - before);
        let counters = &phase.report.as_ref().ok()?.counters;
        Some(StepCpu {
            window_secs: self.opened.elapsed().as_secs_f64(),
            server_cpu_secs,
            loadgen_cpu_secs: phase.loadgen_cpu_secs,
            sampler_cpu_secs: phase.sampler_cpu_secs,
            machine_busy_secs,
            accepted_conns: counters.connections_established,
            echoed_messages: counters.messages_verified + counters.warmup_messages,
            drained,
        })
    }
}

/// The tree's figures for one step from its timeline.
fn tree_figures(timeline: &[Sample], established: Option<u64>) -> TreeFigures {
    let summary = sampler::summarize(timeline);
    let peak = summary.peak_live_children;
    let basis = sampler::peak_samples(timeline, peak, |_| true);
    let mut pss: Vec<u64> = basis.iter().map(|s| s.tree_pss_kib).collect();
    pss.sort_unstable();
    let total_pss_kib = pss.get(pss.len() / 2).copied();
    let parent_cpu_secs = timeline.last().map(|s| s.server_cpu_secs);
    TreeFigures {
        samples: summary.samples,
        peak_live_children: peak as u64,
        max_zombies: summary.max_zombies as u64,
        max_lingering_zombies: summary.max_lingering_zombies as u64,
        total_pss_kib,
        pss_per_child_kib: summary.pss_per_child_kib,
        private_per_child_kib: summary.private_per_child_kib,
        parent_cpu_secs,
        parent_cpu_us_per_conn: match (parent_cpu_secs, established) {
            (Some(cpu), Some(n)) if n > 0 => Some(cpu * 1e6 / n as f64),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(live: usize, unmeasured: usize, tree: u64, cpu: f64) -> Sample {
        Sample {
            t_secs: 0.0,
            live_children: live,
            zombies: 0,
            lingering_zombies: 0,
            server_pss_kib: 100,
            children_pss_kib: tree - 100,
            children_private_kib: (tree - 100) / 2,
            children_rss_kib: tree - 100,
            tree_pss_kib: tree,
            pss_per_child_kib: Some(10.0),
            children_unmeasured: unmeasured,
            memory_reads: 1,
            server_fds: Some(5),
            server_cpu_secs: cpu,
            sample_ms: 1.0,
            memory: None,
        }
    }

    #[test]
    fn tree_memory_is_the_median_of_complete_samples_at_the_peak() {
        let timeline = [
            sample(5, 0, 150, 0.01),
            sample(10, 8, 9999, 0.02), // at the peak but mostly estimated: not used
            sample(10, 0, 210, 0.03),
            sample(10, 0, 200, 0.04),
            sample(10, 0, 205, 0.05),
            sample(3, 0, 130, 0.08),
        ];
        let t = tree_figures(&timeline, Some(10));
        assert_eq!(t.peak_live_children, 10);
        assert_eq!(t.total_pss_kib, Some(205));
        assert_eq!(t.parent_cpu_secs, Some(0.08));
        assert!((t.parent_cpu_us_per_conn.unwrap() - 8000.0).abs() < 1e-6);
        let empty = tree_figures(&[], None);
        assert_eq!(empty.total_pss_kib, None);
        assert_eq!(empty.parent_cpu_us_per_conn, None);
    }
}
