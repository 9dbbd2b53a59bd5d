//! The JSON report `harness sweep` writes into `results/` (`sweep-<UTC time>.json`): one entry per
//! step of the connection ladder (burst figures, steady-phase figures, the server's tree, the
//! timeline) and the capacity model fitted over the steps. These serde structs *are* the format;
//! `harness/schema.json` describes it beside the `check` and `run` reports. Also the text summary
//! `sweep` prints and `harness report` prints again, and the conversion to plot points.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capacity::CapacityModel;
use crate::output::{self, table};
use crate::plot::SweepPoint;
use crate::procfs::ListenCounters;
use crate::report::Environment;
use crate::sampler::Sample;
use crate::server::ServerEnd;

/// The `kind` of a sweep report (the other report kinds live in `report::ReportKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepKind {
    Sweep,
}

/// `results/sweep-<UTC time>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Same version line as the other harness reports (`report::SCHEMA_VERSION`).
    pub schema_version: u32,
    pub kind: SweepKind,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_secs: f64,
    pub parameters: SweepParameters,
    pub environment: Environment,
    pub server: SweepServer,
    /// In ladder order (ascending connections).
    pub steps: Vec<SweepStep>,
    pub capacity: CapacityModel,
    pub summary: SweepSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepParameters {
    /// Concurrent connections of each step, ascending.
    pub ladder: Vec<u64>,
    /// Length of each step's steady phase.
    pub duration_secs: f64,
    /// Message size in bytes.
    pub size: u64,
    pub memory_budget_bytes: u64,
    pub sample_interval_ms: u64,
    /// Each step runs against a freshly started server (so each step's memory is its own).
    pub fresh_server_per_step: bool,
}

/// The server swept (a fresh process of it per step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepServer {
    /// The program and flags, or the `--server-cmd`.
    pub description: String,
    /// Whether it speaks the fork echo server's stdout/stats contract.
    pub speaks_contract: bool,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    /// Connections asked for.
    pub conns: u64,
    /// False when anything went wrong: the server did not start or died, a connection or message
    /// failed, or not every connection echoed once.
    pub ok: bool,
    /// Why the step failed, when it did.
    pub failure: Option<String>,
    /// The connect burst; `null` when the load could not run at all.
    pub burst: Option<BurstFigures>,
    /// The closed-loop phase after the burst; `null` when the load could not run at all.
    pub steady: Option<SteadyFigures>,
    pub tree: TreeFigures,
    /// Change of the kernel's listen-queue counters over the step's load.
    pub listen_queue: ListenCounters,
    /// How the step's server stopped; `null` when it could not be started.
    pub server_end: Option<ServerEnd>,
    /// Wall time of the step, server start to server gone.
    pub wall_secs: f64,
    /// The server's tree sampled every `parameters.sample_interval_ms` during the load.
    pub timeline: Vec<Sample>,
}

/// All connections opened at once; each sends one message and waits for its echo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstFigures {
    pub connections_attempted: u64,
    pub connections_established: u64,
    pub connections_failed: u64,
    pub connect_p99_us: Option<f64>,
    /// Connect start to first full echo: carries accept + fork on a fork server.
    pub first_echo_p50_us: Option<f64>,
    pub first_echo_p99_us: Option<f64>,
    /// From the first connect until every established connection had echoed once; `null` if one
    /// never did.
    pub all_first_echo_secs: Option<f64>,
    /// `connections_established / all_first_echo_secs`: how fast the server accepts and forks.
    pub accept_fork_per_sec: Option<f64>,
}

/// Every connection sends its next message as soon as the previous one is echoed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyFigures {
    pub measured_secs: f64,
    /// Verified echoes sent in the measured window.
    pub messages: u64,
    pub messages_per_sec: f64,
    pub echo_p50_us: Option<f64>,
    pub echo_p99_us: Option<f64>,
    pub echo_p999_us: Option<f64>,
    /// Failed connections and sessions of the whole load, by kind, as loadgen counts them.
    pub errors: u64,
}

/// The server's process tree during the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeFigures {
    pub samples: usize,
    pub peak_live_children: u64,
    pub max_zombies: u64,
    pub max_lingering_zombies: u64,
    /// Median total PSS (parent + children) over the samples at the peak child count, preferring
    /// samples in which every child's memory had been read; the `y` of the memory fit.
    pub total_pss_kib: Option<u64>,
    pub pss_per_child_kib: Option<f64>,
    pub private_per_child_kib: Option<f64>,
    /// The parent's CPU time (user + system) from its start to the end of the load.
    pub parent_cpu_secs: Option<f64>,
    /// `parent_cpu_secs` per established connection: the parent's cost of accept + fork + reap.
    pub parent_cpu_us_per_conn: Option<f64>,
}

