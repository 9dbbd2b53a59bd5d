//! Exporters, one per format: the human text summary, the JSON report (the serde structs as
//! they are) and the HdrHistogram percentile-distribution text (`.hgrm`, as wrk2 prints it and
//! HdrHistogram's plotter reads it). Files are written to a temporary name and renamed into place.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use hdrhistogram::Histogram;

use crate::report::{format_us, HistogramReport};
use crate::{Error, Report, HIST_SIGFIG};

/// Writes the text summary: parameters, a percentile table per histogram, rates, errors.
pub fn write_text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let c = &report.counters;
    writeln!(out, "{}", title_line(report))?;
    if let Some(m) = &report.merge {
        crate::report::identity::write_merge_line(m, out)?;
    }
    writeln!(out, "{}", connections_line(report))?;
    let (failed_sessions, sessions) = report.session_failures();
    writeln!(
        out,
        "sessions     {} of {} ended well, {} failed (connect, session or never started: {:.4}), \
         {} interrupted",
        c.sessions_completed,
        sessions,
        failed_sessions,
        report.session_failure_rate(),
        c.connections_interrupted
    )?;
    if report.interrupted {
        writeln!(
            out,
            "interrupted  by Ctrl-C after {:.3}s: these figures cover what ran until then",
            report.elapsed_secs
        )?;
    }
    if c.connections_established == 0 {
        // Nothing below would mean anything: no latency, no echo, no rate.
        writeln!(out, "no connection was established")?;
        write_errors(report, out)?;
        return Ok(());
    }
    let first = match report.all_first_echo_secs {
        Some(s) if s > 0.0 => format!(
            "every connection echoed once {s:.3}s after the first connect ({:.1} connections/s)",
            c.connections_established as f64 / s
        ),
        _ => format!(
            "{} of {} established connections echoed once",
            c.first_echoes, c.connections_established
        ),
    };
    writeln!(
        out,
        "connect      phase {:.3}s; {first}",
        report.connect_phase_secs
    )?;
    writeln!(
        out,
        "messages     {} sent, {} verified, {} failed ({:.6} of sent)",
        c.messages_sent,
        c.messages_verified,
        c.messages_failed,
        report.message_failure_rate()
    )?;
    writeln!(
        out,
        "rate         {:.1} messages/s = {} measured echoes / {:.3}s (first echoes and {} warmup \
         echoes excluded)",
        report.messages_per_sec, c.measured_messages, report.measured_secs, c.warmup_messages
    )?;
    writeln!(
        out,
        "bytes        {} sent, {} received",
        c.bytes_sent, c.bytes_received
    )?;
    writeln!(out)?;
    write_latency_table(report, out)?;
    writeln!(out)?;
    write_errors(report, out)
}

/// The first line: loadgen's version, the target and the shape of the load.
fn title_line(report: &Report) -> String {
    let p = &report.parameters;
    let mode = match (p.duration_secs, p.messages_per_connection) {
        (Some(d), _) if !p.stages.is_empty() => format!("{} stages over {d}s", p.stages.len()),
        (Some(d), _) => format!("{d}s"),
        (None, Some(n)) => format!("{n} messages per connection"),
        (None, None) => String::new(),
    };
    let pacing = match p.rate {
        Some(r) => format!("open loop at {r} messages/s"),
        None => "closed loop".into(),
    };
    let processes = if p.processes > 1 {
        format!(" ({} processes merged)", p.processes)
    } else {
        String::new()
    };
    format!(
        "loadgen {} -> {}: {} connections, {}-byte messages, pipeline {}, {mode}, {pacing}, \
         {} engine{processes}",
        report.environment.loadgen_version, p.target, p.conns, p.size, p.pipeline, p.engine
    )
}

