//! The report of a run: these serde structs *are* the JSON format (`loadgen/schema.json` describes
//! them), and the text output is rendered from them too. Every histogram is carried both as a
//! percentile table and as HdrHistogram's V2-compressed encoding (base64), which is what lets
//! [`Report::merge`] combine reports from several processes or hosts exactly.

pub(crate) mod environment;
pub mod hlog;
pub mod identity;
pub(crate) mod merge;
pub mod output;
pub mod stage;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{new_histogram, Error, Slo};

/// Version of the JSON format; bumped on any change. Version 2 added `interrupted`,
/// `counters.connections_not_started`, `connections_interrupted`, `sessions_completed`,
/// `errors.connect.run_deadline`, `identity` and `merge`; version 1 reports are still read (those
/// fields read as 0 or absent).
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest `schema_version` [`Report::read_json`] and [`Report::merge`] still read.
pub const OLDEST_READABLE_SCHEMA_VERSION: u32 = 1;

/// An open-loop run warns when its send-lag p99 is above this fraction of the uncorrected echo
/// p99: the corrected latency is then loadgen's lateness as much as the server's latency.
pub const SEND_LAG_WARN_FRACTION: f64 = 0.25;

/// One run (or the merge of several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub parameters: Parameters,
    /// The machine and program that wrote this report.
    pub environment: Environment,
    /// For a merged report, the environments of every run merged in; empty for a single run.
    pub merged_from: Vec<Environment>,
    /// Run id, host, worker index and wall-clock measured phase of this run (for a merge: the
    /// shared run id, the hosts, and the span of all measured phases).
    #[serde(default)]
    pub identity: Identity,
    /// What a merge combined; `None` for a single run.
    #[serde(default)]
    pub merge: Option<MergeInfo>,
    /// Wall-clock start of the run, seconds since the Unix epoch.
    pub started_unix_secs: f64,
    /// Whole run, from the first connect to the last session's end.
    pub elapsed_secs: f64,
    /// From the first connect until every connection was established and had echoed once (or
    /// had failed): the barrier after which the measured phase starts.
    pub connect_phase_secs: f64,
    /// From the start of the connect phase until every established connection had echoed once;
    /// `None` if some established connection never did. On a fork-per-connection server,
    /// `established / all_first_echo_secs` is the accept + fork rate.
    pub all_first_echo_secs: Option<f64>,
    /// Length of the measured window (after warmup) that `messages_per_sec` is computed over.
    pub measured_secs: f64,
    /// Echoes verified in the measured window per second of it.
    pub messages_per_sec: f64,
    /// The hard run deadline cut off outstanding work (counted as `errors.session.run_deadline`,
    /// `errors.connect.run_deadline` and `counters.connections_not_started`).
    pub run_deadline_hit: bool,
    /// The run was stopped early by Ctrl-C: the figures cover what ran until then.
    #[serde(default)]
    pub interrupted: bool,
    pub counters: Counters,
    pub latency: Latencies,
    pub errors: Errors,
    /// One point per second since the run started (connect phase and warmup included).
    pub timeline: Vec<TimelinePoint>,
}

/// The settings a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    pub target: String,
    pub conns: u64,
    pub duration_secs: Option<f64>,
    pub messages_per_connection: Option<u64>,
    pub size: u64,
    pub pipeline: u64,
    /// Total messages per second (open loop); `None` = closed loop.
    pub rate: Option<f64>,
    pub connect_rate: Option<f64>,
    pub connect_timeout_secs: f64,
    pub io_timeout_secs: f64,
    pub warmup_secs: f64,
    pub source_ips: Vec<String>,
    pub percentiles: Vec<f64>,
    /// Fraction of failed messages tolerated (`--max-error-rate`).
    pub max_error_rate: f64,
    /// Fraction of failed sessions tolerated (`--max-session-failures`).
    #[serde(default)]
    pub max_session_failures: f64,
    pub slos: Vec<String>,
    /// Number of loadgen processes this report covers (1 unless merged).
    pub processes: u64,
    /// `--stages`, in order; the timeline's `stage` indexes it. Empty without stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<stage::Stage>,
}

/// Where a report was produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub hostname: String,
    pub kernel: String,
    pub cpus: u64,
    pub loadgen_version: String,
    pub pid: u64,
}

