//! `harness sweep`: walks a ladder of connection counts against a server and fits the capacity
//! model over the steps. Each step starts a fresh server, runs one `loadgen` load of that many
//! connections under the tree sampler, and stops the server again. The load has two phases that
//! loadgen already separates: the *burst* (every connection opened at once, each sending one
//! message: connect and first-echo latency, and the accept+fork rate until all have echoed) and the
//! *steady* closed-loop phase that follows (messages/s and echo percentiles), during which the
//! sampler sees every connection's child alive and measures the tree's memory.
//!
//! Why a fresh server per step: the memory fit needs each step's PSS to be what that many live
//! children cost, not what earlier steps left in the parent's heap or page cache sharing, and a
//! step that kills the server (a fork failure, a limit) must not take the later steps with it.
//! A long-lived server sees the same per-child cost: children are fresh forks either way.
//!
//! A step that fails is recorded with why, and the sweep goes on to the next.

use std::io::IsTerminal;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capacity::{CapacityModel, LimitInputs, Limits, ModelStep};
use crate::checks;
use crate::load;
use crate::report::{Environment, SCHEMA_VERSION};
use crate::run::STOP_GRACE;
use crate::sampler::{self, Sample};
use crate::server::{ServerError, ServerProcess, ServerSpec};
use crate::sweep_progress::SweepProgress;
use crate::sweep_report::{
    BurstFigures, SteadyFigures, SweepKind, SweepParameters, SweepReport, SweepServer, SweepStep,
    SweepSummary, TreeFigures,
};

/// Validated options of a sweep (clap types stay in `cli.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// Connections per step: ascending, no duplicates, none zero.
    pub ladder: Vec<u64>,
    /// Steady-phase length of each step.
    pub duration: Duration,
    /// Message size in bytes.
    pub size: usize,
    pub memory_budget_bytes: u64,
    pub sample_interval: Duration,
    /// Draw a progress bar (only ever drawn when stderr is a terminal).
    pub progress: bool,
}

/// Parses `1,10,100` into an ascending ladder without duplicates.
pub fn parse_ladder(s: &str) -> Result<Vec<u64>, String> {
    let mut ladder = Vec::new();
    for part in s.split(',').map(str::trim) {
        let n: u64 = part
            .parse()
            .map_err(|_| format!("'{part}' in the ladder is not a whole number"))?;
        if n == 0 {
            return Err("a ladder step of 0 connections measures nothing".into());
        }
        ladder.push(n);
    }
    ladder.sort_unstable();
    ladder.dedup();
    Ok(ladder)
}

/// Parses a byte size: `8GiB`, `512MiB`, `64KiB`, `1G` (binary), `1GB` (decimal), `4096`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 8GiB, 512MiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{s}' (B, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let bytes = (value * mult).round();
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("'{s}' is not a usable size"));
    }
    Ok(bytes as u64)
}

/// The server's `--max-children`: exactly as the built-in server parses its flags; for another
/// contract binary only when given explicitly; unknown for `--server-cmd`.
pub fn server_max_children(spec: &ServerSpec) -> Option<u64> {
    match spec {
        ServerSpec::Contract {
            flags,
            builtin: true,
            ..
        } => {
            let argv = std::iter::once("fork-echo-server".to_string()).chain(flags.iter().cloned());
            fork_echo_server::Config::from_args(argv)
                .ok()
                .map(|config| config.max_children as u64)
        }
        ServerSpec::Contract { flags, .. } => explicit_flag(flags, "--max-children"),
        ServerSpec::Command { .. } => None,
    }
}

fn explicit_flag(flags: &[String], flag: &str) -> Option<u64> {
    let mut value = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == flag {
            value = it.next().and_then(|v| v.parse().ok());
        } else if let Some(v) = f.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            value = v.parse().ok();
        }
    }
    value
}

/// Runs the whole ladder. `Err` only when the server cannot be started for the first step (a setup
/// problem: every later step would fail the same way); later failures are recorded in their step.
pub fn sweep(spec: &ServerSpec, opts: &SweepOptions) -> Result<SweepReport, ServerError> {
    let started_at = crate::report::now_rfc3339();
    let t0 = Instant::now();
    let environment = Environment::collect();
    // Read before any server of the sweep exists, so its tasks are not counted as used.
    let limits = Limits::read_from_system(&LimitInputs {
        memory_budget_bytes: Some(opts.memory_budget_bytes),
        pss_fit: None,
        server_max_children: server_max_children(spec),
        source_ips: 1,
    });
    let progress = SweepProgress::new(opts.progress && std::io::stderr().is_terminal(), opts);
    let mut steps = Vec::with_capacity(opts.ladder.len());
    for (i, &conns) in opts.ladder.iter().enumerate() {
        progress.start_step(i, conns);
        let step = match run_step(spec, opts, i, conns, &progress) {
            Ok(step) => step,
            Err(e) if i == 0 => {
                progress.finish();
                return Err(e);
            }
            Err(e) => failed_to_start(conns, &e),
        };
        progress.end_step(&step);
        steps.push(step);
    }
    progress.finish();

    let model_steps: Vec<ModelStep> = steps
        .iter()
        .map(|s| ModelStep {
            conns: s.conns,
            live_children: s.tree.peak_live_children,
            total_pss_bytes: s.tree.total_pss_kib.map_or(f64::NAN, |k| k as f64 * 1024.0),
            echo_p99_us: s
                .steady
                .as_ref()
                .and_then(|st| st.echo_p99_us)
                .unwrap_or(f64::NAN),
        })
        .collect();
    let capacity = CapacityModel::from_steps(&model_steps, limits);
    Ok(SweepReport {
        schema_version: SCHEMA_VERSION,
        kind: SweepKind::Sweep,
        started_at,
        duration_secs: t0.elapsed().as_secs_f64(),
        parameters: SweepParameters {
            ladder: opts.ladder.clone(),
            duration_secs: opts.duration.as_secs_f64(),
            size: opts.size as u64,
            memory_budget_bytes: opts.memory_budget_bytes,
            sample_interval_ms: opts.sample_interval.as_millis() as u64,
            fresh_server_per_step: true,
        },
        environment,
        server: SweepServer {
            description: spec.describe(),
            speaks_contract: spec.speaks_contract(),
        },
        summary: SweepSummary::of(&steps),
        steps,
        capacity,
    })
}

