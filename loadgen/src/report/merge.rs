//! One report from several runs (processes or hosts): `loadgen merge` and [`Report::merge`].
//!
//! Kept out of `report::schema` so the format does not depend on the recorder (`stats`, whose
//! per-second buckets the merged timeline is folded into) or on where a report is written
//! (`environment`): the format is a leaf that everything else may read.

use std::collections::BTreeMap;

use crate::report::identity;
use crate::report::timeline::{seconds_to_points, SecondBucket};
use crate::report::{
    decode_histogram, Counters, Errors, HistogramReport, Latencies, Report,
    OLDEST_READABLE_SCHEMA_VERSION, SCHEMA_VERSION,
};
use crate::report::{Identity, MergeInfo, Parameters, TimelinePoint};
use crate::{new_histogram, Error};

impl Report {
    /// One report from several runs (processes or hosts): histograms added exactly, counters
    /// summed, rates summed, times the longest, timelines aligned by wall clock. Parameters are
    /// the first report's, with `conns`, `rate`, `connect_rate` and `processes` summed. Refuses
    /// a run given twice and runs of different target, size, pipeline or mode
    /// ([`Report::merge_with`] names the reports and can allow the latter).
    pub fn merge(reports: &[Report]) -> Result<Report, Error> {
        Report::merge_with(reports, &[], false)
    }

    /// [`Report::merge`] with `labels` (e.g. file names) naming the reports in errors, and
    /// `allow_mixed` to merge reports whose target, size, pipeline or mode differ (the fields
    /// that differ are listed in the merged report's `merge.mixed`).
    pub fn merge_with(
        reports: &[Report],
        labels: &[String],
        allow_mixed: bool,
    ) -> Result<Report, Error> {
        let first = reports
            .first()
            .ok_or_else(|| Error::Merge("no reports given".into()))?;
        check_versions(reports)?;
        let mixed = identity::check_mergeable(reports, labels, allow_mixed)?;
        let started_unix_secs = reports
            .iter()
            .map(|r| r.started_unix_secs)
            .fold(f64::INFINITY, f64::min);
        let latency = merged_latencies(reports, &first.parameters.percentiles)?;

        let mut counters = Counters::default();
        let mut errors = Errors::default();
        let mut seconds: BTreeMap<u64, SecondBucket> = BTreeMap::new();
        let mut merged_from = Vec::new();
        let mut parts: Vec<Identity> = Vec::new();
        let mut workers_lost = 0;
        for r in reports {
            parts.extend(identity::parts_of(r));
            workers_lost += r.merge.as_ref().map_or(0, |m| m.workers_lost);
            // Each timeline counts seconds from its own run's start: shift it onto the
            // earliest start so the same wall-clock second lands in the same point.
            let shift = (r.started_unix_secs - started_unix_secs).round().max(0.0) as u64;
            counters.add(&r.counters);
            errors.add(&r.errors);
            if r.merged_from.is_empty() {
                merged_from.push(r.environment.clone());
            } else {
                merged_from.extend(r.merged_from.iter().cloned());
            }
            add_timeline(&mut seconds, &r.timeline, shift)?;
        }
        let timeline = seconds_to_points(seconds)?;

        let max_f = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).fold(0.0, f64::max);
        let parameters = merged_parameters(reports);
        let hosts = distinct(parts.iter().map(|p| p.host.as_str())).len() as u64;
        let merged_identity = merged_identity(&parts);
        let merge = MergeInfo {
            hosts,
            workers: parts.len() as u64,
            workers_lost,
            allow_mixed,
            mixed,
            parts,
        };

        Ok(Report {
            schema_version: SCHEMA_VERSION,
            parameters,
            environment: crate::report::environment::current(),
            merged_from,
            identity: merged_identity,
            merge: Some(merge),
            started_unix_secs,
            elapsed_secs: max_f(&|r| r.elapsed_secs),
            connect_phase_secs: max_f(&|r| r.connect_phase_secs),
            all_first_echo_secs: reports
                .iter()
                .map(|r| r.all_first_echo_secs)
                .collect::<Option<Vec<f64>>>()
                .map(|v| v.into_iter().fold(0.0, f64::max)),
            measured_secs: max_f(&|r| r.measured_secs),
            messages_per_sec: reports.iter().map(|r| r.messages_per_sec).sum(),
            run_deadline_hit: reports.iter().any(|r| r.run_deadline_hit),
            interrupted: reports.iter().any(|r| r.interrupted),
            counters,
            latency,
            errors,
            timeline,
        })
    }
}

