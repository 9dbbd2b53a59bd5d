//! HdrHistogram interval logs (`--hlog`): the connect, first-echo and echo histograms of every
//! `--hlog-interval` of a run, in the log format version 1.3 that the Java `HistogramLogProcessor`
//! and wrk2's HdrHistogram tools read. The hdrhistogram crate writes and parses the lines; this
//! module decides what goes in them and how logs of several processes add up.
//!
//! Interval `i` covers `[StartTime + i * interval, StartTime + (i + 1) * interval)`, StartTime
//! being the run's start (the report's `started_unix_secs`); BaseTime is the same instant, so
//! interval timestamps read as seconds into the run. Every interval from the first to the last
//! one that recorded anything is written with all three tags, empty or not, so a time series
//! drawn from one tag has no silent gaps. Values are microseconds (the `Interval_Max` column is
//! in milliseconds, as the Java tools' defaults expect of a log in nanoseconds divided by 10^6).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::config::DEFAULT_HLOG_INTERVAL;
use crate::report::output::write_atomically;
use crate::{new_histogram, Error};

/// The log's tags, in the order of [`Metric`].
pub const TAGS: [&str; 3] = ["connect", "first-echo", "echo"];

/// Which histogram an interval entry belongs to; the index into [`TAGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Connect = 0,
    FirstEcho = 1,
    Echo = 2,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Connect, Metric::FirstEcho, Metric::Echo];

    pub fn tag(self) -> &'static str {
        TAGS[self as usize]
    }
}

/// The intervals of one run (or of several merged), kept compressed: an hour of one-second
/// intervals is a few megabytes this way, where the live histograms would be gigabytes.
#[derive(Debug, Clone)]
pub struct IntervalLog {
    /// Unix seconds of interval 0's start.
    pub start_unix_secs: f64,
    pub interval: Duration,
    /// V2 deflate-compressed histograms by (interval index, metric).
    entries: BTreeMap<(u64, Metric), Vec<u8>>,
    /// Comment lines written just before an interval (the load stage it starts, with `--stages`).
    notes: BTreeMap<u64, String>,
}

impl IntervalLog {
    pub fn new(start_unix_secs: f64, interval: Duration) -> Self {
        IntervalLog {
            start_unix_secs,
            interval,
            entries: BTreeMap::new(),
            notes: BTreeMap::new(),
        }
    }

    /// Adds `h` to interval `index`'s histogram of `metric` (exactly: decoded, added, re-encoded).
    pub fn add(&mut self, index: u64, metric: Metric, h: &Histogram<u64>) -> Result<(), Error> {
        if h.is_empty() {
            return Ok(());
        }
        let sum = match self.entries.get(&(index, metric)) {
            Some(bytes) => {
                let mut sum = decode(bytes)?;
                sum.add(h).map_err(|e| Error::Merge(format!("{e:?}")))?;
                sum
            }
            None => h.clone(),
        };
        self.entries.insert((index, metric), encode(&sum)?);
        Ok(())
    }

    /// A comment line (without the `#`) to write before interval `index`.
    pub fn note(&mut self, index: u64, text: String) {
        self.notes.insert(index, text);
    }

    /// The sum of every interval of `metric`.
    pub fn total(&self, metric: Metric) -> Result<Histogram<u64>, Error> {
        let mut total = new_histogram();
        for ((_, m), bytes) in &self.entries {
            if *m == metric {
                total
                    .add(decode(bytes)?)
                    .map_err(|e| Error::Merge(format!("{e:?}")))?;
            }
        }
        Ok(total)
    }