/// Exact counts. Messages and their counts exclude warmup; bytes cover the whole run.
///
/// Every asked-for connection ends in exactly one of five states, so
/// `conns = connections_not_started + connections_failed + sessions_failed +
/// connections_interrupted + sessions_completed`; and `connections_attempted =
/// connections_established + connections_failed + (those interrupted while connecting)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections whose connect began (counted when it begins, not when it returns).
    pub connections_attempted: u64,
    pub connections_established: u64,
    /// Connects that failed, including those still connecting at the hard run deadline.
    pub connections_failed: u64,
    /// Asked for, but the run ended (deadline or Ctrl-C) while they waited for their
    /// `--connect-rate` slot: never attempted.
    #[serde(default)]
    pub connections_not_started: u64,
    /// Stopped by Ctrl-C while connecting or in their session; not failures. Their messages
    /// still in flight are in no message count.
    #[serde(default)]
    pub connections_interrupted: u64,
    /// Established connections whose session ended without error.
    #[serde(default)]
    pub sessions_completed: u64,
    /// Most connections established at the same time (summed over merged processes).
    pub peak_established: u64,
    /// Established connections whose first message came back verified.
    pub first_echoes: u64,
    /// Established connections that ended with a session error.
    pub sessions_failed: u64,
    pub messages_sent: u64,
    pub messages_verified: u64,
    /// Sent but never verified (mismatched, short, timed out, cut off by a close or the deadline).
    pub messages_failed: u64,
    /// Verified echoes whose send was in the measured window (the basis of `messages_per_sec`).
    pub measured_messages: u64,
    /// Echoes verified during warmup (not in any other message count).
    pub warmup_messages: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Counters {
    pub(crate) fn add(&mut self, o: &Counters) {
        self.connections_attempted += o.connections_attempted;
        self.connections_established += o.connections_established;
        self.connections_failed += o.connections_failed;
        self.connections_not_started += o.connections_not_started;
        self.connections_interrupted += o.connections_interrupted;
        self.sessions_completed += o.sessions_completed;
        self.peak_established += o.peak_established;
        self.first_echoes += o.first_echoes;
        self.sessions_failed += o.sessions_failed;
        self.messages_sent += o.messages_sent;
        self.messages_verified += o.messages_verified;
        self.messages_failed += o.messages_failed;
        self.measured_messages += o.measured_messages;
        self.warmup_messages += o.warmup_messages;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
    }
}

/// The latency histograms, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Connect start to established.
    pub connect: HistogramReport,
    /// Connect start to the first message fully echoed back (accept + fork on a fork server).
    pub first_echo: HistogramReport,
    /// Echo round trip of the measured messages; with `--rate`, measured from each message's
    /// intended send time (coordinated-omission corrected).
    pub echo: HistogramReport,
    /// With `--rate` only: the same echoes measured from their actual send time.
    pub echo_uncorrected: Option<HistogramReport>,
    /// With `--rate` only: loadgen's own lateness, from when each measured message could be sent
    /// (its intended time, or the echo that freed its pipeline slot if that came later) to when
    /// loadgen queued it. Waiting for the server is not in it; see [`Report::send_lag_warning`].
    #[serde(default)]
    pub send_lag: Option<HistogramReport>,
}

/// One histogram: summary figures, the requested percentiles, and the exact encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramReport {
    pub count: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub stddev_us: f64,
    /// Median, always present whatever `percentiles` lists (0 when empty).
    pub p50_us: u64,
    /// 99th percentile, always present whatever `percentiles` lists (0 when empty).
    pub p99_us: u64,
    /// The configured percentiles (`--percentiles`).
    pub percentiles: Vec<PercentileValue>,
    /// HdrHistogram V2 compressed encoding, base64 (1 us .. 60 s, 3 significant digits).
    pub hdr: String,
}

/// The value at one percentile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileValue {
    pub percentile: f64,
    pub value_us: u64,
}

/// Failures by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub connect: ConnectErrors,
    pub session: SessionErrors,
    /// The first mismatching byte seen (first by the recording shard; any one in a merge).
    pub first_mismatch: Option<Mismatch>,
    /// The first OS error message seen for each kind, e.g. `"connect.refused"`.
    pub examples: BTreeMap<String, String>,
}

/// Connection attempts that failed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectErrors {
    pub refused: u64,
    pub timeout: u64,
    pub reset: u64,
    /// EADDRNOTAVAIL / EADDRINUSE: out of local ports or addresses.
    pub address_not_available: u64,
    pub other: u64,
    /// Still connecting when the hard run deadline passed.
    #[serde(default)]
    pub run_deadline: u64,
}

