//! The text of a sweep's throughput model (the Universal Scalability Law fit, its hold-out check,
//! Little's law beside the measured mean echo latency) and CPU model (CPU per connection and per
//! message for the server's tree and the load generator, per core rates, cores needed). A report
//! written before schema 3 has neither, and says so (absent, not zero).

use crate::capacity::cpu::{CoresNeeded, CpuModel};
use crate::capacity::usl::{ScalingBound, ThroughputModel};
use crate::render::layout::table;
use crate::render::units::{micros, whole};
use crate::report::sweep::SweepReport;

/// The throughput lines `harness sweep` and `harness report` print.
pub fn throughput_text(r: &SweepReport) -> String {
    let mut out = String::from("throughput model (Universal Scalability Law, steady phase)\n");
    let Some(t) = &r.capacity.throughput else {
        out.push_str(
            "  usl                     absent: fewer than three steps measured a throughput, or \
             the report predates schema 3\n",
        );
        return out;
    };
    out.push_str(&usl_lines(t));
    out.push_str(
        "  per step: Little's law N / X against the measured mean echo latency (closed loop: they \
         agree when every connection always has one message in flight)\n",
    );
    let rows: Vec<Vec<String>> = t
        .steps
        .iter()
        .map(|s| {
            vec![
                s.established.to_string(),
                whole(Some(s.messages_per_sec)),
                whole(Some(t.usl.predict(s.established as f64))),
                micros(Some(s.littles_law_latency_us)),
                micros(s.measured_mean_echo_us),
            ]
        })
        .collect();
    let header = ["conns", "msg/s", "USL msg/s", "N / X", "mean echo"];
    out.push_str(&indent(&table(&header, &rows)));
    out
}

fn usl_lines(t: &ThroughputModel) -> String {
    let u = &t.usl;
    let bound = match u.bound {
        ScalingBound::Contention => "contention-bound (sigma > kappa: queueing for one resource)",
        ScalingBound::Coherency => {
            "coherency-bound (kappa >= sigma: throughput falls past the peak)"
        }
        ScalingBound::Linear => "linear within the ladder (sigma = kappa = 0)",
    };
    let mut out = format!(
        "  fit                     lambda {:.0} msg/s, sigma {:.4}, kappa {:.3e} (R^2 {:.4}, {} steps)\n\
         \x20 scaling                 {bound}\n",
        u.lambda, u.sigma, u.kappa, u.r_squared, u.n
    );
    out.push_str(&match (u.peak_conns, u.max_throughput) {
        (Some(p), Some(x)) => format!(
            "  peak                    {x:.0} msg/s at {p} connections (floor(sqrt((1 - sigma) / kappa)))\n"
        ),
        (None, Some(x)) => format!("  peak                    none: levels off towards {x:.0} msg/s\n"),
        _ => "  peak                    none within the model\n".to_string(),
    });
    out.push_str(&match &t.hold_out {
        Some(h) => format!(
            "  hold-out check (USL)    fit without the {}-connection step predicts {:.0} msg/s, \
             measured {:.0}: {:+.1}%\n",
            h.held_out_conns, h.predicted, h.measured, h.error_percent
        ),
        None => "  hold-out check (USL)    - (needs four steps of distinct concurrency)\n".into(),
    });
    out
}

/// The CPU lines `harness sweep` and `harness report` print.
pub fn cpu_text(r: &SweepReport) -> String {
    let mut out = String::from(
        "CPU (server: its whole process tree, reaped children included; loadgen: the load generator)\n",
    );
    let Some(c) = &r.capacity.cpu else {
        out.push_str(
            "  cpu                     absent: fewer than two steps measured CPU, or the report \
             predates schema 3\n",
        );
        return out;
    };
    out.push_str(&cpu_model_lines(c));
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .filter_map(|s| s.cpu.map(|cpu| (s.conns, cpu)))
        .map(|(conns, s)| {
            vec![
                conns.to_string(),
                format!("{:.2}", s.window_secs),
                format!("{:.2}", s.server_cpu_secs),
                format!("{:.2}", s.server_cores()),
                us(s.server_us_per_message()),
                s.loadgen_cpu_secs.map_or("-".into(), |v| format!("{v:.2}")),
                us(s.loadgen_us_per_message()),
                s.machine_busy_secs
                    .map_or("-".into(), |v| format!("{v:.2}")),
                if s.drained { "yes" } else { "NO" }.into(),
            ]
        })
        .collect();
    let header = [
        "conns",
        "window s",
        "server s",
        "cores",
        "us/msg",
        "loadgen s",
        "lg us/msg",
        "machine s",
        "reaped",
    ];
    out.push_str(
        "  per step (us/msg: all CPU over all echoes, connections included; machine: every CPU's \
         busy time, other processes included)\n",
    );
    out.push_str(&indent(&table(&header, &rows)));
    out
}

fn cpu_model_lines(c: &CpuModel) -> String {
    let s = &c.server;
    let mut out = format!(
        "  server per connection   {:.0} us CPU (accept + fork + exit + reap)\n\
         \x20 server per message      {:.2} us CPU (fit over {} steps, R^2 {:.4})\n",
        s.us_per_conn, s.us_per_message, s.n, s.r_squared
    );
    if let Some(l) = &c.loadgen {
        out.push_str(&format!(
            "  loadgen per message     {:.2} us CPU, {:.0} us per connection\n",
            l.us_per_message, l.us_per_conn
        ));
    }
    out.push_str(&format!(
        "  per core                {} messages/s, {} accepts/s\n",
        whole(c.messages_per_sec_per_core),
        whole(c.accepts_per_sec_per_core)
    ));
    if let Some(h) = &c.in_sample {
        out.push_str(&format!(
            "  cores check             the {}-connection step's rates ({:.0} accepts/s, {:.0} msg/s) need \
             {:.2} cores by the fit; its server used {:.2}: {:+.1}%\n",
            h.conns,
            h.accepts_per_sec,
            h.messages_per_sec,
            h.predicted_cores,
            h.measured_cores,
            h.error_percent
        ));
    }
    if let Some(h) = &c.hold_out {
        out.push_str(&format!(
            "  hold-out check (CPU)    the {}-connection step's rates ({:.0} accepts/s, {:.0} msg/s) need \
             {:.2} cores by the fit without it; its server used {:.2}: {:+.1}%\n",
            h.conns,
            h.accepts_per_sec,
            h.messages_per_sec,
            h.predicted_cores,
            h.measured_cores,
            h.error_percent
        ));
    }
    if let Some(f) = c.accounted_fraction {
        out.push_str(&format!(
            "  independent check       server + loadgen + sampler = {:.0}% of the machine's busy CPU \
             over the same windows (the rest: other processes)\n",
            f * 100.0
        ));
    }
    if let Some(t) = &c.target {
        out.push_str(&cores_needed_line(t));
    }
    out
}

/// "Cores needed" for `--target-rate` / `--target-conns`.
pub fn cores_needed_line(t: &CoresNeeded) -> String {
    format!(
        "  cores needed            {:.2} for the server at {:.0} msg/s and {:.0} new connections/s{}\n",
        t.server_cores,
        t.messages_per_sec,
        t.conns_per_sec,
        t.loadgen_cores
            .map_or(String::new(), |l| format!(" (+ {l:.2} for the load generator)"))
    )
}

fn us(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