    /// The log's text.
    pub fn to_text(&self) -> Result<String, Error> {
        let fail = |e: &dyn std::fmt::Display| Error::Merge(format!("cannot write the hlog: {e}"));
        let start = UNIX_EPOCH + Duration::from_secs_f64(self.start_unix_secs.max(0.0));
        let mut out: Vec<u8> = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[loadgen {}: connect, first-echo and echo latency in microseconds, one \
                 interval every {:.3} s]",
                env!("CARGO_PKG_VERSION"),
                self.interval.as_secs_f64()
            ))
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| fail(&e))?;
        out.extend_from_slice(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        );
        let (Some(first), Some(last)) = (self.first_index(), self.last_index()) else {
            return String::from_utf8(out).map_err(|e| fail(&e));
        };
        let mut writer = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| fail(&e))?;
        let empty = new_histogram();
        for index in first..=last {
            if let Some(note) = self.notes.get(&index) {
                writer.write_comment(note).map_err(|e| fail(&e))?;
            }
            let at = self
                .interval
                .saturating_mul(index.min(u32::MAX as u64) as u32);
            for metric in Metric::ALL {
                let h = match self.entries.get(&(index, metric)) {
                    Some(bytes) => decode(bytes)?,
                    None => empty.clone(),
                };
                let tag = Tag::new(metric.tag());
                writer
                    .write_histogram(&h, at, self.interval, tag)
                    .map_err(|e| fail(&e))?;
            }
        }
        String::from_utf8(out).map_err(|e| fail(&e))
    }

    /// Writes the log to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        write_atomically(path, self.to_text()?.as_bytes())
    }

    fn first_index(&self) -> Option<u64> {
        let entry = self.entries.keys().next().map(|k| k.0);
        let note = self.notes.keys().next().copied();
        entry.into_iter().chain(note).min()
    }

    fn last_index(&self) -> Option<u64> {
        let entry = self.entries.keys().next_back().map(|k| k.0);
        let note = self.notes.keys().next_back().copied();
        entry.into_iter().chain(note).max()
    }

    /// Parses a log this module wrote (or any log with StartTime and the three tags).
    pub fn parse(text: &[u8]) -> Result<IntervalLog, Error> {
        let bad = |m: String| Error::Merge(format!("not an hlog: {m}"));
        let (mut start, mut base) = (None, None);
        let mut raw = Vec::new();
        for entry in IntervalLogIterator::new(text) {
            match entry.map_err(|e| bad(format!("{e:?}")))? {
                LogEntry::StartTime(t) => start = Some(t.as_secs_f64()),
                LogEntry::BaseTime(t) => base = Some(t.as_secs_f64()),
                LogEntry::Interval(i) => {
                    let Some(metric) = Metric::ALL
                        .into_iter()
                        .find(|m| i.tag().map(|t| t.as_str()) == Some(m.tag()))
                    else {
                        continue;
                    };
                    let h = decode_base64(i.encoded_histogram())?;
                    raw.push((i.start_timestamp(), i.duration(), metric, h));
                }
            }
        }
        let start = start.ok_or_else(|| bad("no #[StartTime: ...] line".into()))?;
        let base = base.unwrap_or(start);
        let interval = raw
            .first()
            .map(|r| r.1)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_HLOG_INTERVAL);
        let mut log = IntervalLog::new(start, interval);
        for (at, length, metric, h) in raw {
            if length.abs_diff(interval) > Duration::from_millis(1) {
                return Err(bad("its intervals are not all of one length".into()));
            }
            let offset = base + at.as_secs_f64() - start;
            let index = (offset / interval.as_secs_f64()).round().max(0.0) as u64;
            log.add(index, metric, &h)?;
        }
        Ok(log)
    }

    /// Reads and parses the log at `path`.
    pub fn read(path: &Path) -> Result<IntervalLog, Error> {
        let text = std::fs::read(path).map_err(|e| Error::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        IntervalLog::parse(&text).map_err(|e| Error::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// One log from several (worker processes, hosts): intervals aligned by wall clock onto the
    /// earliest start and summed exactly. All must have the same interval length.
    pub fn merge(logs: &[IntervalLog]) -> Result<IntervalLog, Error> {
        let first = logs
            .first()
            .ok_or_else(|| Error::Merge("no hlogs given".into()))?;
        let start = logs
            .iter()
            .map(|l| l.start_unix_secs)
            .fold(f64::INFINITY, f64::min);
        let mut merged = IntervalLog::new(start, first.interval);
        for log in logs {
            if log.interval.abs_diff(first.interval) > Duration::from_millis(1) {
                return Err(Error::Merge(format!(
                    "hlog intervals differ ({:.3} s and {:.3} s)",
                    first.interval.as_secs_f64(),
                    log.interval.as_secs_f64()
                )));
            }
            let shift = ((log.start_unix_secs - start) / first.interval.as_secs_f64())
                .round()
                .max(0.0) as u64;
            for ((index, metric), bytes) in &log.entries {
                merged.add(index + shift, *metric, &decode(bytes)?)?;
            }
            for (index, note) in &log.notes {
                merged.notes.insert(index + shift, note.clone());
            }
        }
        Ok(merged)
    }
}

impl IntervalLog {
    /// `--hlog` of a split run: one log at `out` from the logs at `inputs` that exist and parse,
    /// aligned by wall clock.
    pub fn merge_files(inputs: &[std::path::PathBuf], out: &Path) -> Result<(), Error> {
        let logs: Vec<IntervalLog> = inputs
            .iter()
            .filter_map(|p| IntervalLog::read(p).ok())
            .collect();
        IntervalLog::merge(&logs)?.write(out)
    }
}

fn encode(h: &Histogram<u64>) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| Error::Merge(format!("cannot encode histogram: {e:?}")))?;
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Result<Histogram<u64>, Error> {
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| Error::Merge(format!("histogram cannot be decoded: {e:?}")))?;
    let mut h = new_histogram();
    h.add(&decoded)
        .map_err(|e| Error::Merge(format!("histogram out of range: {e:?}")))?;
    Ok(h)
}

