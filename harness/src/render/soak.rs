//! The soak's summary for the terminal: what ran, what the proxy injected against what loadgen
//! counted, and each resource's fitted line with its verdict (flat or growing).

use std::fmt::Write;

use crate::render::units::{kib, mib_or_kib, KIB};
use crate::report::soak::{SoakReport, Trend};

/// The summary `harness soak` prints when it ends.
pub fn soak_text(r: &SoakReport) -> String {
    let mut out = String::new();
    let p = &r.parameters;
    let (l, x) = (&r.load, &r.proxy);
    let _ = writeln!(out, "server: {}", r.server.description);
    let _ = writeln!(
        out,
        "soak: {:.0}s, {} rounds of {} connections x {} messages of {} bytes; faults {} (seed {})",
        r.duration_secs,
        l.rounds,
        p.conns,
        p.messages,
        p.size,
        p.faults
            .profiles
            .iter()
            .map(|f| f.spec.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        p.faults.seed
    );
    let _ = writeln!(
        out,
        "proxy: {} connections, {} faulted: {} reset, {} stalled, {} closed",
        x.connections,
        x.faulted(),
        x.resets,
        x.stalls,
        x.closes
    );
    let _ = writeln!(
        out,
        "loadgen: {} sessions completed, {} failed (reset {}, echo timeout {}, short echo {}, closed early {}, mismatch {}, other {}), {} connects failed, {} messages verified",
        l.sessions_completed, l.sessions_failed, l.reset, l.echo_timeout, l.short_echo,
        l.closed_early, l.mismatch, l.other, l.connections_failed, l.messages_verified
    );
    let _ = writeln!(
        out,
        "\nfitted over {} samples after {:.0}s of warm-up:",
        r.samples
            .iter()
            .filter(|s| s.t_secs >= p.warmup_secs)
            .count(),
        p.warmup_secs
    );
    let t = &r.trends;
    let count = |v: f64| format!("{v:+.2}");
    let memory = |v: f64| {
        let sign = if v < 0.0 { "-" } else { "+" };
        format!("{sign}{}", mib_or_kib(v.abs() * KIB))
    };
    out.push_str(&trend_line("server fds", &t.fds, &count));
    out.push_str(&trend_line("server RSS", &t.rss_kib, &memory));
    out.push_str(&trend_line("live children", &t.live_children, &count));
    out.push_str(&trend_line("zombies", &t.zombies, &count));
    if let (Some(first), Some(last)) = (r.samples.first(), r.samples.last()) {
        let _ = writeln!(
            out,
            "first and last sample: fds {} -> {}, RSS {} -> {}",
            first.fds.map_or("-".into(), |n| n.to_string()),
            last.fds.map_or("-".into(), |n| n.to_string()),
            kib(first.rss_kib.map(|v| v as f64)),
            kib(last.rss_kib.map(|v| v as f64)),
        );
    }
    if r.failures.is_empty() {
        out.push_str("\nPASS: fds and RSS flat, every fault counted, nothing left behind\n");
    } else {
        out.push_str("\nFAIL:\n");
        for f in &r.failures {
            let _ = writeln!(out, "  {f}");
        }
    }
    out
}

/// `server fds     +0.40 over the run (slope +0.0007/s, limit 2.00): flat`.
fn trend_line(name: &str, trend: &Trend, fmt: &dyn Fn(f64) -> String) -> String {
    let (Some(fit), Some(growth)) = (trend.fit, trend.growth) else {
        return format!("  {name:<14} no fit (fewer than two samples)\n");
    };
    let verdict = match trend.flat {
        Some(true) => ": flat",
        Some(false) => ": NOT FLAT",
        None => "",
    };
    let limit = trend.limit.map_or(String::new(), |l| {
        format!(", limit {}", fmt(l).trim_start_matches('+'))
    });
    format!(
        "  {name:<14} {} over the run (slope {}/min{limit}){verdict}\n",
        fmt(growth),
        fmt(fit.slope * 60.0)
    )
}