/// Established connections that ended with an error, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionErrors {
    /// An echoed byte differed from what was sent.
    pub mismatch: u64,
    /// The server closed in the middle of an echoed message.
    pub short_echo: u64,
    /// The server closed between messages while echoes were still due.
    pub closed_early: u64,
    /// An echo took longer than `--io-timeout`.
    pub echo_timeout: u64,
    pub reset: u64,
    pub other: u64,
    /// Still outstanding when the hard run deadline passed.
    pub run_deadline: u64,
}

/// Where an echo first went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub connection: u64,
    pub sequence: u64,
    /// Byte offset within the message.
    pub offset: u64,
    pub expected: u8,
    /// The byte that came back (also when the server sent bytes while no echo was due).
    pub got: u8,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {} message {} byte {}: expected {:#04x}, got {:#04x}",
            self.connection, self.sequence, self.offset, self.expected, self.got
        )
    }
}

impl ConnectErrors {
    fn add(&mut self, o: &ConnectErrors) {
        self.refused += o.refused;
        self.timeout += o.timeout;
        self.reset += o.reset;
        self.address_not_available += o.address_not_available;
        self.other += o.other;
        self.run_deadline += o.run_deadline;
    }

    pub fn total(&self) -> u64 {
        self.kinds().iter().map(|(_, n)| n).sum()
    }

    fn kinds(&self) -> [(&'static str, u64); 6] {
        [
            ("refused", self.refused),
            ("timeout", self.timeout),
            ("reset", self.reset),
            ("address_not_available", self.address_not_available),
            ("other", self.other),
            ("run_deadline", self.run_deadline),
        ]
    }
}

impl SessionErrors {
    fn add(&mut self, o: &SessionErrors) {
        self.mismatch += o.mismatch;
        self.short_echo += o.short_echo;
        self.closed_early += o.closed_early;
        self.echo_timeout += o.echo_timeout;
        self.reset += o.reset;
        self.other += o.other;
        self.run_deadline += o.run_deadline;
    }

    pub fn total(&self) -> u64 {
        self.kinds().iter().map(|(_, n)| n).sum()
    }

    fn kinds(&self) -> [(&'static str, u64); 7] {
        [
            ("mismatch", self.mismatch),
            ("short_echo", self.short_echo),
            ("closed_early", self.closed_early),
            ("echo_timeout", self.echo_timeout),
            ("reset", self.reset),
            ("other", self.other),
            ("run_deadline", self.run_deadline),
        ]
    }
}

impl Errors {
    pub(crate) fn add(&mut self, o: &Errors) {
        self.connect.add(&o.connect);
        self.session.add(&o.session);
        if self.first_mismatch.is_none() {
            self.first_mismatch.clone_from(&o.first_mismatch);
        }
        for (k, v) in &o.examples {
            self.examples.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    /// Every counted error event.
    pub fn total(&self) -> u64 {
        self.connect.total() + self.session.total()
    }

    /// Non-zero kinds as `connect.refused=3, session.mismatch=1`, or `none`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .connect
            .kinds()
            .iter()
            .map(|(k, n)| (format!("connect.{k}"), *n))
            .chain(
                self.session
                    .kinds()
                    .iter()
                    .map(|(k, n)| (format!("session.{k}"), *n)),
            )
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Whole seconds since the run started.
    pub second: u64,
    /// Echoes verified in this second (warmup and first echoes included).
    pub messages: u64,
    /// Error events in this second.
    pub errors: u64,
    /// Connections established in this second.
    pub established: u64,
    /// Connections closed in this second (by loadgen or the server); with `established`, the
    /// open connections at the end of each second are a running sum.
    #[serde(default)]
    pub closed: u64,
    /// `--stages`: the stage (from 0) this second belongs to (by its middle); absent outside the
    /// plan and without stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u32>,
    pub p50_us: u64,
    pub p99_us: u64,
    /// This second's echo histogram, V2 compressed base64, so timelines merge exactly.
    pub hdr: String,
}

impl TimelinePoint {
    pub(crate) fn new(
        second: u64,
        messages: u64,
        errors: u64,
        established: u64,
        closed: u64,
        h: &Histogram<u64>,
    ) -> Result<Self, Error> {
        Ok(TimelinePoint {
            second,
            messages,
            errors,
            established,
            closed,
            stage: None,
            p50_us: if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.5)
            },
            p99_us: if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            },
            hdr: encode_histogram(h)?,
        })
    }
}

/// Encodes a histogram as V2 compressed base64.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, Error> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| Error::Merge(format!("cannot encode histogram: {e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes a V2 (compressed or not) base64 histogram into the shared range.
pub fn decode_histogram(b64: &str) -> Result<Histogram<u64>, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::Merge(format!("histogram is not base64: {e}")))?;
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| Error::Merge(format!("histogram cannot be decoded: {e:?}")))?;
    // Re-home into the shared range so histograms from any loadgen add without surprises.
    let mut h = new_histogram();
    for v in decoded.iter_recorded() {
        h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
    }
    Ok(h)
}

