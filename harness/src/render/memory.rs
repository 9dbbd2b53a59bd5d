//! The text of a sweep's total memory model: what one connection costs with the kernel's side
//! counted, the breakdown by component, each step's predicted `MemAvailable` drop against the
//! measured one, the hold-out check on the total, and the `--validate` step. A report of schema 1
//! has none of it, and says so (absent, not zero).

use crate::capacity::fit_line;
use crate::capacity::memory::{DropCheck, TotalMemoryModel};
use crate::render::layout::table;
use crate::render::units::{mib_or_kib, GIB};
use crate::report::run::RunReport;
use crate::report::sweep::{SweepReport, SweepStep, Validation};

/// The lines `harness sweep` and `harness report` print after the capacity model.
pub fn total_memory_text(r: &SweepReport) -> String {
    let mut out = String::from("memory per connection, user space + kernel\n");
    let Some(m) = &r.capacity.total_memory else {
        out.push_str(
            "  total                   absent: this report did not measure the kernel's counters \
             (schema 1, or /proc/meminfo unreadable); the PSS figure above is user space only\n",
        );
        return out;
    };
    out.push_str(&model_lines(m));
    out.push_str(&reclaimable_line(r));
    out.push_str(&loadgen_line(r));
    out.push_str(
        "  per child at each step, server's share (user: private user space, PTEs: page tables, \
         kstack: kernel stack, sockbuf: socket buffers, loadgen: the load generator's share taken \
         out; others RSS: other processes' RSS change over the step, the machine's noise)\n",
    );
    out.push_str(&indent(&per_child_table(r)));
    out.push_str(
        "  MemAvailable drop per step: predicted (fit over all steps + load generator's share) vs measured\n",
    );
    out.push_str(&indent(&drop_table(&m.drop_checks, &r.steps)));
    match (&m.hold_out, &m.hold_out_drop) {
        (Some(h), Some(d)) => out.push_str(&format!(
            "  hold-out check (total)  fit without the {}-child step predicts {}, measured {}: {:+.1}%; \
             as a MemAvailable drop {} vs {}: {}\n",
            h.held_out_x,
            mib_or_kib(h.predicted_y),
            mib_or_kib(h.measured_y),
            h.error_percent,
            mib_or_kib(d.predicted_drop_bytes),
            mib_or_kib(d.measured_drop_bytes),
            percent(d.error_percent)
        )),
        _ => out.push_str("  hold-out check (total)  - (needs three steps with memory)\n"),
    }
    if let Some(v) = &r.validation {
        out.push_str(&validation_line(v));
    }
    out
}

/// One line of a run's memory per connection at its peak, user space and kernel.
pub fn run_memory_text(r: &RunReport) -> String {
    let children = r.summary.peak_children;
    match (&r.memory, children) {
        (Some(m), n) if n > 0 => {
            let per = |b: f64| mib_or_kib(b / n as f64);
            format!(
                "\nmemory per child at the peak ({n} children): {} total = {} user space (private) + \
                 {} page tables + {} kernel stack + {} slab + {} socket buffers; MemAvailable fell \
                 {} per child (load generator's RSS out, its sockets' slab not)\n",
                per(m.server_total_bytes()),
                per(m.user_private_bytes),
                per(m.page_tables_bytes),
                per(m.kernel_stack_bytes),
                per(m.server_slab_bytes()),
                per(m.tcp_mem_bytes),
                per(m.server_drop_bytes())
            )
        }
        (None, _) => {
            "\nmemory per child: absent (not measured: schema 1, or no child seen)\n".into()
        }
        _ => String::new(),
    }
}

fn model_lines(m: &TotalMemoryModel) -> String {
    let f = &m.total_fit;
    let mut out = format!(
        "  total                   {} (R^2 {:.4}, {} steps): the server's user space + kernel counters\n",
        f.per_connection_text(mib_or_kib),
        f.r_squared,
        f.n
    );
    if f.slope > 0.0 {
        out.push_str(&format!(
            "  headline                {} per connection, {:.0} connections per GiB: the total, which \
             predicts when memory runs out (MemAvailable undercounts: it calls part of the socket \
             inodes' reclaimable slab available while they are open)\n",
            mib_or_kib(f.slope),
            GIB / f.slope
        ));
    }
    for c in &m.components {
        out.push_str(&format!(
            "    {:<28}{:>10} per connection\n",
            c.component.label(),
            mib_or_kib(c.fit.slope)
        ));
    }
    out
}

/// The `SReclaimable` part of the slab, fitted per connection; empty before schema 3.
fn reclaimable_line(r: &SweepReport) -> String {
    let points: Vec<(f64, f64)> = r
        .steps
        .iter()
        .filter_map(|s| {
            let bytes = s.memory.as_ref()?.sreclaimable_bytes?;
            Some((s.tree.peak_live_children as f64, bytes))
        })
        .collect();
    match fit_line(&points) {
        Some(f) => format!(
            "    of the slab, reclaimable  {:>8} per connection (SReclaimable; the rest is SUnreclaim)\n",
            mib_or_kib(f.slope)
        ),
        None => String::new(),
    }
}

