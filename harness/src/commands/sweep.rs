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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capacity::{CapacityModel, LimitInputs, Limits, ModelStep};
use crate::commands::outcome::{SetupError, Verdict};
use crate::commands::plot::plot_report;
use crate::commands::progress::SweepProgress;
use crate::commands::save::save_report;
use crate::commands::sweep_step::{failed_to_start, run_step, StepLoad};
use crate::render::text;
use crate::report::parts::{Environment, ReportKind};
use crate::report::sweep::{SweepParameters, SweepReport, SweepServer, SweepSummary};
use crate::report::write::now_rfc3339;
use crate::report::SCHEMA_VERSION;
use crate::target::error::ServerError;
use crate::target::spec::{server_max_children, ServerSpec};

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
    /// Directory the JSON report and SVGs are written into.
    pub results_dir: PathBuf,
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

/// Runs the whole ladder. `Err` only when the server cannot be started for the first step (a setup
/// problem: every later step would fail the same way); later failures are recorded in their step.
pub fn sweep(spec: &ServerSpec, opts: &SweepOptions) -> Result<SweepReport, ServerError> {
    let started_at = now_rfc3339();
    let t0 = Instant::now();
    let environment = Environment::collect();
    // Read before any server of the sweep exists, so its tasks are not counted as used.
    let limits = Limits::read_from_system(&LimitInputs {
        memory_budget_bytes: Some(opts.memory_budget_bytes),
        pss_fit: None,
        server_max_children: server_max_children(spec),
        source_ips: 1,
    });
    let progress = SweepProgress::new(
        opts.progress && std::io::stderr().is_terminal(),
        opts.ladder.len(),
    );
    let step_load = StepLoad {
        duration: opts.duration,
        size: opts.size,
        sample_interval: opts.sample_interval,
    };
    let mut steps = Vec::with_capacity(opts.ladder.len());
    for (i, &conns) in opts.ladder.iter().enumerate() {
        progress.start_step(i, conns);
        let step = match run_step(spec, &step_load, i, conns, &progress) {
            Ok(step) => step,
            Err(e) if i == 0 => {
                progress.finish();
                return Err(e);
            }
            Err(e) => failed_to_start(conns, &e),
        };
        progress.end_step(&step);
        steps.push(step);
        // Ctrl-C stopped this step's load: the steps that ran are the report.
        if loadgen::interrupt::requested() {
            break;
        }
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
        kind: ReportKind::Sweep,
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

/// Runs the sweep, prints its table and model, writes the report and draws its charts.
pub fn execute(spec: &ServerSpec, opts: &SweepOptions) -> Result<Verdict, SetupError> {
    let report = sweep(spec, opts)?;
    print!("{}", text::sweep_report_text(&report));
    let interrupted = loadgen::interrupt::requested();
    if interrupted {
        println!(
            "interrupted by Ctrl-C: {} of {} steps ran; the report covers those",
            report.steps.len(),
            opts.ladder.len()
        );
    }
    let path = save_report(&opts.results_dir, "sweep", &report.started_at, &report)?;
    // Drawn from the file just written, through the same code as `harness plot`, so a redraw
    // reproduces these files.
    for svg in plot_report(&path, None).map_err(SetupError)? {
        println!("plot: {}", svg.display());
    }
    Ok(Verdict::failed_if(
        report.summary.steps_failed > 0 || interrupted,
    ))
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
}