impl HistogramReport {
    /// Summarizes `h` at `percentiles`.
    pub fn from_histogram(h: &Histogram<u64>, percentiles: &[f64]) -> Result<Self, Error> {
        let empty = h.is_empty();
        Ok(HistogramReport {
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            max_us: if empty { 0 } else { h.max() },
            mean_us: if empty { 0.0 } else { h.mean() },
            stddev_us: if empty { 0.0 } else { h.stdev() },
            p50_us: if empty {
                0
            } else {
                h.value_at_percentile(50.0)
            },
            p99_us: if empty {
                0
            } else {
                h.value_at_percentile(99.0)
            },
            percentiles: percentiles
                .iter()
                .map(|&p| PercentileValue {
                    percentile: p,
                    value_us: if empty { 0 } else { h.value_at_percentile(p) },
                })
                .collect(),
            hdr: encode_histogram(h)?,
        })
    }

    /// The exact histogram behind this summary.
    pub fn histogram(&self) -> Result<Histogram<u64>, Error> {
        decode_histogram(&self.hdr)
    }

    /// The value at any percentile (not only the listed ones), from the encoded histogram;
    /// `None` if the histogram is empty or cannot be decoded.
    pub fn value_at_percentile_us(&self, percentile: f64) -> Option<u64> {
        let h = self.histogram().ok()?;
        (!h.is_empty()).then(|| h.value_at_percentile(percentile))
    }
}

impl Report {
    /// Failed messages over sent messages (`--max-error-rate`): 0 when none was sent.
    pub fn message_failure_rate(&self) -> f64 {
        let c = &self.counters;
        ratio(c.messages_failed, c.messages_sent)
    }

    /// Asked-for connections that did not end well (connect failed, session failed, or never
    /// started before the run ended) over those asked for, Ctrl-C's excepted
    /// (`--max-session-failures`).
    pub fn session_failure_rate(&self) -> f64 {
        let (failed, sessions) = self.session_failures();
        ratio(failed, sessions)
    }

    /// (failed sessions, sessions) behind [`Report::session_failure_rate`].
    pub fn session_failures(&self) -> (u64, u64) {
        let c = &self.counters;
        let failed = c.connections_failed + c.sessions_failed + c.connections_not_started;
        let sessions = self
            .parameters
            .conns
            .saturating_sub(c.connections_interrupted)
            .max(failed);
        (failed, sessions)
    }

    /// Why this run failed its checks, one line each; empty when it passed. A run fails when no
    /// connection was established (that line alone, the others would only repeat it), when it
    /// was interrupted, when more sessions than `max_session_failures` or more messages than
    /// `max_error_rate` (fractions) failed, or when an SLO on echo latency was missed.
    pub fn failed_checks(
        &self,
        max_error_rate: f64,
        max_session_failures: f64,
        slos: &[Slo],
    ) -> Vec<String> {
        let mut failed = Vec::new();
        let c = &self.counters;
        if self.interrupted {
            failed.push(format!(
                "interrupted by Ctrl-C after {:.3}s: the figures cover only what ran",
                self.elapsed_secs
            ));
        }
        if c.connections_established == 0 {
            let example = self
                .errors
                .examples
                .iter()
                .next()
                .map(|(k, v)| format!(" (first error: {k}: {v})"))
                .unwrap_or_default();
            failed.push(format!(
                "no connection was established to {}: {} attempted, {}{example}",
                self.parameters.target,
                c.connections_attempted,
                self.errors.summary()
            ));
            return failed;
        }
        let (failed_sessions, sessions) = self.session_failures();
        let session_rate = ratio(failed_sessions, sessions);
        if session_rate > max_session_failures {
            failed.push(format!(
                "{failed_sessions} of {sessions} sessions failed ({:.4}), above \
                 --max-session-failures {max_session_failures}: {} connects failed, {} sessions \
                 failed, {} never started ({})",
                session_rate,
                c.connections_failed,
                c.sessions_failed,
                c.connections_not_started,
                self.errors.summary()
            ));
        }
        let message_rate = self.message_failure_rate();
        if message_rate > max_error_rate {
            failed.push(format!(
                "{} of {} messages failed ({:.6}), above --max-error-rate {max_error_rate} \
                 (a fraction of messages)",
                c.messages_failed, c.messages_sent, message_rate,
            ));
        }
        for slo in slos {
            match self.latency.echo.value_at_percentile_us(slo.percentile) {
                None => failed.push(format!("SLO {slo} missed: no echo was measured")),
                Some(v) if v as u128 > slo.max.as_micros() => failed.push(format!(
                    "SLO {slo} missed: echo p{} is {}",
                    slo.percentile,
                    format_us(v)
                )),
                Some(_) => {}
            }
        }
        failed
    }