fn loadgen_line(r: &SweepReport) -> String {
    let socket = r
        .socket_slab_bytes
        .map_or("unmeasured (not subtracted)".to_string(), |b| {
            format!("{} slab per socket", mib_or_kib(b))
        });
    format!(
        "  load generator's share  subtracted: its own RSS growth + its sockets x {socket}; \
         socket buffers include both ends\n"
    )
}

fn per_child_table(r: &SweepReport) -> String {
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .filter_map(|s| {
            let m = s.memory.as_ref()?;
            let n = s.tree.peak_live_children.max(1) as f64;
            let per = |bytes: f64| mib_or_kib(bytes / n);
            Some(vec![
                s.conns.to_string(),
                s.tree.peak_live_children.to_string(),
                per(m.server_total_bytes()),
                per(m.server_drop_bytes()),
                per(m.user_private_bytes),
                per(m.page_tables_bytes),
                per(m.kernel_stack_bytes),
                per(m.server_slab_bytes()),
                per(m.tcp_mem_bytes),
                per(m.loadgen_share_bytes()),
                mib_or_kib(m.others_rss_bytes),
            ])
        })
        .collect();
    table(
        &[
            "conns",
            "children",
            "total",
            "MemAv drop",
            "user",
            "PTEs",
            "kstack",
            "slab",
            "sockbuf",
            "loadgen",
            "others RSS",
        ],
        &rows,
    )
}

fn drop_table(checks: &[DropCheck], steps: &[SweepStep]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|d| {
            let others = steps
                .iter()
                .find(|s| s.conns == d.conns)
                .and_then(|s| s.memory.as_ref())
                .map(|m| m.others_rss_bytes);
            vec![
                d.conns.to_string(),
                d.live_children.to_string(),
                mib_or_kib(d.predicted_drop_bytes),
                mib_or_kib(d.measured_drop_bytes),
                drop_verdict(d, others),
            ]
        })
        .collect();
    table(
        &["conns", "children", "predicted", "measured", "error"],
        &rows,
    )
}

/// The drop check's error, or, when other processes' memory moved by more than the gap between
/// prediction and measurement (or `MemAvailable` did not fall at all), words saying that this step
/// cannot tell: a `+900%` there is the machine's noise, not the model's error.
pub fn drop_verdict(d: &DropCheck, others_rss_bytes: Option<f64>) -> String {
    let gap = (d.predicted_drop_bytes - d.measured_drop_bytes).abs();
    match others_rss_bytes {
        Some(others) if d.measured_drop_bytes <= 0.0 || others.abs() >= gap => {
            format!("noise (others moved {})", mib_or_kib(others))
        }
        _ => percent(d.error_percent),
    }
}

/// `+3.2%`; `-` when there was nothing to compare with.
fn percent(p: Option<f64>) -> String {
    p.map_or("-".into(), |p| format!("{p:+.1}%"))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn validation_line(v: &Validation) -> String {
    match (&v.figures, &v.refused) {
        (Some(f), _) => {
            let pss = match (f.predicted_pss_bytes, f.measured_pss_bytes) {
                (Some(p), Some(m)) => format!(
                    "; the PSS-only model predicted {} of user space, measured {}",
                    mib_or_kib(p),
                    mib_or_kib(m)
                ),
                _ => String::new(),
            };
            format!(
                "  validation at {} conns  ({} children, not fitted) total predicted {}, measured {}: {}; \
                 MemAvailable drop predicted {}, measured {}: {}{pss}\n",
                v.conns,
                f.live_children,
                mib_or_kib(f.predicted_total_bytes),
                mib_or_kib(f.measured_total_bytes),
                percent(f.total_error_percent),
                mib_or_kib(f.drop.predicted_drop_bytes),
                mib_or_kib(f.drop.measured_drop_bytes),
                percent(f.drop.error_percent)
            )
        }
        (None, Some(why)) => format!("  validation              not measured: {why}\n"),
        (None, None) => "  validation              not measured\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_gap_smaller_than_the_machines_noise_is_called_noise() {
        let d = DropCheck {
            conns: 1000,
            live_children: 1000,
            predicted_drop_bytes: 100.0 * 1024.0 * 1024.0,
            measured_drop_bytes: 10.0 * 1024.0 * 1024.0,
            error_percent: Some(900.0),
        };
        assert_eq!(
            drop_verdict(&d, Some(-200.0 * 1024.0 * 1024.0)),
            "noise (others moved -200.00 MiB)"
        );
        assert_eq!(drop_verdict(&d, Some(1024.0 * 1024.0)), "+900.0%");
        assert_eq!(drop_verdict(&d, None), "+900.0%");
        let fell_not = DropCheck {
            measured_drop_bytes: -5.0,
            ..d
        };
        assert!(drop_verdict(&fell_not, Some(0.0)).starts_with("noise"));
    }
}
