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
//!
//! Before the ladder the sweep measures the slab of one loopback socket (the load generator's
//! share of each step's kernel memory); with `--validate` it runs one more step beyond the ladder,
//! after the fit, and compares its memory with the prediction.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capacity::cpu::CoresTarget;
use crate::capacity::usl::ThroughputStep;
use crate::capacity::{
    CapacityModel, LimitInputs, Limits, ModelStep, Prediction, ValidationFigures,
};
use crate::commands::outcome::{SetupError, Verdict};
use crate::commands::plot::plot_report;
use crate::commands::progress::SweepProgress;
use crate::commands::save::save_report;
use crate::commands::sweep_step::{failed_to_start, run_step, StepLoad};
use crate::probe::socket_cost;
use crate::render::text;
use crate::report::parts::{Environment, ReportKind};
use crate::report::sweep::{
    SweepParameters, SweepReport, SweepServer, SweepStep, SweepSummary, Validation,
};
use crate::report::write::now_rfc3339;
use crate::report::SCHEMA_VERSION;
use crate::subject::error::ServerError;
use crate::subject::spec::{server_max_children, ServerSpec};

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
    /// `--validate`: one more step after the fit, not fitted.
    pub validate: Option<ValidateAt>,
    /// Directory the JSON report and SVGs are written into.
    pub results_dir: PathBuf,
    /// Each step's connect timeout: a 50,000-connection burst on two cores takes minutes, far
    /// past loadgen's 5 s default.
    pub connect_timeout: Duration,
    /// Each step's echo timeout (the first echo waits behind the same burst).
    pub io_timeout: Duration,
    /// `--target-rate` / `--target-conns`: the load to answer "cores needed" for.
    pub target: Option<CoresTarget>,
}

/// The `--target-rate` / `--target-conns` pair (either may be left out, as 0); `None` when both
/// are; an error when one is negative or not finite.
pub fn cores_target(rate: Option<f64>, conns: Option<f64>) -> Result<Option<CoresTarget>, String> {
    for (flag, v) in [("--target-rate", rate), ("--target-conns", conns)] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(format!("{flag} must be a rate of 0 or more per second"));
        }
    }
    if rate.is_none() && conns.is_none() {
        return Ok(None);
    }
    Ok(Some(CoresTarget {
        messages_per_sec: rate.unwrap_or(0.0),
        conns_per_sec: conns.unwrap_or(0.0),
    }))
}

/// Where `--validate` checks the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidateAt {
    /// [`AUTO_VALIDATE_FACTOR`] x the largest ladder step, cut to what the machine's limits allow.
    Auto,
    Conns(u64),
}

/// How far beyond the ladder `--validate` without a number goes.
pub const AUTO_VALIDATE_FACTOR: f64 = 2.5;

/// `--validate`'s value: a connection count, or `auto` (the flag without a number).
pub fn parse_validate(s: &str) -> Result<ValidateAt, String> {
    if s == "auto" {
        return Ok(ValidateAt::Auto);
    }
    match s.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("'{s}' is not a connection count (e.g. 10000)")),
        Ok(n) => Ok(ValidateAt::Conns(n)),
    }
}

/// The validation step's connection count, or why it cannot run: the first limit below it (name
/// and knob). `Auto` stays under the binding limit (90% of it, so the step does not sit on it).
pub fn validation_conns(
    at: ValidateAt,
    largest_step: u64,
    prediction: Option<&Prediction>,
) -> Result<u64, String> {
    let wanted = match at {
        ValidateAt::Conns(n) => n,
        ValidateAt::Auto => {
            let far = (largest_step as f64 * AUTO_VALIDATE_FACTOR).round() as u64;
            let allowed = prediction.map_or(far, |p| p.max_connections / 10 * 9);
            let n = far.min(allowed);
            if n <= largest_step {
                let limit = prediction.map_or("?".to_string(), |p| {
                    format!(
                        "{} allows {} (raise with: {})",
                        p.binding, p.max_connections, p.knob
                    )
                });
                return Err(format!(
                    "no room beyond the ladder's {largest_step} connections: {limit}"
                ));
            }
            return Ok(n);
        }
    };
    if let Some(c) =
        prediction.and_then(|p| p.candidates.iter().find(|c| c.max_connections < wanted))
    {
        return Err(format!(
            "{wanted} connections exceed {} ({} allowed: {}); raise with: {}",
            c.kind, c.max_connections, c.detail, c.knob
        ));
    }
    Ok(wanted)
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
        server_max_children: server_max_children(spec),
        source_ips: 1,
    });
    let progress = SweepProgress::new(
        opts.progress && std::io::stderr().is_terminal(),
        opts.ladder.len(),
    );
    // Before any server: the load generator's share of each step's slab is its sockets x this.
    let socket_slab_bytes = socket_cost::socket_slab_bytes(socket_cost::PAIRS);
    let step_load = StepLoad {
        duration: opts.duration,
        size: opts.size,
        sample_interval: opts.sample_interval,
        socket_slab_bytes,
        connect_timeout: opts.connect_timeout,
        io_timeout: opts.io_timeout,
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

    let capacity = fit_capacity(&steps, limits, opts.target);
    let validation = opts
        .validate
        .map(|at| validate(spec, &step_load, opts, at, &capacity, &progress));
    progress.finish();
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
            validate_conns: validation.as_ref().map(|v| v.conns),
            connect_timeout_secs: Some(opts.connect_timeout.as_secs_f64()),
            io_timeout_secs: Some(opts.io_timeout.as_secs_f64()),
            target: opts.target,
        },
        environment,
        server: SweepServer {
            description: spec.describe(),
            speaks_contract: spec.speaks_contract(),
        },
        summary: SweepSummary::of(&steps),
        steps,
        capacity,
        socket_slab_bytes,
        validation,
    })
}

