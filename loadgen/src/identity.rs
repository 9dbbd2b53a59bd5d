//! Who wrote a report and when it measured, so reports from several processes and hosts can be
//! told apart and put on one clock: the run id shared by the workers of one run, the host, the
//! worker index, and the wall-clock start/end of the measured phase. Also `--start-at`, which
//! makes loadgens on several hosts begin their measured phase at the same instant, and the checks
//! `loadgen merge` makes before it adds reports up (a report given twice, reports of different
//! loads).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Report};

/// The furthest ahead `--start-at` may lie: beyond this it is almost certainly a typo (a
/// millisecond timestamp, a wrong year) and loadgen would otherwise sit idle holding connections.
pub const START_AT_MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// How far in the past `--start-at` may lie and still mean "now": worker processes are started
/// a moment after the parent checked the time, and hosts' clocks differ by a little.
pub const START_AT_PAST_SLACK: Duration = Duration::from_secs(5);

/// The identity of one measured run (one process). Reports written before schema version 2 have
/// none; they read as the default (empty run id), and merge tells them apart by
/// host, pid and start time instead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Shared by every worker of one run (`--run-id`, else made up at start).
    pub run_id: String,
    /// Host name of the machine that ran the load.
    pub host: String,
    /// Index of this worker within the run (`--worker-index`, or given by the splitting parent).
    pub worker: u64,
    /// Wall-clock start of the measured phase (after the barrier and warmup), Unix seconds.
    pub measured_start_unix_secs: f64,
    /// Wall-clock end of the measured phase, Unix seconds.
    pub measured_end_unix_secs: f64,
}

/// What a merge combined; `None` in the report of a single run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeInfo {
    /// Distinct host names among the merged runs.
    pub hosts: u64,
    /// Runs (worker processes) merged, lost workers included.
    pub workers: u64,
    /// Worker processes that died or never wrote a report; their connections count as failed.
    pub workers_lost: u64,
    /// `--allow-mixed` was given.
    pub allow_mixed: bool,
    /// Parameters that differed between the merged runs (only possible with `--allow-mixed`).
    pub mixed: Vec<String>,
    /// The identity of every merged run, in the order given.
    pub parts: Vec<Identity>,
}

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

/// Parses `--start-at`: RFC 3339 (`2026-11-27T10:00:00Z`) or Unix seconds (`1795000000`, `.5`
/// fractions allowed).
pub fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("--start-at {s:?} is not a time"));
        }
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    humantime::parse_rfc3339_weak(t).map_err(|e| {
        format!("--start-at {s:?} is neither RFC 3339 (2026-11-27T10:00:00Z) nor Unix seconds: {e}")
    })
}

/// Refuses a start time well in the past or absurdly far ahead of `now`.
pub fn check_start_at(start_at: SystemTime, now: SystemTime) -> Result<(), Error> {
    let shown = humantime::format_rfc3339_millis(start_at);
    if let Ok(past) = now.duration_since(start_at) {
        if past > START_AT_PAST_SLACK {
            return Err(Error::Config(format!(
                "--start-at {shown} is {:.1}s in the past; give a time after every loadgen has \
                 started (e.g. now + 30s)",
                past.as_secs_f64()
            )));
        }
    } else if let Ok(ahead) = start_at.duration_since(now) {
        if ahead > START_AT_MAX_AHEAD {
            return Err(Error::Config(format!(
                "--start-at {shown} is {:.0}s ahead, more than the {}h loadgen waits at most \
                 (a millisecond timestamp or a wrong date?)",
                ahead.as_secs_f64(),
                START_AT_MAX_AHEAD.as_secs() / 3600
            )));
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch of `t` (0 before it).
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Waits until `start_at` (if it is later than `now`) and returns the instant the measured
/// phase may begin: the barrier itself when there is no start time or it has passed.
pub(crate) async fn hold_until_start_at(
    start_at: Option<SystemTime>,
    barrier: tokio::time::Instant,
) -> tokio::time::Instant {
    let Some(start_at) = start_at else {
        return barrier;
    };
    match start_at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            let at = tokio::time::Instant::now() + wait;
            tokio::time::sleep_until(at).await;
            at.max(barrier)
        }
        Err(_) => barrier,
    }
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
        host: crate::environment::current().hostname,
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
    fn start_at_parses_rfc3339_and_unix_seconds() {
        let rfc = parse_start_at("2026-11-27T10:00:00Z").unwrap();
        let unix = parse_start_at("1795773600").unwrap();
        assert_eq!(rfc, unix);
        assert_eq!(
            parse_start_at("1795773600.5").unwrap(),
            unix + Duration::from_millis(500)
        );
        assert!(parse_start_at("tomorrow").unwrap_err().contains("RFC 3339"));
        assert!(parse_start_at("-3").is_err());
    }

    #[test]
    fn start_at_refuses_the_past_and_the_far_future() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(check_start_at(now + Duration::from_secs(60), now).is_ok());
        assert!(check_start_at(now - Duration::from_secs(2), now).is_ok());
        let past = check_start_at(now - Duration::from_secs(3600), now).unwrap_err();
        assert!(past.to_string().contains("3600.0s in the past"), "{past}");
        let far = check_start_at(now + Duration::from_secs(48 * 3600), now).unwrap_err();
        assert!(far.to_string().contains("24h"), "{far}");
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id(), new_run_id());
        assert_eq!(new_run_id().len(), 16);
    }
}