fn failed_to_start(conns: u64, e: &ServerError) -> SweepStep {
    SweepStep {
        conns,
        ok: false,
        failure: Some(format!("the server did not start: {e}")),
        burst: None,
        steady: None,
        tree: tree_figures(&[], None),
        listen_queue: Default::default(),
        server_end: None,
        wall_secs: 0.0,
        timeline: Vec::new(),
    }
}

/// One step: fresh server, one load under the sampler, server stopped.
fn run_step(
    spec: &ServerSpec,
    opts: &SweepOptions,
    index: usize,
    conns: u64,
    progress: &SweepProgress,
) -> Result<SweepStep, ServerError> {
    let started = Instant::now();
    let mut server = ServerProcess::spawn(spec, checks::READY_TIMEOUT)?;
    let config = loadgen::Config {
        addr: server.addr(),
        conns: conns as usize,
        duration: Some(opts.duration),
        messages: None,
        size: opts.size,
        progress: false,
        ..loadgen::Config::default()
    };
    let live_children = Arc::new(AtomicUsize::new(0));
    let watch = progress.watch_load(index, Arc::clone(&live_children), conns, opts.duration);
    let phase = load::run_load(config, server.pid(), opts.sample_interval, live_children);
    drop(watch);
    // Whether the server survived the load, before it is asked to stop.
    let died_during_load = server.try_exit();
    let server_end = server.shut_down(STOP_GRACE);

    let mut problems = Vec::new();
    if let Some(exit) = &died_during_load {
        problems.push(format!("the server exited during the load ({exit})"));
    }
    let (burst, steady, established) = match &phase.report {
        Ok(report) => {
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
            let pct = |h: &loadgen::HistogramReport, p| load::percentile_us(h, p);
            let burst = BurstFigures {
                connections_attempted: c.connections_attempted,
                connections_established: c.connections_established,
                connections_failed: c.connections_failed,
                connect_p99_us: pct(&report.latency.connect, 99.0),
                first_echo_p50_us: pct(&report.latency.first_echo, 50.0),
                first_echo_p99_us: pct(&report.latency.first_echo, 99.0),
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
                echo_p50_us: pct(&report.latency.echo, 50.0),
                echo_p99_us: pct(&report.latency.echo, 99.0),
                echo_p999_us: pct(&report.latency.echo, 99.9),
                errors: report.errors.total(),
            };
            (Some(burst), Some(steady), Some(c.connections_established))
        }
        Err(e) => {
            problems.push(format!("the load could not run: {e}"));
            (None, None, None)
        }
    };
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
        listen_queue: phase.listen_queue,
        server_end: Some(server_end),
        wall_secs: started.elapsed().as_secs_f64(),
        timeline: phase.timeline,
    })
}

/// The tree's figures for one step from its timeline.
fn tree_figures(timeline: &[Sample], established: Option<u64>) -> TreeFigures {
    let summary = sampler::summarize(timeline);
    let peak = summary.peak_live_children;
    let at_peak: Vec<&Sample> = timeline
        .iter()
        .filter(|s| s.live_children == peak && peak > 0)
        .collect();
    let complete: Vec<&Sample> = at_peak
        .iter()
        .copied()
        .filter(|s| s.children_unmeasured == 0)
        .collect();
    let basis = if complete.is_empty() {
        &at_peak
    } else {
        &complete
    };
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

    #[test]
    fn ladders_are_sorted_and_checked() {
        assert_eq!(parse_ladder("100, 1,10,10").unwrap(), vec![1, 10, 100]);
        assert!(parse_ladder("1,0").unwrap_err().contains("0 connections"));
        assert!(parse_ladder("1,x").unwrap_err().contains("'x'"));
        assert!(parse_ladder("").is_err());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_bytes("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("8G").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("512mib").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("8 parsecs").unwrap_err().contains("unit"));
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn max_children_comes_from_the_flags_the_server_gets() {
        let builtin = ServerSpec::builtin(&[]).unwrap();
        assert_eq!(
            server_max_children(&builtin),
            Some(4096),
            "the server's default"
        );
        let limited = ServerSpec::builtin(&["--max-children".into(), "64".into()]).unwrap();
        assert_eq!(server_max_children(&limited), Some(64));
        let eq = ServerSpec::builtin(&["--max-children=32".into()]).unwrap();
        assert_eq!(server_max_children(&eq), Some(32));
        let other = ServerSpec::command("socat TCP-LISTEN:{port},fork PIPE").unwrap();
        assert_eq!(server_max_children(&other), None);
        assert_eq!(
            explicit_flag(&["--max-children".into(), "9".into()], "--max-children"),
            Some(9)
        );
        assert_eq!(
            explicit_flag(&["--backlog".into(), "9".into()], "--max-children"),
            None
        );
    }

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
