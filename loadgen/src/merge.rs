//! One report from several runs (processes or hosts): `loadgen merge` and [`Report::merge`].
//!
//! Kept out of `report.rs` so the format does not depend on the recorder (`stats`, whose
//! per-second buckets the merged timeline is folded into) or on where a report is written
//! (`environment`): the format is a leaf that everything else may read.

use std::collections::BTreeMap;

use crate::report::{
    decode_histogram, Counters, Errors, HistogramReport, Latencies, Report, SCHEMA_VERSION,
};
use crate::stats::{seconds_to_points, SecondBucket};
use crate::{new_histogram, Error};

impl Report {
    /// One report from several runs (processes or hosts): histograms added exactly, counters
    /// summed, rates summed, times the longest. Parameters are the first report's, with
    /// `conns`, `rate`, `connect_rate` and `processes` summed.
    pub fn merge(reports: &[Report]) -> Result<Report, Error> {
        let first = reports
            .first()
            .ok_or_else(|| Error::Merge("no reports given".into()))?;
        if let Some(r) = reports.iter().find(|r| r.schema_version != SCHEMA_VERSION) {
            return Err(Error::Merge(format!(
                "schema_version {} is not {SCHEMA_VERSION}",
                r.schema_version
            )));
        }
        let percentiles = &first.parameters.percentiles;
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
        let latency = Latencies {
            connect: required(&|r| Some(&r.latency.connect))?,
            first_echo: required(&|r| Some(&r.latency.first_echo))?,
            echo: required(&|r| Some(&r.latency.echo))?,
            echo_uncorrected: add_all(&|r| r.latency.echo_uncorrected.as_ref())?,
            send_lag: add_all(&|r| r.latency.send_lag.as_ref())?,
        };

        let mut counters = Counters::default();
        let mut errors = Errors::default();
        let mut seconds: BTreeMap<u64, SecondBucket> = BTreeMap::new();
        let mut merged_from = Vec::new();
        for r in reports {
            counters.add(&r.counters);
            errors.add(&r.errors);
            if r.merged_from.is_empty() {
                merged_from.push(r.environment.clone());
            } else {
                merged_from.extend(r.merged_from.iter().cloned());
            }
            for p in &r.timeline {
                let b = seconds.entry(p.second).or_insert_with(SecondBucket::new);
                b.messages += p.messages;
                b.errors += p.errors;
                b.established += p.established;
                b.echo
                    .add(decode_histogram(&p.hdr)?)
                    .map_err(|e| Error::Merge(format!("{e:?}")))?;
            }
        }
        let timeline = seconds_to_points(seconds)?;

        let sum_opt = |f: &dyn Fn(&Report) -> Option<f64>| -> Option<f64> {
            reports.iter().map(f).sum::<Option<f64>>()
        };
        let max_f = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).fold(0.0, f64::max);
        let mut parameters = first.parameters.clone();
        parameters.conns = reports.iter().map(|r| r.parameters.conns).sum();
        parameters.rate = sum_opt(&|r| r.parameters.rate);
        parameters.connect_rate = sum_opt(&|r| r.parameters.connect_rate);
        parameters.processes = reports.iter().map(|r| r.parameters.processes).sum();
        let mut targets: Vec<&str> = Vec::new();
        for r in reports {
            if !targets.contains(&r.parameters.target.as_str()) {
                targets.push(&r.parameters.target);
            }
        }
        parameters.target = targets.join(",");

        Ok(Report {
            schema_version: SCHEMA_VERSION,
            parameters,
            environment: crate::environment::current(),
            merged_from,
            started_unix_secs: reports
                .iter()
                .map(|r| r.started_unix_secs)
                .fold(f64::INFINITY, f64::min),
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
