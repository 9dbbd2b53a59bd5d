//! The CPU model: what one accepted connection (accept + fork + exit + reap) and one echoed message
//! cost the server's whole tree, and the load generator, in CPU time; from those, messages/s and
//! accepts/s per core, and the cores a target load needs. Pure arithmetic over [`StepCpu`], which
//! the sweep measures (`sys::cpu`).
//!
//! Each step's tree CPU is `a * accepted + b * echoed` (no base: the window opens after the server
//! is ready and closes once it has reaped every child). The two costs are fitted over the steps by
//! least squares on relative residuals, so a 1-connection step counts as much as a 2,000-connection
//! one; the small steps pin the cost of a message, the large ones the cost of a connection.

use serde::{Deserialize, Serialize};

/// One step's CPU, from just before its load to after its server had reaped its children.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepCpu {
    /// Wall time of the window.
    pub window_secs: f64,
    /// The server's tree: every process of its session, with the children each reaped.
    pub server_cpu_secs: f64,
    /// The load generator (this harness's load threads and any worker processes).
    pub loadgen_cpu_secs: Option<f64>,
    /// The harness's tree sampler (measuring, not loading).
    pub sampler_cpu_secs: Option<f64>,
    /// The whole machine's busy time over the window (`/proc/stat`, all CPUs): the independent
    /// check; on a shared machine it also holds everyone else's work.
    pub machine_busy_secs: Option<f64>,
    /// Connections the server accepted (those the load generator established).
    pub accepted_conns: u64,
    /// Every verified echo of the step: first echoes, warmup and the measured window.
    pub echoed_messages: u64,
    /// Whether every child had exited and been reaped when the window closed; when not, the
    /// children still alive are counted by their own time, but their exit is missing.
    pub drained: bool,
}

impl StepCpu {
    /// Cores the server kept busy over the window.
    pub fn server_cores(&self) -> f64 {
        self.server_cpu_secs / self.window_secs
    }

    /// Server CPU µs per echoed message, connection costs included (the raw ratio).
    pub fn server_us_per_message(&self) -> Option<f64> {
        (self.echoed_messages > 0).then(|| self.server_cpu_secs * 1e6 / self.echoed_messages as f64)
    }

    /// Load generator CPU µs per echoed message, connects included.
    pub fn loadgen_us_per_message(&self) -> Option<f64> {
        let cpu = self.loadgen_cpu_secs?;
        (self.echoed_messages > 0).then(|| cpu * 1e6 / self.echoed_messages as f64)
    }
}

/// CPU time as `us_per_conn * connections + us_per_message * messages`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuFit {
    /// CPU µs per accepted connection: accept, fork, exit and reap.
    pub us_per_conn: f64,
    /// CPU µs per echoed message: read, write and the wake-ups between.
    pub us_per_message: f64,
    /// `1 - SS_res / SS_tot` over the steps' CPU seconds.
    pub r_squared: f64,
    pub n: usize,
}

impl CpuFit {
    /// CPU seconds for `conns` connections and `messages` messages.
    pub fn predict_secs(&self, conns: f64, messages: f64) -> f64 {
        (self.us_per_conn * conns + self.us_per_message * messages) / 1e6
    }
}

/// Fits `cpu = a * conns + b * messages` to `(conns, messages, cpu_secs)` by least squares on
/// relative residuals. `None` with fewer than two usable steps or when the two columns cannot be
/// told apart (every step with the same messages per connection).
pub fn fit_cpu(points: &[(f64, f64, f64)]) -> Option<CpuFit> {
    let usable: Vec<(f64, f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(c, m, y)| c.is_finite() && m.is_finite() && y.is_finite() && y > 0.0)
        .collect();
    if usable.len() < 2 {
        return None;
    }
    let (mut scc, mut scm, mut smm, mut scy, mut smy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(c, m, y) in &usable {
        // Each row divided by its y: relative residuals.
        let (c, m) = (c / y, m / y);
        scc += c * c;
        scm += c * m;
        smm += m * m;
        scy += c;
        smy += m;
    }
    let det = scc * smm - scm * scm;
    if det.abs() <= 1e-9 * scc * smm {
        return None;
    }
    let a = (scy * smm - smy * scm) / det;
    let b = (scc * smy - scm * scy) / det;
    let mean = usable.iter().map(|p| p.2).sum::<f64>() / usable.len() as f64;
    let ss_tot: f64 = usable.iter().map(|p| (p.2 - mean).powi(2)).sum();
    let ss_res: f64 = usable
        .iter()
        .map(|&(c, m, y)| (y - a * c - b * m).powi(2))
        .sum();
    Some(CpuFit {
        us_per_conn: a * 1e6,
        us_per_message: b * 1e6,
        r_squared: if ss_tot > 0.0 {
            (1.0 - ss_res / ss_tot).clamp(0.0, 1.0)
        } else {
            1.0
        },
        n: usable.len(),
    })
}

/// The cores a step's measured rates need by the model fitted without that step, against the
/// cores its server actually used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoresCheck {
    pub conns: u64,
    pub accepts_per_sec: f64,
    pub messages_per_sec: f64,
    pub predicted_cores: f64,
    pub measured_cores: f64,
    /// `(predicted - measured) / measured * 100`.
    pub error_percent: f64,
}