/// The capacity model of the steps, with "cores needed" answered for `target` when asked.
fn fit_capacity(steps: &[SweepStep], limits: Limits, target: Option<CoresTarget>) -> CapacityModel {
    let model_steps: Vec<ModelStep> = steps.iter().map(model_step).collect();
    let mut capacity = CapacityModel::from_steps(&model_steps, limits);
    if let (Some(cpu), Some(t)) = (capacity.cpu.as_mut(), target) {
        cpu.target = Some(cpu.cores_needed(t.messages_per_sec, t.conns_per_sec));
    }
    capacity
}

fn model_step(s: &SweepStep) -> ModelStep {
    ModelStep {
        conns: s.conns,
        live_children: s.tree.peak_live_children,
        total_pss_bytes: s.tree.total_pss_kib.map_or(f64::NAN, |k| k as f64 * 1024.0),
        echo_p99_us: s
            .steady
            .as_ref()
            .and_then(|st| st.echo_p99_us)
            .unwrap_or(f64::NAN),
        memory: s.memory,
        throughput: throughput_step(s),
        cpu: s.cpu,
    }
}

/// The step as the throughput model sees it: its established connections against its steady
/// throughput, and Little's law beside the measured mean echo latency.
fn throughput_step(s: &SweepStep) -> Option<ThroughputStep> {
    let established = s.burst.as_ref()?.connections_established;
    let steady = s.steady.as_ref()?;
    (established > 0 && steady.messages_per_sec > 0.0).then(|| ThroughputStep {
        conns: s.conns,
        established,
        messages_per_sec: steady.messages_per_sec,
        littles_law_latency_us: established as f64 / steady.messages_per_sec * 1e6,
        measured_mean_echo_us: steady.echo_mean_us,
    })
}

/// The `--validate` step: refused (with the limit and knob) when the machine's limits do not allow
/// it, else run like a ladder step and compared with the model fitted without it.
fn validate(
    spec: &ServerSpec,
    step_load: &StepLoad,
    opts: &SweepOptions,
    at: ValidateAt,
    capacity: &CapacityModel,
    progress: &SweepProgress,
) -> Validation {
    let largest = opts.ladder.last().copied().unwrap_or(0);
    let refused = |conns, why: String| Validation {
        conns,
        refused: Some(why),
        figures: None,
        step: None,
    };
    let conns = match validation_conns(at, largest, capacity.prediction.as_ref()) {
        Ok(n) => n,
        Err(why) => {
            let conns = match at {
                ValidateAt::Conns(n) => n,
                ValidateAt::Auto => 0,
            };
            return refused(conns, why);
        }
    };
    let index = opts.ladder.len();
    progress.start_step(index, conns);
    let step = match run_step(spec, step_load, index, conns, progress) {
        Ok(step) => step,
        Err(e) => failed_to_start(conns, &e),
    };
    progress.end_step(&step);
    let measured = model_step(&step);
    let figures = match (&capacity.total_memory, &measured.memory) {
        (Some(model), Some(memory)) => Some(ValidationFigures::of(
            model,
            capacity.memory_fit.as_ref(),
            conns,
            measured.live_children,
            memory,
            measured
                .total_pss_bytes
                .is_finite()
                .then_some(measured.total_pss_bytes),
        )),
        _ => None,
    };
    let why_missing = match (&capacity.total_memory, &measured.memory) {
        (None, _) => Some("the ladder fitted no total memory model".to_string()),
        (_, None) => Some(format!(
            "the step measured no memory ({})",
            step.failure.as_deref().unwrap_or("no sample at its peak")
        )),
        _ => None,
    };
    Validation {
        conns,
        refused: why_missing,
        figures,
        step: Some(step),
    }
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

    #[test]
    fn cores_targets_take_either_rate_and_refuse_negative_ones() {
        assert_eq!(cores_target(None, None), Ok(None));
        let t = cores_target(Some(50_000.0), None).unwrap().unwrap();
        assert_eq!((t.messages_per_sec, t.conns_per_sec), (50_000.0, 0.0));
        let t = cores_target(None, Some(300.0)).unwrap().unwrap();
        assert_eq!((t.messages_per_sec, t.conns_per_sec), (0.0, 300.0));
        assert!(cores_target(Some(-1.0), None)
            .unwrap_err()
            .contains("--target-rate"));
        assert!(cores_target(None, Some(f64::NAN))
            .unwrap_err()
            .contains("--target-conns"));
    }
}