fn decode_base64(b64: &str) -> Result<Histogram<u64>, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::Merge(format!("histogram is not base64: {e}")))?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn a_log_reads_back_to_the_same_intervals_and_totals() {
        let mut log = IntervalLog::new(1_700_000_000.25, Duration::from_secs(1));
        log.add(0, Metric::Connect, &hist(&[120, 130])).unwrap();
        log.add(0, Metric::FirstEcho, &hist(&[300])).unwrap();
        log.add(2, Metric::Echo, &hist(&[50, 60, 7000])).unwrap();
        log.add(2, Metric::Echo, &hist(&[55])).unwrap();
        log.note(1, "[Stage 2 of 2]".into());
        let text = log.to_text().unwrap();
        assert!(
            text.contains("#[Histogram log format version 1.3]\n"),
            "{text}"
        );
        assert!(text.contains("#[StartTime: 1700000000.250 (seconds since epoch)]"));
        assert!(text.contains("#[BaseTime: 1700000000.250 (seconds since epoch)]"));
        assert!(text.contains("\n\"StartTimestamp\",\"Interval_Length\""));
        assert!(
            text.contains("\n#[Stage 2 of 2]\nTag=connect,1.000,1.000,"),
            "{text}"
        );
        // Three intervals (0, 1 empty, 2) of three tags each.
        assert_eq!(text.lines().filter(|l| l.starts_with("Tag=")).count(), 9);
        assert!(text.contains("Tag=echo,2.000,1.000,7.003,HISTF"), "{text}");
        let back = IntervalLog::parse(text.as_bytes()).unwrap();
        assert_eq!(back.total(Metric::Echo).unwrap(), hist(&[50, 55, 60, 7000]));
        assert_eq!(back.total(Metric::Connect).unwrap(), hist(&[120, 130]));
        // Comments (the stage notes) are not read back; everything else is.
        assert_eq!(
            back.to_text().unwrap(),
            text.replace("#[Stage 2 of 2]\n", "")
        );
    }

    #[test]
    fn merged_logs_align_by_wall_clock_and_sum_exactly() {
        let mut a = IntervalLog::new(100.0, Duration::from_secs(1));
        a.add(0, Metric::Echo, &hist(&[10])).unwrap();
        a.add(1, Metric::Echo, &hist(&[20])).unwrap();
        let mut b = IntervalLog::new(101.0, Duration::from_secs(1));
        b.add(0, Metric::Echo, &hist(&[30])).unwrap();
        let m = IntervalLog::merge(&[a, b]).unwrap();
        assert_eq!(m.start_unix_secs, 100.0);
        // b's interval 0 is a's interval 1 on the wall clock.
        assert_eq!(
            decode(&m.entries[&(1, Metric::Echo)]).unwrap(),
            hist(&[20, 30])
        );
        assert_eq!(m.total(Metric::Echo).unwrap(), hist(&[10, 20, 30]));
        let c = IntervalLog::new(100.0, Duration::from_secs(2));
        assert!(IntervalLog::merge(&[m, c]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(IntervalLog::parse(b"Tag=echo,0.000,1.000,1.0,notbase64!\n").is_err());
        assert!(IntervalLog::parse(b"\"StartTimestamp\"\n").is_err());
    }
}