/// The figures the sweep's closing lines give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub steps_ok: usize,
    pub steps_failed: usize,
    /// The largest step that passed.
    pub largest_ok_conns: Option<u64>,
    /// The largest burst that measured an accept+fork rate, and that rate.
    pub largest_burst_conns: Option<u64>,
    pub accept_fork_per_sec: Option<f64>,
}

impl SweepSummary {
    pub fn of(steps: &[SweepStep]) -> SweepSummary {
        let largest_burst = steps
            .iter()
            .filter_map(|s| {
                s.burst
                    .as_ref()
                    .and_then(|b| b.accept_fork_per_sec)
                    .map(|r| (s.conns, r))
            })
            .max_by_key(|(conns, _)| *conns);
        SweepSummary {
            steps_ok: steps.iter().filter(|s| s.ok).count(),
            steps_failed: steps.iter().filter(|s| !s.ok).count(),
            largest_ok_conns: steps.iter().filter(|s| s.ok).map(|s| s.conns).max(),
            largest_burst_conns: largest_burst.map(|(c, _)| c),
            accept_fork_per_sec: largest_burst.map(|(_, r)| r),
        }
    }
}

impl SweepStep {
    /// This step as a point of the sweep charts; what was not measured is NaN (left out).
    pub fn plot_point(&self) -> SweepPoint {
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let burst = self.burst.as_ref();
        let steady = self.steady.as_ref();
        SweepPoint {
            conns: self.conns,
            echo_p50_us: f(steady.and_then(|s| s.echo_p50_us)),
            echo_p99_us: f(steady.and_then(|s| s.echo_p99_us)),
            echo_p999_us: f(steady.and_then(|s| s.echo_p999_us)),
            first_echo_p50_us: f(burst.and_then(|b| b.first_echo_p50_us)),
            first_echo_p99_us: f(burst.and_then(|b| b.first_echo_p99_us)),
            total_pss_bytes: f(self.tree.total_pss_kib.map(|k| k as f64 * 1024.0)),
            live_children: self.tree.peak_live_children,
            messages_per_sec: f(steady.map(|s| s.messages_per_sec)),
        }
    }
}

/// Reads `path` as a sweep report; `Ok(None)` when it is JSON of another kind (or not JSON at all:
/// the other readers then say what is wrong with it).
pub fn read_if_sweep(path: &Path) -> Result<Option<SweepReport>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    if value.get("kind").and_then(|k| k.as_str()) != Some("sweep") {
        return Ok(None);
    }
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(crate::report::SCHEMA_VERSION) => {}
        other => {
            return Err(format!(
                "{} has schema_version {other:?}; this harness reads {}",
                path.display(),
                crate::report::SCHEMA_VERSION
            ))
        }
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| format!("{} is not a sweep report: {e}", path.display()))
}

fn rate(v: Option<f64>) -> String {
    v.map_or("-".into(), |r| format!("{r:.0}"))
}

fn bytes(v: f64) -> String {
    if v.abs() >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", v / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", v / 1024.0)
    }
}

/// The step table and the capacity model, as `sweep` and `report` print them.
pub fn summary_text(r: &SweepReport) -> String {
    let mut out = format!(
        "sweep of {} ({}), ladder {:?}, {} s steady phase per step, {} B messages\n\n",
        r.server.description,
        r.started_at,
        r.parameters.ladder,
        r.parameters.duration_secs,
        r.parameters.size
    );
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            let b = s.burst.as_ref();
            let st = s.steady.as_ref();
            vec![
                s.conns.to_string(),
                if s.ok { "ok".into() } else { "FAILED".into() },
                output::micros(b.and_then(|b| b.connect_p99_us)),
                output::micros(b.and_then(|b| b.first_echo_p50_us)),
                output::micros(b.and_then(|b| b.first_echo_p99_us)),
                rate(b.and_then(|b| b.accept_fork_per_sec)),
                rate(st.map(|s| s.messages_per_sec)),
                output::micros(st.and_then(|s| s.echo_p50_us)),
                output::micros(st.and_then(|s| s.echo_p99_us)),
                output::micros(st.and_then(|s| s.echo_p999_us)),
                s.listen_queue.listen_overflows.to_string(),
                s.tree.peak_live_children.to_string(),
                s.tree.max_zombies.to_string(),
                s.tree
                    .total_pss_kib
                    .map_or("-".into(), |k| bytes(k as f64 * 1024.0)),
                output::kib(s.tree.pss_per_child_kib),
                output::kib(s.tree.private_per_child_kib),
                output::micros(s.tree.parent_cpu_secs.map(|c| c * 1e6)),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "conns",
            "step",
            "connect p99",
            "1st echo p50",
            "1st echo p99",
            "accept+fork/s",
            "msg/s",
            "echo p50",
            "echo p99",
            "echo p99.9",
            "listen overflows",
            "children",
            "zombies",
            "total PSS",
            "PSS/child",
            "private/child",
            "parent CPU",
        ],
        &rows,
    ));
    for s in r.steps.iter().filter(|s| !s.ok) {
        out.push_str(&format!(
            "step {} failed: {}\n",
            s.conns,
            s.failure.as_deref().unwrap_or("unknown")
        ));
    }
    out.push('\n');
    out.push_str(&capacity_text(&r.capacity, &r.summary));
    out
}