/// Refuses a report of a schema version this loadgen does not read.
fn check_versions(reports: &[Report]) -> Result<(), Error> {
    match reports
        .iter()
        .find(|r| !(OLDEST_READABLE_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&r.schema_version))
    {
        Some(r) => Err(Error::Merge(format!(
            "schema_version {} is not {OLDEST_READABLE_SCHEMA_VERSION}..={SCHEMA_VERSION}",
            r.schema_version
        ))),
        None => Ok(()),
    }
}

/// Every run's histograms added up exactly (the open-loop ones when any run has them).
fn merged_latencies(reports: &[Report], percentiles: &[f64]) -> Result<Latencies, Error> {
    let add_all = |pick: &dyn Fn(&Report) -> Option<&HistogramReport>| -> Result<Option<HistogramReport>, Error> {
        let mut h = new_histogram();
        let mut any = false;
        for r in reports {
            if let Some(hr) = pick(r) {
                any = true;
                h.add(hr.histogram()?)
                    .map_err(|e| Error::Merge(format!("{e:?}")))?;
            }
        }
        if any {
            Ok(Some(HistogramReport::from_histogram(&h, percentiles)?))
        } else {
            Ok(None)
        }
    };
    let required = |pick: &dyn Fn(&Report) -> Option<&HistogramReport>| {
        add_all(pick)?.ok_or_else(|| Error::Merge("missing histogram".into()))
    };
    Ok(Latencies {
        connect: required(&|r| Some(&r.latency.connect))?,
        first_echo: required(&|r| Some(&r.latency.first_echo))?,
        echo: required(&|r| Some(&r.latency.echo))?,
        echo_uncorrected: add_all(&|r| r.latency.echo_uncorrected.as_ref())?,
        send_lag: add_all(&|r| r.latency.send_lag.as_ref())?,
        read_delay: add_all(&|r| r.latency.read_delay.as_ref())?,
    })
}

/// Adds a run's timeline points into `seconds`, each `shift` seconds later.
fn add_timeline(
    seconds: &mut BTreeMap<u64, SecondBucket>,
    timeline: &[TimelinePoint],
    shift: u64,
) -> Result<(), Error> {
    for p in timeline {
        let b = seconds
            .entry(p.second + shift)
            .or_insert_with(SecondBucket::new);
        b.messages += p.messages;
        b.errors += p.errors;
        b.established += p.established;
        b.closed += p.closed;
        b.stage = b.stage.or(p.stage);
        b.echo
            .add(decode_histogram(&p.hdr)?)
            .map_err(|e| Error::Merge(format!("{e:?}")))?;
    }
    Ok(())
}

/// The first run's parameters with the load added up: connections, rates, processes, targets.
fn merged_parameters(reports: &[Report]) -> Parameters {
    let sum_opt = |f: &dyn Fn(&Report) -> Option<f64>| -> Option<f64> {
        reports.iter().map(f).sum::<Option<f64>>()
    };
    let mut parameters = reports[0].parameters.clone();
    parameters.conns = reports.iter().map(|r| r.parameters.conns).sum();
    parameters.rate = sum_opt(&|r| r.parameters.rate);
    parameters.connect_rate = sum_opt(&|r| r.parameters.connect_rate);
    parameters.processes = reports.iter().map(|r| r.parameters.processes).sum();
    parameters.target = distinct(reports.iter().map(|r| r.parameters.target.as_str())).join(",");
    // Workers of one run share an engine; reports merged by hand may not, and say so.
    parameters.engine = distinct(reports.iter().map(|r| r.parameters.engine.as_str())).join(",");
    parameters
}

/// The values of `items` without repeats, in first-seen order.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The identity of a merge: every run id and host, and the span of all measured phases.
fn merged_identity(parts: &[Identity]) -> Identity {
    let span = |pick: &dyn Fn(&Identity) -> f64, min: bool| {
        let values = parts.iter().map(pick).filter(|v| *v > 0.0);
        if min {
            values.fold(f64::INFINITY, f64::min)
        } else {
            values.fold(0.0, f64::max)
        }
    };
    let measured_start = span(&|p| p.measured_start_unix_secs, true);
    Identity {
        run_id: distinct(parts.iter().map(|p| p.run_id.as_str())).join(","),
        host: distinct(parts.iter().map(|p| p.host.as_str())).join(","),
        worker: 0,
        measured_start_unix_secs: if measured_start.is_finite() {
            measured_start
        } else {
            0.0
        },
        measured_end_unix_secs: span(&|p| p.measured_end_unix_secs, false),
    }
}