    /// With `--rate`: a warning when loadgen's send-lag p99 is above [`SEND_LAG_WARN_FRACTION`]
    /// of the echo latency it measured (uncorrected p99), i.e. when the run measures loadgen's
    /// own timing rather than the server. `None` closed loop or when the lag is small enough.
    pub fn send_lag_warning(&self) -> Option<String> {
        let lag = self.latency.send_lag.as_ref()?;
        let echo = self.latency.echo_uncorrected.as_ref()?;
        send_lag_warning(lag, echo)
    }

    /// [`Report::failed_checks`] with the thresholds of `config`.
    pub fn failed_checks_for(&self, config: &crate::Config) -> Vec<String> {
        self.failed_checks(
            config.max_error_rate,
            config.max_session_failures,
            &config.slos,
        )
    }

    /// Reads a report written with `--json`.
    pub fn read_json(path: &Path) -> Result<Report, Error> {
        let file_err = |reason: String| Error::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| file_err(format!("not JSON: {e}")))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v)
                if (OLDEST_READABLE_SCHEMA_VERSION as u64..=SCHEMA_VERSION as u64).contains(&v) => {
            }
            Some(v) => {
                return Err(file_err(format!(
                    "schema_version {v} is not supported (this loadgen reads \
                     {OLDEST_READABLE_SCHEMA_VERSION} to {SCHEMA_VERSION})"
                )))
            }
            None => return Err(file_err("not a loadgen report (no schema_version)".into())),
        }
        let mut report: Report = serde_json::from_value(value)
            .map_err(|e| file_err(format!("not a loadgen report: {e}")))?;
        // Older versions only lack fields that read as their defaults: the report is now a
        // current one (which is what lets old and new reports merge).
        report.schema_version = SCHEMA_VERSION;
        Ok(report)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The warning of [`Report::send_lag_warning`], from its two histograms.
fn send_lag_warning(lag: &HistogramReport, echo: &HistogramReport) -> Option<String> {
    if lag.count == 0 || echo.count == 0 {
        return None;
    }
    let limit = echo.p99_us as f64 * SEND_LAG_WARN_FRACTION;
    (lag.p99_us as f64 > limit).then(|| {
        format!(
            "send lag p99 {} is more than {:.0}% of the uncorrected echo p99 {}: loadgen sent \
             late (an overloaded or noisy machine?), so the corrected echo latency measures \
             loadgen as much as the server",
            format_us(lag.p99_us),
            SEND_LAG_WARN_FRACTION * 100.0,
            format_us(echo.p99_us)
        )
    })
}

/// A microsecond value for humans: `830us`, `1.25ms`, `2.500s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.3}s", us as f64 / 1e6)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: &[u64]) -> HistogramReport {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        HistogramReport::from_histogram(&h, &[50.0, 99.0]).unwrap()
    }

    #[test]
    fn send_lag_warns_only_above_the_set_fraction_of_the_echo_p99() {
        let echo = histogram_of(&[1_000; 100]);
        // Today's tokio-timer lateness against a fast server: a warning naming both figures.
        let late = send_lag_warning(&histogram_of(&[1_500; 100]), &echo).expect("warns");
        assert!(late.contains("1.50ms") && late.contains("1.00ms"), "{late}");
        // Just under a quarter of the echo p99: no warning; just over: a warning.
        assert!(send_lag_warning(&histogram_of(&[240; 100]), &echo).is_none());
        assert!(send_lag_warning(&histogram_of(&[260; 100]), &echo).is_some());
        // Nothing measured: nothing to say.
        assert!(send_lag_warning(&histogram_of(&[]), &echo).is_none());
    }
}