/// "How many cores for this load": the server's, and the load generator's to produce it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoresNeeded {
    /// Echoed messages per second (`--target-rate`).
    pub messages_per_sec: f64,
    /// New connections per second (`--target-conns`): each accepted, forked, closed and reaped.
    pub conns_per_sec: f64,
    pub server_cores: f64,
    pub loadgen_cores: Option<f64>,
}

/// A load to plan cores for: echoed messages and new connections per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoresTarget {
    pub messages_per_sec: f64,
    pub conns_per_sec: f64,
}

/// The CPU model of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuModel {
    /// The server's whole tree.
    pub server: CpuFit,
    pub loadgen: Option<CpuFit>,
    /// `1e6 / server.us_per_message`: messages one core echoes per second; `null` if the fitted
    /// cost is not positive.
    pub messages_per_sec_per_core: Option<f64>,
    /// `1e6 / server.us_per_conn`: connections one core accepts, forks and reaps per second.
    pub accepts_per_sec_per_core: Option<f64>,
    /// The largest step predicted by the fit over the others.
    pub hold_out: Option<CoresCheck>,
    /// The largest step's measured rates through the fit over every step (itself included),
    /// against the cores its server used: the "cores needed for the measured rate" check. Absent
    /// in reports written before it existed.
    #[serde(default)]
    pub in_sample: Option<CoresCheck>,
    /// Sum over the steps of server + load generator + sampler CPU, over the machine's busy time
    /// in the same windows (1.0 when they account for all of it; less when others were busy).
    pub accounted_fraction: Option<f64>,
    /// The answer to `--target-rate` / `--target-conns`, when asked.
    #[serde(default)]
    pub target: Option<CoresNeeded>,
}

fn per_core(us: f64) -> Option<f64> {
    (us > 0.0).then(|| 1e6 / us)
}

impl CpuModel {
    /// `None` when fewer than two steps measured their CPU or the fit fails.
    pub fn fit(steps: &[StepCpu]) -> Option<CpuModel> {
        let server_points = |s: &[StepCpu]| -> Vec<(f64, f64, f64)> {
            s.iter()
                .map(|s| {
                    (
                        s.accepted_conns as f64,
                        s.echoed_messages as f64,
                        s.server_cpu_secs,
                    )
                })
                .collect()
        };
        let server = fit_cpu(&server_points(steps))?;
        let loadgen_points: Vec<(f64, f64, f64)> = steps
            .iter()
            .filter_map(|s| {
                Some((
                    s.accepted_conns as f64,
                    s.echoed_messages as f64,
                    s.loadgen_cpu_secs?,
                ))
            })
            .collect();
        let largest = steps
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.accepted_conns);
        let in_sample = largest.map(|(_, s)| cores_check(&server, s));
        let hold_out = largest.and_then(|(i, largest)| {
            let rest: Vec<StepCpu> = steps
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, s)| *s)
                .collect();
            let fit = fit_cpu(&server_points(&rest))?;
            Some(cores_check(&fit, largest))
        });
        let accounted = |s: &StepCpu| {
            s.server_cpu_secs
                + s.loadgen_cpu_secs.unwrap_or(0.0)
                + s.sampler_cpu_secs.unwrap_or(0.0)
        };
        let busy: f64 = steps.iter().filter_map(|s| s.machine_busy_secs).sum();
        let accounted_sum: f64 = steps
            .iter()
            .filter(|s| s.machine_busy_secs.is_some())
            .map(accounted)
            .sum();
        Some(CpuModel {
            messages_per_sec_per_core: per_core(server.us_per_message),
            accepts_per_sec_per_core: per_core(server.us_per_conn),
            server,
            loadgen: fit_cpu(&loadgen_points),
            hold_out,
            in_sample,
            accounted_fraction: (busy > 0.0).then(|| accounted_sum / busy),
            target: None,
        })
    }

    /// The cores `messages_per_sec` echoes and `conns_per_sec` new connections need.
    pub fn cores_needed(&self, messages_per_sec: f64, conns_per_sec: f64) -> CoresNeeded {
        CoresNeeded {
            messages_per_sec,
            conns_per_sec,
            server_cores: self.server.predict_secs(conns_per_sec, messages_per_sec),
            loadgen_cores: self
                .loadgen
                .map(|l| l.predict_secs(conns_per_sec, messages_per_sec)),
        }
    }
}

