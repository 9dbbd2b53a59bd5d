//! Runs a load: checks limits, starts one task per connection, opens the barrier when the connect
//! phase is over, enforces the hard run deadline, and assembles the [`Report`] from the shards.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use crate::config::end_margin;
use crate::config::stages::{StageUnit, Stages};
use crate::engine::progress::Progress;
use crate::engine::sessions::Sessions;
use crate::engine::shards::Shards;
use crate::report::hlog::IntervalLog;
use crate::report::timeline::seconds_to_points;
use crate::report::{decode_histogram, HistogramReport, Latencies, Parameters, TimelinePoint};
use crate::session::pacer::Pacer;
use crate::session::stats::{ShardStats, Stats};
use crate::session::{RunShared, Steady, STOP_DEADLINE, STOP_INTERRUPT};
use crate::{
    engine::limits, interrupt, new_histogram, report::environment, Config, Error, Report,
    SCHEMA_VERSION,
};

/// Runs `config` on runtimes of its own (one `current_thread` runtime per thread, connections
/// sharded over them; see `engine::shards`) and returns the report. Blocks the calling thread;
/// call it from a plain thread, not from inside a runtime (use [`run_async`]).
pub fn run(config: Config) -> Result<Report, Error> {
    config.validate()?;
    run_validated(config)
}

/// [`run`] for a config its caller has just validated (`run_auto`): validated once per run.
pub(crate) fn run_validated(config: Config) -> Result<Report, Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::Config(
            "loadgen::run was called inside a tokio runtime; use loadgen::run_async there".into(),
        ));
    }
    // The threads engine's sessions are threads of their own: one runtime orchestrates.
    let threads = match config.engine().thread_per_connection() {
        true => 1,
        false => config.threads.unwrap_or_else(default_threads),
    };
    let shards = Shards::start(threads)?;
    let report = shards.block_on(run_on(config, shards.handles()));
    shards.stop();
    report
}

/// Event-loop threads when `--threads` is not given: one per CPU this process may run on.
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Checks `config` and this process's limits (RLIMIT_NOFILE, raised to the hard limit first, and
/// the ephemeral ports) as [`run`] will, without connecting: callers that do other work before a
/// load (the harness's checks, a sweep's smaller steps) call it first to fail before that work.
pub fn preflight(config: &Config) -> Result<(), Error> {
    config.validate()?;
    let (nofile, _) = limits::raise_nofile_limit();
    limits::preflight(
        config.conns as u64,
        config.source_ips.len() as u64,
        nofile,
        limits::ephemeral_port_range(),
    )
}

/// Runs `config` on the current tokio runtime (which must have the time and I/O drivers).
pub async fn run_async(config: Config) -> Result<Report, Error> {
    run_on(config, &[]).await
}

/// What the measured phase was, as the runner saw it, for the report.
struct Phases {
    t0: Instant,
    started_unix_secs: f64,
    /// The barrier: every connection had connected and echoed once, or failed.
    connected: Instant,
    /// When the measured phase's sending (and a `--stages` plan) starts.
    schedule_start: Instant,
    measure_start: Instant,
    send_until: Option<Instant>,
    /// When the last session ended.
    end: Instant,
    last_completion: Option<Instant>,
    interrupted: bool,
}