/// The capacity model in a few lines.
pub fn capacity_text(c: &CapacityModel, summary: &SweepSummary) -> String {
    let mut out = String::from("capacity model\n");
    match &c.memory_fit {
        Some(f) => out.push_str(&format!(
            "  memory per connection   {} base (R^2 {:.4}, {} steps)\n",
            f.per_connection_text(bytes),
            f.r_squared,
            f.n
        )),
        None => {
            out.push_str("  memory per connection   - (fewer than two steps measured memory)\n")
        }
    }
    match (summary.accept_fork_per_sec, summary.largest_burst_conns) {
        (Some(r), Some(n)) => out.push_str(&format!(
            "  accept+fork rate        {r:.0} connections/s (burst of {n})\n"
        )),
        _ => out.push_str("  accept+fork rate        - (no burst echoed completely)\n"),
    }
    match c.latency_knee_conns {
        Some(k) => out.push_str(&format!(
            "  latency knee            {k} connections (echo p99 > 2x the smallest step's)\n"
        )),
        None => out.push_str("  latency knee            none within the ladder\n"),
    }
    match &c.prediction {
        Some(p) => {
            out.push_str(&format!(
                "  predicted maximum       {} connections, bound by {} (raise with: {})\n",
                p.max_connections, p.binding, p.knob
            ));
            let next: Vec<String> = p
                .candidates
                .iter()
                .skip(1)
                .take(3)
                .map(|c| format!("{} {}", c.kind, c.max_connections))
                .collect();
            if !next.is_empty() {
                out.push_str(&format!("  then                    {}\n", next.join(", ")));
            }
        }
        None => out.push_str("  predicted maximum       - (no limit known)\n"),
    }
    match &c.memory_check {
        Some(h) => out.push_str(&format!(
            "  hold-out check          fit without the {}-connection step predicts {}, measured {}: {:+.1}%\n",
            h.held_out_x,
            bytes(h.predicted_y),
            bytes(h.measured_y),
            h.error_percent
        )),
        None => out.push_str("  hold-out check          - (needs three steps with memory)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(conns: u64, ok: bool, rate: Option<f64>) -> SweepStep {
        SweepStep {
            conns,
            ok,
            failure: (!ok).then(|| "refused".to_string()),
            burst: Some(BurstFigures {
                connections_attempted: conns,
                connections_established: conns,
                connections_failed: 0,
                connect_p99_us: Some(100.0),
                first_echo_p50_us: Some(200.0),
                first_echo_p99_us: Some(300.0),
                all_first_echo_secs: rate.map(|r| conns as f64 / r),
                accept_fork_per_sec: rate,
            }),
            steady: None,
            tree: TreeFigures {
                samples: 3,
                peak_live_children: conns,
                max_zombies: 0,
                max_lingering_zombies: 0,
                total_pss_kib: Some(1000 + conns * 100),
                pss_per_child_kib: Some(100.0),
                private_per_child_kib: Some(80.0),
                parent_cpu_secs: Some(0.5),
                parent_cpu_us_per_conn: Some(5.0),
            },
            listen_queue: ListenCounters::default(),
            server_end: None,
            wall_secs: 1.0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn summary_takes_the_largest_burst_that_measured_a_rate() {
        let steps = [
            step(1, true, Some(100.0)),
            step(10, true, Some(900.0)),
            step(100, false, None),
        ];
        let s = SweepSummary::of(&steps);
        assert_eq!(s.steps_ok, 2);
        assert_eq!(s.steps_failed, 1);
        assert_eq!(s.largest_ok_conns, Some(10));
        assert_eq!(s.largest_burst_conns, Some(10));
        assert_eq!(s.accept_fork_per_sec, Some(900.0));
    }

    #[test]
    fn plot_point_leaves_unmeasured_figures_out() {
        let p = step(10, true, Some(900.0)).plot_point();
        assert_eq!(p.conns, 10);
        assert_eq!(p.first_echo_p99_us, 300.0);
        assert_eq!(p.total_pss_bytes, 2000.0 * 1024.0);
        assert!(p.echo_p99_us.is_nan() && p.messages_per_sec.is_nan());
    }
}
