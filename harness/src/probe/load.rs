//! The glue between the harness and `loadgen`: one load phase is `loadgen::run_auto` on this thread
//! while the sampler thread watches the server's tree, with the kernel's listen-queue counters
//! read before and after. `loadgen::run` builds its own tokio runtime, so this must be called
//! from a plain thread (never from inside a runtime).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capacity::StepMemory;
use crate::probe::sampler::{self, Sampler};
use crate::report::parts::{ListenCounters, MemoryCounters, Sample};
use crate::sys::cpu;

/// What one load phase produced.
pub struct LoadPhase {
    /// The loadgen report, or why the load could not run at all.
    pub report: Result<loadgen::Report, loadgen::Error>,
    pub timeline: Vec<Sample>,
    /// Change of the listen-queue counters over the phase.
    pub listen_queue: ListenCounters,
    pub wall_secs: f64,
    /// CPU seconds the load generator used: this process's over the load (its tokio threads) less
    /// the sampler thread's, plus the worker processes it started and reaped; `None` if unknown.
    pub loadgen_cpu_secs: Option<f64>,
    /// CPU seconds of the sampler thread (the harness measuring, not loading).
    pub sampler_cpu_secs: Option<f64>,
}

/// What a load cost in memory: every counter's change at the tree's peak from the mean of the
/// readings taken before the server started and after it was gone (`MemoryCounters::midpoint`),
/// less the load generator's share (its sockets x `socket_slab_bytes`, when known). `None` when a
/// reading is missing or no sample saw a child. `harness run` and each sweep step measure it so.
pub fn load_memory(
    before: Option<MemoryCounters>,
    after: Option<MemoryCounters>,
    phase: &LoadPhase,
    socket_slab_bytes: Option<f64>,
) -> Option<StepMemory> {
    let (before, after) = before.zip(after)?;
    let established = phase
        .report
        .as_ref()
        .map_or(0, |r| r.counters.connections_established);
    sampler::step_memory(
        &MemoryCounters::midpoint(&before, &after),
        &phase.timeline,
        established,
        socket_slab_bytes,
    )
}

/// Runs `config` against the server whose pid is `server_pid`, sampling its tree every `interval`
/// and keeping its latest live child count in `live_children` (see [`Sampler::start`]).
pub fn run_load(
    config: loadgen::Config,
    server_pid: i32,
    interval: Duration,
    live_children: Arc<AtomicUsize>,
) -> LoadPhase {
    // `--engine auto` as the `loadgen` binary decides it (one probe connection, before anything
    // is measured): the threads engine for a fork-per-connection server, the tokio engine for
    // one that serves connections in its listening process (`--server-cmd` an event loop).
    let mut config = config;
    loadgen::choose_engine(&mut config);
    let listen_before = ListenCounters::read().unwrap_or_default();
    let started = Instant::now();
    let own_before = cpu::own_secs();
    let reaped_before = cpu::reaped_children_secs();
    let sampler = Sampler::start(server_pid, interval, live_children);
    // The same path as the `loadgen` binary: one process when the descriptor limit allows,
    // else worker processes of the loadgen binary built beside this one, merged exactly.
    let report = loadgen::run_auto(config, None, loadgen_binary().as_deref());
    let (timeline, sampler_cpu_secs) = match sampler {
        Ok(sampler) => sampler.finish(),
        Err(_) => (Vec::new(), None),
    };
    // The server is this process's child too, but it is not reaped until after this: the
    // children's time gained here is the worker processes'.
    let loadgen_cpu_secs = match (
        own_before,
        cpu::own_secs(),
        reaped_before,
        cpu::reaped_children_secs(),
    ) {
        (Some(o0), Some(o1), Some(c0), Some(c1)) => {
            Some((o1 - o0 - sampler_cpu_secs.unwrap_or(0.0)).max(0.0) + (c1 - c0))
        }
        _ => None,
    };
    let listen_queue = ListenCounters::read()
        .unwrap_or_default()
        .since(&listen_before);
    LoadPhase {
        report,
        timeline,
        listen_queue,
        wall_secs: started.elapsed().as_secs_f64(),
        loadgen_cpu_secs,
        sampler_cpu_secs,
    }
}

/// The `loadgen` binary beside this program (`target/<profile>/`), or one directory up when
/// this is a test binary in `target/<profile>/deps/`.
fn loadgen_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("loadgen"), dir.parent()?.join("loadgen")]
        .into_iter()
        .find(|p| p.is_file())
}

/// The latency at `percentile` of a loadgen histogram, in microseconds.
pub fn percentile_us(h: &loadgen::HistogramReport, percentile: f64) -> Option<f64> {
    h.value_at_percentile_us(percentile).map(|v| v as f64)
}

/// The latency figures the harness reports from a loadgen report, in microseconds: a run's summary
/// and a sweep step's burst and steady figures are both made of these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyFigures {
    pub connect_p99_us: Option<f64>,
    /// Connect start to first full echo: carries accept + fork on a fork server.
    pub first_echo_p50_us: Option<f64>,
    pub first_echo_p99_us: Option<f64>,
    pub echo_p50_us: Option<f64>,
    pub echo_p99_us: Option<f64>,
    pub echo_p999_us: Option<f64>,
    /// Mean echo latency of the measured window (Little's law's measured side); `None` when no
    /// echo was measured.
    pub echo_mean_us: Option<f64>,
    /// The part of each echo that was loadgen's own wait to read it (its read delay): p99 and
    /// mean; `None` when loadgen did not report it or measured no echo.
    pub read_delay_p99_us: Option<f64>,
    pub read_delay_mean_us: Option<f64>,
}

impl LatencyFigures {
    pub fn of(report: &loadgen::Report) -> LatencyFigures {
        let l = &report.latency;
        LatencyFigures {
            connect_p99_us: percentile_us(&l.connect, 99.0),
            first_echo_p50_us: percentile_us(&l.first_echo, 50.0),
            first_echo_p99_us: percentile_us(&l.first_echo, 99.0),
            echo_p50_us: percentile_us(&l.echo, 50.0),
            echo_p99_us: percentile_us(&l.echo, 99.0),
            echo_p999_us: percentile_us(&l.echo, 99.9),
            echo_mean_us: (l.echo.count > 0).then_some(l.echo.mean_us),
            read_delay_p99_us: l.read_delay.as_ref().and_then(|d| percentile_us(d, 99.0)),
            read_delay_mean_us: l
                .read_delay
                .as_ref()
                .and_then(|d| (d.count > 0).then_some(d.mean_us)),
        }
    }
}

/// Why a finished load counts as failed (empty when it passed): no connection, an interruption,
/// or more failed sessions or messages than the thresholds the load ran with (recorded in its
/// parameters; 0 unless `harness run --max-error-rate/--max-session-failures` raised them).
pub fn failures(report: &loadgen::Report) -> Vec<String> {
    let p = &report.parameters;
    report.failed_checks(p.max_error_rate, p.max_session_failures, &[])
}