fn cores_check(fit: &CpuFit, step: &StepCpu) -> CoresCheck {
    let accepts_per_sec = step.accepted_conns as f64 / step.window_secs;
    let messages_per_sec = step.echoed_messages as f64 / step.window_secs;
    let predicted_cores = fit.predict_secs(accepts_per_sec, messages_per_sec);
    let measured_cores = step.server_cores();
    CoresCheck {
        conns: step.accepted_conns,
        accepts_per_sec,
        messages_per_sec,
        predicted_cores,
        measured_cores,
        error_percent: (predicted_cores - measured_cores) / measured_cores * 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step whose server spends 300 µs per connection and 20 µs per message, and whose load
    /// generator 50 µs per connection and 15 µs per message.
    fn step(conns: u64, messages: u64, window: f64) -> StepCpu {
        let (c, m) = (conns as f64, messages as f64);
        StepCpu {
            window_secs: window,
            server_cpu_secs: (300.0 * c + 20.0 * m) / 1e6,
            loadgen_cpu_secs: Some((50.0 * c + 15.0 * m) / 1e6),
            sampler_cpu_secs: Some(0.01),
            machine_busy_secs: Some((350.0 * c + 35.0 * m) / 1e6 + 0.01),
            accepted_conns: conns,
            echoed_messages: messages,
            drained: true,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn fit_separates_connection_and_message_costs() {
        let steps = [
            step(1, 60_000, 2.0),
            step(10, 70_000, 2.0),
            step(100, 65_000, 2.1),
            step(1000, 50_000, 2.6),
            step(2000, 40_000, 3.2),
        ];
        let m = CpuModel::fit(&steps).expect("model");
        assert!(close(m.server.us_per_conn, 300.0), "{m:?}");
        assert!(close(m.server.us_per_message, 20.0), "{m:?}");
        let lg = m.loadgen.expect("loadgen fit");
        assert!(close(lg.us_per_conn, 50.0) && close(lg.us_per_message, 15.0));
        assert!(close(m.messages_per_sec_per_core.expect("rate"), 50_000.0));
        assert!(close(
            m.accepts_per_sec_per_core.expect("rate"),
            1e6 / 300.0
        ));
        let h = m.hold_out.expect("hold-out");
        assert_eq!(h.conns, 2000);
        assert!(h.error_percent.abs() < 1e-6, "{h:?}");
        assert!(close(h.measured_cores, (0.6 + 0.8) / 3.2));
        assert!(m.in_sample.expect("in-sample").error_percent.abs() < 1e-6);
        assert!(close(m.accounted_fraction.expect("fraction"), 1.0));
        let need = m.cores_needed(100_000.0, 1000.0);
        assert!(close(need.server_cores, 2.0 + 0.3), "{need:?}");
        assert!(close(need.loadgen_cores.expect("loadgen"), 1.5 + 0.05));
    }

    #[test]
    fn hold_out_shows_a_largest_step_that_cost_more() {
        let mut steps = vec![
            step(1, 60_000, 2.0),
            step(10, 70_000, 2.0),
            step(100, 65_000, 2.1),
        ];
        let mut big = step(2000, 40_000, 3.2);
        big.server_cpu_secs *= 1.25;
        steps.push(big);
        let h = CpuModel::fit(&steps)
            .expect("model")
            .hold_out
            .expect("check");
        assert!(
            (h.error_percent - (1.0 / 1.25 - 1.0) * 100.0).abs() < 1e-6,
            "{h:?}"
        );
    }

    #[test]
    fn others_on_the_machine_lower_the_accounted_fraction() {
        let mut steps = vec![step(1, 60_000, 2.0), step(100, 65_000, 2.1)];
        for s in &mut steps {
            s.machine_busy_secs = s.machine_busy_secs.map(|b| b * 2.0);
        }
        let m = CpuModel::fit(&steps).expect("model");
        assert!(close(m.accounted_fraction.expect("fraction"), 0.5));
    }

    #[test]
    fn refuses_what_cannot_be_fitted() {
        assert_eq!(fit_cpu(&[]), None);
        assert_eq!(fit_cpu(&[(1.0, 100.0, 0.1)]), None);
        // Messages proportional to connections: the two costs cannot be told apart.
        assert_eq!(fit_cpu(&[(1.0, 100.0, 0.1), (10.0, 1000.0, 1.0)]), None);
        assert_eq!(CpuModel::fit(&[step(1, 100, 1.0)]), None);
        let s = step(0, 0, 1.0);
        assert_eq!(s.server_us_per_message(), None);
    }
}
