//! Who wrote a report and when it measured, so reports from several processes and hosts can be
//! told apart and put on one clock: a fresh run id, the identity of a run (the run id shared by
//! the workers of one run, the host, the worker index, the wall-clock start/end of the measured
//! phase; the types are plain data in `report`), and the checks `loadgen merge` makes before it
//! adds reports up (a report given twice, reports of different loads). `--start-at` is in `start`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::report::{Identity, MergeInfo};
use crate::{Error, Report};

/// A fresh run id: 16 hex digits from the standard library's per-process random hash keys, the
/// time and the pid (no dependency on a random-number crate for an id).
pub fn new_run_id() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The identity of a run of `config` that started at `started_unix_secs` and measured
/// `measured` from `measure_offset` after its start.
pub(crate) fn of_run(
    config: &crate::Config,
    started_unix_secs: f64,
    measure_offset: Duration,
    measured: Duration,
) -> Identity {
    let start = started_unix_secs + measure_offset.as_secs_f64();
    Identity {
        run_id: config.run_id.clone().unwrap_or_else(new_run_id),
        host: crate::report::environment::current().hostname,
        worker: config.worker_index,
        measured_start_unix_secs: start,
        measured_end_unix_secs: start + measured.as_secs_f64(),
    }
}

/// The text report's line about a merge: how many workers from how many hosts, lost workers,
/// and what `--allow-mixed` let through.
pub(crate) fn write_merge_line(m: &MergeInfo, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut line = format!(
        "merged       {} worker{} from {} host{}",
        m.workers,
        if m.workers == 1 { "" } else { "s" },
        m.hosts,
        if m.hosts == 1 { "" } else { "s" }
    );
    if m.workers_lost > 0 {
        line.push_str(&format!(
            "; {} worker{} lost (connections counted as failed)",
            m.workers_lost,
            if m.workers_lost == 1 { "" } else { "s" }
        ));
    }
    if m.allow_mixed {
        if m.mixed.is_empty() {
            line.push_str("; --allow-mixed (nothing differed)");
        } else {
            line.push_str(&format!("; --allow-mixed: {} differ", m.mixed.join(", ")));
        }
    }
    writeln!(out, "{line}")
}

/// The key that makes a run unique in a merge. Reports older than schema version 2 carry no run
/// id; the host, pid and start time stand in for it.
pub(crate) fn part_key(id: &Identity, report: &Report) -> (String, u64) {
    if id.run_id.is_empty() {
        (
            format!(
                "{}/pid {}/{}",
                report.environment.hostname, report.environment.pid, report.started_unix_secs
            ),
            id.worker,
        )
    } else {
        (id.run_id.clone(), id.worker)
    }
}

/// The identities a report stands for: its parts when it is itself a merge, else its own.
pub(crate) fn parts_of(report: &Report) -> Vec<Identity> {
    match &report.merge {
        Some(m) if !m.parts.is_empty() => m.parts.clone(),
        _ => vec![report.identity.clone()],
    }
}

/// The parameters that must agree for a merged report to describe one load, as (field, value).
fn comparable(report: &Report) -> [(&'static str, String); 4] {
    let p = &report.parameters;
    [
        ("target", p.target.clone()),
        ("size", p.size.to_string()),
        ("pipeline", p.pipeline.to_string()),
        (
            "mode",
            if p.rate.is_some() {
                "open loop".into()
            } else {
                "closed loop".into()
            },
        ),
    ]
}

/// Checks that `reports` (named by `labels`, e.g. their paths) can be merged: no run given
/// twice, and the same target, size, pipeline and mode unless `allow_mixed`. Returns the fields
/// that differ (empty unless `allow_mixed`).
pub(crate) fn check_mergeable(
    reports: &[Report],
    labels: &[String],
    allow_mixed: bool,
) -> Result<Vec<String>, Error> {
    let label = |i: usize| {
        labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("report {}", i + 1))
    };
    let mut seen: Vec<((String, u64), usize)> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        for part in parts_of(r) {
            let key = part_key(&part, r);
            if let Some((_, j)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(Error::Merge(format!(
                    "{} repeats run {} worker {} already in {} (a report given twice?)",
                    label(i),
                    key.0,
                    key.1,
                    label(*j)
                )));
            }
            seen.push((key, i));
        }
    }
    let mut mixed = Vec::new();
    let Some(first) = reports.first() else {
        return Ok(mixed);
    };
    let base = comparable(first);
    for (i, r) in reports.iter().enumerate().skip(1) {
        for ((field, want), (_, got)) in base.iter().zip(comparable(r)) {
            if *want == got {
                continue;
            }
            if !allow_mixed {
                return Err(Error::Merge(format!(
                    "{field} differs: {} has {want}, {} has {got} (--allow-mixed merges anyway)",
                    label(0),
                    label(i)
                )));
            }
            if !mixed.iter().any(|m| m == field) {
                mixed.push(field.to_string());
            }
        }
    }
    Ok(mixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id(), new_run_id());
        assert_eq!(new_run_id().len(), 16);
    }
}
