//! The OpenMetrics text exposition of the parent's counters: one family per `Stats` counter
//! (`_total` samples), gauges for live and peak children, the session-duration histogram, and
//! `# EOF`. The counters are the SIGUSR1 stats line's fields, read from the same `Stats`, so the
//! two always agree at the moment they are taken.

use std::fmt::Write;

use crate::metrics::durations::SessionDurations;
use crate::stats::Stats;

/// The content type Prometheus asks for and this text is.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const PREFIX: &str = "fork_echo";

/// Renders the exposition. `durations` is `None` only in a parent that does not measure them.
pub fn render(stats: &Stats, durations: Option<&SessionDurations>) -> String {
    let mut out = String::with_capacity(4096);
    for (name, help, value) in counters(stats) {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{PREFIX}_{name}_total {value}");
    }
    let r = &stats.reaped;
    family(
        &mut out,
        "reaped",
        "counter",
        "Children reaped, by why their session ended.",
    );
    for (reason, value) in [
        ("eof", r.eof),
        ("reset", r.reset),
        ("idle_timeout", r.idle_timeout),
        ("io_error", r.io_error),
        ("panic", r.panic),
        ("orphaned", r.orphaned),
        ("signaled", r.signaled),
        ("other", r.other),
    ] {
        let _ = writeln!(out, "{PREFIX}_reaped_total{{reason=\"{reason}\"}} {value}");
    }
    family(
        &mut out,
        "live_children",
        "gauge",
        "Children (sessions) alive now.",
    );
    let _ = writeln!(out, "{PREFIX}_live_children {}", stats.live);
    family(
        &mut out,
        "peak_live_children",
        "gauge",
        "Most children alive at once so far.",
    );
    let _ = writeln!(out, "{PREFIX}_peak_live_children {}", stats.peak_live);
    if let Some(d) = durations {
        histogram(&mut out, d);
    }
    out.push_str("# EOF\n");
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
}

fn histogram(out: &mut String, d: &SessionDurations) {
    let name = format!("{PREFIX}_session_duration_seconds");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let _ = writeln!(out, "# UNIT {name} seconds");
    let _ = writeln!(
        out,
        "# HELP {name} Session length, from fork to reap as the parent saw them."
    );
    for (bound, n) in d.cumulative() {
        let le = if bound.is_infinite() {
            "+Inf".to_owned()
        } else {
            format!("{bound:?}")
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_count {}", d.count());
    let _ = writeln!(out, "{name}_sum {:?}", d.sum_secs());
}

/// The plain counters: name, help text, value.
fn counters(stats: &Stats) -> [(&'static str, &'static str, u64); 9] {
    [
        ("accepted", "Connections accepted.", stats.accepted),
        ("forked", "Children forked, one per session.", stats.forked),
        (
            "fork_failures",
            "Forks that failed (the client was closed).",
            stats.fork_failures,
        ),
        (
            "limit_hits",
            "--at-limit wait: pauses at --max-children; close: clients closed at once.",
            stats.limit_hits,
        ),
        (
            "emfile_pauses",
            "Accept pauses for lack of descriptors.",
            stats.emfile_pauses,
        ),
        (
            "per_source_refused",
            "Clients closed at once for --max-per-source.",
            stats.per_source_refused,
        ),
        (
            "rate_limited",
            "Accept pauses for --max-rate.",
            stats.rate_limited,
        ),
        (
            "reap_passes",
            "Scans of the child list for exited children.",
            stats.reap_passes,
        ),
        (
            "log_write_failures",
            "Log lines that could not be written to stderr.",
            stats.log_write_failures,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_a_total_and_the_text_ends_in_eof() {
        let mut stats = Stats::new();
        stats.accepted = 7;
        stats.reaped.eof = 5;
        stats.live = 2;
        let mut d = SessionDurations::default();
        d.observe(std::time::Duration::from_millis(3));
        let text = render(&stats, Some(&d));
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert!(text.contains("\nfork_echo_accepted_total 7\n"));
        assert!(text.contains("\nfork_echo_reaped_total{reason=\"eof\"} 5\n"));
        assert!(text.contains("\nfork_echo_live_children 2\n"));
        assert!(text.contains("fork_echo_session_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("fork_echo_session_duration_seconds_bucket{le=\"1.0\"} 1\n"));
        assert!(text.contains("fork_echo_session_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("fork_echo_session_duration_seconds_sum 0.003\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split([' ', '{']).next().unwrap();
            let family = text
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .find(|t| name.starts_with(t.split(' ').next().unwrap()));
            match family.and_then(|t| t.split(' ').nth(1)) {
                Some("counter") => assert!(name.ends_with("_total"), "{line}"),
                Some(_) => {}
                None => panic!("{line} has no # TYPE"),
            }
        }
    }
}