/// The percentile table: one row per histogram, one column per configured percentile.
fn write_latency_table(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut header = format!("{:<16}", "latency");
    for pv in &report.latency.echo.percentiles {
        header.push_str(&format!("{:>10}", format!("p{}", pv.percentile)));
    }
    for h in ["max", "mean", "count"] {
        header.push_str(&format!("{h:>10}"));
    }
    writeln!(out, "{header}")?;
    let l = &report.latency;
    let mut rows: Vec<(&str, &HistogramReport)> = vec![
        ("connect", &l.connect),
        ("first echo", &l.first_echo),
        ("echo", &l.echo),
    ];
    if let Some(u) = &l.echo_uncorrected {
        rows.push(("echo uncorrected", u));
    }
    if let Some(lag) = &l.send_lag {
        rows.push(("send lag", lag));
    }
    if let Some(delay) = &l.read_delay {
        rows.push(("read delay", delay));
    }
    for (name, h) in rows {
        let mut line = format!("{name:<16}");
        for pv in &h.percentiles {
            line.push_str(&format!("{:>10}", format_us(pv.value_us)));
        }
        line.push_str(&format!("{:>10}", format_us(h.max_us)));
        line.push_str(&format!("{:>10}", format_us(h.mean_us.round() as u64)));
        line.push_str(&format!("{:>10}", h.count));
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Where every asked-for connection ended: the parts add up to `--conns`.
fn connections_line(report: &Report) -> String {
    let c = &report.counters;
    let asked = report.parameters.conns;
    let mut line = format!(
        "connections  {asked} asked: {} attempted, {} established, {} failed to connect",
        c.connections_attempted, c.connections_established, c.connections_failed
    );
    if c.connections_not_started > 0 {
        line.push_str(&format!(
            ", {} never started (the run ended first)",
            c.connections_not_started
        ));
    }
    line.push_str(&format!("; peak {} open at once", c.peak_established));
    line
}

/// The error counts by kind, the first mismatch and an example message of each kind.
fn write_errors(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "errors       {}", report.errors.summary())?;
    if let Some(m) = &report.errors.first_mismatch {
        writeln!(out, "first mismatch: {m}")?;
    }
    for (kind, example) in &report.errors.examples {
        writeln!(out, "  {kind}: {example}")?;
    }
    if report.run_deadline_hit {
        writeln!(out, "the hard run deadline cut off outstanding echoes")?;
    }
    for warning in report.warnings() {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(())
}

/// One line for `-q`.
pub fn write_quiet(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let c = &report.counters;
    let p99 = report
        .latency
        .echo
        .value_at_percentile_us(99.0)
        .map(format_us)
        .unwrap_or_else(|| "-".into());
    let (failed_sessions, sessions) = report.session_failures();
    let interrupted = if report.interrupted {
        " (interrupted by Ctrl-C)"
    } else {
        ""
    };
    writeln!(
        out,
        "{}/{} connections established, {failed_sessions}/{sessions} sessions failed, \
         {}/{} messages failed, {:.1} messages/s ({} measured echoes / {:.3}s), echo p99 {p99}, \
         errors: {}{interrupted}",
        c.connections_established,
        report.parameters.conns,
        c.messages_failed,
        c.messages_sent,
        report.messages_per_sec,
        c.measured_messages,
        report.measured_secs,
        report.errors.summary()
    )?;
    for warning in report.warnings() {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(())
}

/// Writes the JSON report to `path`, or to stdout when `path` is `-`.
pub fn write_json(report: &Report, path: &Path) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(report).map_err(|e| Error::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| Error::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
    }
    write_atomically(path, text.as_bytes())
}

/// Writes the echo histogram's percentile distribution (`.hgrm`, values in milliseconds).
pub fn write_hgrm(h: &Histogram<u64>, path: &Path) -> Result<(), Error> {
    write_atomically(path, hgrm_text(h).as_bytes())
}

/// HdrHistogram's `outputPercentileDistribution` text with 5 ticks per half distance and values
/// scaled from microseconds to milliseconds, byte-compatible with wrk2 and the HdrHistogram plotter.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let d = HIST_SIGFIG as usize;
    let scale = 1000.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{value:>12.d$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{value:>12.d$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / scale, h.stdev() / scale, h.max() as f64 / scale)
    };
    let sub_buckets = 2u64.pow((2.0 * 10f64.powi(HIST_SIGFIG as i32)).log2().ceil() as u32);
    let _ = writeln!(
        s,
        "#[Mean    = {mean:>12.d$}, StdDeviation   = {stdev:>12.d$}]"
    );
    let _ = writeln!(
        s,
        "#[Max     = {max:>12.d$}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    s
}

/// Checks before any load starts that a report can later be written to `path` (`-` = stdout is
/// always fine): its directory exists and takes a new file, and `path` is not a directory. A run
/// whose report cannot be written would otherwise be lost after it ran.
pub fn check_writable(path: &Path) -> Result<(), Error> {
    if path == Path::new("-") {
        return Ok(());
    }
    probe_writable(path).map_err(|reason| Error::File {
        path: path.to_path_buf(),
        reason: format!("cannot be written ({reason}); checked before the run"),
    })
}

/// Creates and removes a temporary file beside `path` (where [`write_file_atomically`] would).
pub fn probe_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("it is a directory".into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("no directory {}", dir.display()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let probe = dir.join(format!(".{name}.probe.{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place, so readers
/// never see a half-written report.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_file_atomically(path, bytes).map_err(|e| Error::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The workspace's one atomic file write (the harness writes its reports, JUnit files and charts
/// with it too): `bytes` go to a temporary file beside `path` (same directory, so the rename cannot
/// cross filesystems; the pid keeps two writers apart), are synced, and the file is renamed over
/// `path`. Readers see the old file or the whole new one; on failure the temporary file is removed.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
