//! The serde types of a loadgen report: these structs *are* the JSON format
//! (`loadgen/schema.json` describes them), with the small adders a merge and the shards use.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::histogram::{encode_histogram, HistogramReport};
use crate::Error;

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
    /// The engine that drove the connections (`threads` or `tokio`; `--engine auto` resolved);
    /// a merge of runs on different engines lists them, comma-separated.
    #[serde(default = "engine_before_v3")]
    pub engine: String,
    /// `--stages`, in order; the timeline's `stage` indexes it. Empty without stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::config::stages::Stage>,
}

/// `parameters.engine` of a report older than schema version 3.
fn engine_before_v3() -> String {
    crate::Engine::Tokio.name().into()
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
    /// How long each measured echo had been waiting in the kernel, fully received, when
    /// loadgen's read returned it (the socket's receive timestamp, SO_TIMESTAMPNS, to the read).
    /// It is part of `echo`: loadgen's own delay in reading, e.g. its thread or event loop
    /// waiting for a CPU. `None` in reports older than schema 4. See
    /// [`Report::read_delay_warning`].
    #[serde(default)]
    pub read_delay: Option<HistogramReport>,
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