/// Runs `config`, connection `i` on `shards[i % shards.len()]` (on the current runtime when
/// `shards` is empty) or, with the threads engine, on a thread of its own.
async fn run_on(config: Config, shards: &[Handle]) -> Result<Report, Error> {
    preflight(&config)?;
    let started_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let t0 = Instant::now();
    let stats_shards = match config.engine().thread_per_connection() {
        true => crate::engine::threads::STATS_SHARDS / 2,
        false => shards.len().max(default_threads()),
    };
    let overall = config.deadline.map(|d| t0 + d);
    let cap = |t: Instant| overall.map_or(t, |o| t.min(o));
    let connect_deadline = cap(t0 + config.connect_phase_bound());
    let (steady_tx, steady_rx) = watch::channel(None);
    let (pacer, pacer_driver) = match config.rate {
        Some(_) => {
            let (pacer, driver) = Pacer::start().map_err(|e| {
                Error::Limit(format!(
                    "cannot create the --rate send timer (timerfd): {e}"
                ))
            })?;
            (Some(pacer), Some(driver))
        }
        None => (None, None),
    };
    let shared = Arc::new(RunShared {
        stats: Stats::new(
            stats_shards,
            config.hlog.as_ref().map(|_| config.hlog_interval),
        ),
        t0,
        connect_deadline,
        // Connection stages open connections on the plan: no connect phase to wait for.
        connecting: std::sync::atomic::AtomicUsize::new(match config.staged_connections() {
            true => 0,
            false => config.conns,
        }),
        connect_phase_done: Notify::new(),
        steady: steady_rx,
        pacer,
        stop: std::sync::atomic::AtomicU8::new(0),
        open_sockets: Default::default(),
        config,
    });
    let mut sessions = Sessions::start(&shared, shards)?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let hlog = IntervalLog::new(started_unix_secs, shared.config.hlog_interval);
    let monitor = tokio::spawn(monitor(shared.clone(), stop_rx, hlog));
    let phases = measure(&shared, &mut sessions, steady_tx, cap, started_unix_secs).await;
    if let Some(driver) = pacer_driver {
        driver.abort();
    }
    let _ = stop_tx.send(());
    let (timeline, hlog) = monitor.await.unwrap_or_else(|_| {
        (
            Vec::new(),
            IntervalLog::new(0.0, shared.config.hlog_interval),
        )
    });
    assemble(&shared, &phases, timeline, hlog)
}

/// Opens the barrier once the connect phase is over, then waits for every session; past the
/// deadline (plus a grace second for sessions to record their own cut-off), or at Ctrl-C,
/// whatever is left is stopped. Each session counts its own end exactly once, stopped or not
/// (`session::Ending`), so nothing is counted here.
async fn measure(
    shared: &RunShared,
    sessions: &mut Sessions,
    steady_tx: watch::Sender<Option<Steady>>,
    cap: impl Fn(Instant) -> Instant,
    started_unix_secs: f64,
) -> Phases {
    let config = &shared.config;
    let t0 = shared.t0;
    // The barrier: every connection has connected and echoed once, or failed, or time is up,
    // or Ctrl-C.
    while shared.connecting.load(Ordering::Acquire) > 0 && !interrupt::requested() {
        tokio::select! {
            _ = shared.connect_phase_done.notified() => {}
            _ = tokio::time::sleep_until(shared.connect_deadline) => break,
            _ = interrupted() => break,
        }
    }
    let connected = Instant::now();
    let barrier = crate::engine::start::wait_for_go(config.stdio_barrier, connected).await;
    let barrier = crate::engine::start::hold_until_start_at(config.start_at, barrier).await;
    let schedule_start = barrier + config.schedule_lead();
    let measure_start = schedule_start + config.warmup;
    let send_until = config.duration.map(|d| measure_start + d);
    let planned = config.planned_send_time().unwrap_or_default();
    let deadline = cap(schedule_start + planned + end_margin(connected - t0));
    let _ = steady_tx.send(Some(Steady {
        schedule_start,
        measure_start,
        send_until,
        deadline,
    }));

    let mut last_completion: Option<Instant> = None;
    let hard_stop = deadline + Duration::from_secs(1);
    let mut stopped_by = None;
    loop {
        tokio::select! {
            ended = sessions.next() => match ended {
                None => break,
                Some(done) => last_completion = last_completion.max(done),
            },
            _ = tokio::time::sleep_until(hard_stop) => {
                stopped_by = Some(STOP_DEADLINE);
                break;
            }
            _ = interrupted() => {
                stopped_by = Some(STOP_INTERRUPT);
                break;
            }
        }
    }
    if let Some(cause) = stopped_by {
        shared.stop.store(cause, Ordering::Release);
        last_completion = last_completion.max(sessions.stop().await);
    }
    Phases {
        t0,
        started_unix_secs,
        connected,
        schedule_start,
        measure_start,
        send_until,
        end: Instant::now(),
        last_completion,
        interrupted: stopped_by == Some(STOP_INTERRUPT) || interrupt::requested(),
    }
}

/// The report of a finished run, from its sessions' records and the runner's `phases`; writes
/// the `--hlog` interval log.
fn assemble(
    shared: &RunShared,
    phases: &Phases,
    mut timeline: Vec<TimelinePoint>,
    mut hlog: IntervalLog,
) -> Result<Report, Error> {
    let config = &shared.config;
    let mut all = shared.stats.take_merged(Some(&mut hlog))?;
    timeline.extend(seconds_to_points(std::mem::take(&mut all.timeline))?);
    let mut timeline = combine_points(timeline)?;
    if let Some(stages) = &config.stages {
        let plan_start = phases.schedule_start.duration_since(phases.t0);
        label_stages(stages, plan_start, &mut timeline, &mut hlog);
    }
    all.counters.peak_established = shared.stats.peak_established.load(Ordering::Relaxed) as u64;

    // Tasks aborted before their first poll never counted themselves: they never started.
    let c = &all.counters;
    let ended = c.connections_not_started
        + c.connections_failed
        + c.sessions_failed
        + c.connections_interrupted
        + c.sessions_completed;
    all.counters.connections_not_started += (config.conns as u64).saturating_sub(ended);

    let c = &all.counters;
    let all_first_echo_secs = (c.connections_established > 0
        && c.first_echoes == c.connections_established)
        .then(|| all.last_first_echo_us as f64 / 1e6);
    let measured = match phases.send_until {
        Some(until) => until
            .min(phases.end)
            .saturating_duration_since(phases.measure_start),
        None => phases
            .last_completion
            .map(|l| l.saturating_duration_since(phases.measure_start))
            .unwrap_or_default(),
    };
    let measured_secs = measured.as_secs_f64();
    let messages_per_sec = if measured_secs > 0.0 {
        c.measured_messages as f64 / measured_secs
    } else {
        0.0
    };
    if let Some(path) = &config.hlog {
        hlog.write(path)?;
    }
    let latency = latencies(config, &all)?;
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        parameters: parameters(config),
        environment: environment::current(),
        merged_from: Vec::new(),
        identity: crate::report::identity::of_run(
            config,
            phases.started_unix_secs,
            phases.measure_start.duration_since(phases.t0),
            measured,
        ),
        merge: None,
        started_unix_secs: phases.started_unix_secs,
        elapsed_secs: phases.end.duration_since(phases.t0).as_secs_f64(),
        connect_phase_secs: phases.connected.duration_since(phases.t0).as_secs_f64(),
        all_first_echo_secs,
        measured_secs,
        messages_per_sec,
        run_deadline_hit: all.errors.session.run_deadline
            + all.errors.connect.run_deadline
            + all.counters.connections_not_started
            > 0
            && !phases.interrupted,
        interrupted: phases.interrupted,
        counters: all.counters,
        latency,
        errors: all.errors,
        timeline,
    })
}

/// The report's histograms, with the run's percentiles.
fn latencies(config: &Config, all: &ShardStats) -> Result<Latencies, Error> {
    let p = &config.percentiles;
    let open_loop = |h| match config.rate {
        Some(_) => HistogramReport::from_histogram(h, p).map(Some),
        None => Ok(None),
    };
    Ok(Latencies {
        connect: HistogramReport::from_histogram(&all.connect, p)?,
        first_echo: HistogramReport::from_histogram(&all.first_echo, p)?,
        echo: HistogramReport::from_histogram(&all.echo, p)?,
        echo_uncorrected: open_loop(&all.echo_uncorrected)?,
        send_lag: open_loop(&all.send_lag)?,
        read_delay: Some(HistogramReport::from_histogram(&all.read_delay, p)?),
    })
}

fn parameters(c: &Config) -> Parameters {
    Parameters {
        target: c.addr.to_string(),
        conns: c.conns as u64,
        duration_secs: c.duration.map(|d| d.as_secs_f64()),
        messages_per_connection: c.messages,
        size: c.size as u64,
        pipeline: c.pipeline as u64,
        rate: c.rate,
        connect_rate: c.connect_rate,
        connect_timeout_secs: c.connect_timeout.as_secs_f64(),
        io_timeout_secs: c.io_timeout.as_secs_f64(),
        warmup_secs: c.warmup.as_secs_f64(),
        source_ips: c.source_ips.iter().map(|ip| ip.to_string()).collect(),
        percentiles: c.percentiles.clone(),
        max_error_rate: c.max_error_rate,
        max_session_failures: c.max_session_failures,
        slos: c.slos.iter().map(|s| s.to_string()).collect(),
        processes: 1,
        engine: c.engine().name().into(),
        stages: c
            .stages
            .as_ref()
            .map(|s| s.stages.clone())
            .unwrap_or_default(),
    }
}

/// Every 250 ms: update the progress line; every second: turn finished seconds of the timeline
/// into points and finished `--hlog` intervals into compressed ones, so a long run keeps a few
/// live histograms, not one per second.
async fn monitor(
    shared: Arc<RunShared>,
    mut stop: oneshot::Receiver<()>,
    mut hlog: IntervalLog,
) -> (Vec<TimelinePoint>, IntervalLog) {
    let progress = Progress::new(shared.config.progress);
    let mut points = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_drain = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        let now_sec = Instant::now().duration_since(shared.t0).as_secs();
        if now_sec > last_drain + 1 {
            last_drain = now_sec - 1;
            // Seconds before `now - 1` are complete (a late recording would only add a second
            // point for the same second, which `combine_points` folds in).
            if let Ok(p) = seconds_to_points(shared.stats.drain_timeline(last_drain)) {
                points.extend(p);
            }
            // Compressing cannot fail for histograms of the shared range; were it to, the
            // interval would be missing and the log's totals would show it.
            let _ = shared
                .stats
                .drain_intervals(Duration::from_secs(last_drain), &mut hlog);
        }
        if let Some(p) = &progress {
            let (echoes, errors) = shared.stats.progress_counts();
            let open = shared.stats.current_established.load(Ordering::Relaxed);
            p.update(open, echoes, errors);
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    (points, hlog)
}

/// Resolves once Ctrl-C asked the load to stop (polled: the flag is set from a signal thread).
async fn interrupted() {
    while !interrupt::requested() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--stages`: marks each timeline second with the stage its middle belongs to, and notes in the
/// hlog where each stage starts. `plan_start` is when the plan started, since the run started.
fn label_stages(
    stages: &Stages,
    plan_start: Duration,
    timeline: &mut [TimelinePoint],
    hlog: &mut IntervalLog,
) {
    let offset = plan_start.as_secs_f64();
    for p in timeline.iter_mut() {
        p.stage = stages
            .stage_at(p.second as f64 + 0.5 - offset)
            .map(|s| s as u32);
    }
    let n = stages.stages.len();
    for (i, (start, stage)) in stages.starts().into_iter().zip(&stages.stages).enumerate() {
        let at = offset + start;
        let index = (at / hlog.interval.as_secs_f64()) as u64;
        let target = match stage.unit {
            StageUnit::Connections => format!("{} connections", stage.target),
            StageUnit::MessagesPerSec => format!("{} messages/s", stage.target),
        };
        hlog.note(
            index,
            format!(
                "[Stage {} of {n} starts at {at:.3} s: {} s to {target}]",
                i + 1,
                stage.duration_secs
            ),
        );
    }
}

/// Sorts points by second and folds points of the same second into one.
fn combine_points(mut points: Vec<TimelinePoint>) -> Result<Vec<TimelinePoint>, Error> {
    points.sort_by_key(|p| p.second);
    let mut out: Vec<TimelinePoint> = Vec::with_capacity(points.len());
    for p in points {
        match out.last_mut() {
            Some(last) if last.second == p.second => {
                let mut h = new_histogram();
                for hdr in [&last.hdr, &p.hdr] {
                    h.add(decode_histogram(hdr)?)
                        .map_err(|e| Error::Merge(format!("{e:?}")))?;
                }
                let stage = last.stage.or(p.stage);
                *last = TimelinePoint::new(
                    p.second,
                    last.messages + p.messages,
                    last.errors + p.errors,
                    last.established + p.established,
                    last.closed + p.closed,
                    &h,
                )?;
                last.stage = stage;
            }
            _ => out.push(p),
        }
    }
    Ok(out)
}
