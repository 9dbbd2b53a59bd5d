//! The checks a run is judged by: failure rates against `--max-error-rate` and
//! `--max-session-failures`, latency SLOs, and the send-lag warning of an open-loop run.

use super::histogram::{format_us, HistogramReport};
use super::schema::Report;
use crate::Slo;

/// An open-loop run warns when its send-lag p99 is above this fraction of the uncorrected echo
/// p99: the corrected latency is then loadgen's lateness as much as the server's latency. Any
/// run warns when its read-delay p99 is above this fraction of the echo p99 (and over
/// [`READ_DELAY_WARN_FLOOR_US`]).
pub const SEND_LAG_WARN_FRACTION: f64 = 0.25;

/// Below this a read-delay p99 is the wake-up of a thread or event loop blocked on its socket,
/// which any client pays on any host (tens to hundreds of microseconds in a VM): no warning.
pub const READ_DELAY_WARN_FLOOR_US: f64 = 1000.0;

/// Whether a read-delay p99 makes the echo latency loadgen's as much as the server's: over
/// [`SEND_LAG_WARN_FRACTION`] of the echo p99 and over [`READ_DELAY_WARN_FLOOR_US`]. One rule
/// for loadgen's warning and for the harness's sweep steps.
pub fn read_delay_is_loadgens(delay_p99_us: f64, echo_p99_us: f64) -> bool {
    delay_p99_us > READ_DELAY_WARN_FLOOR_US && delay_p99_us > echo_p99_us * SEND_LAG_WARN_FRACTION
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

    /// A warning when the p99 of loadgen's own read delay (echoes waiting in its sockets, fully
    /// received, for the thread or event loop that reads them to run) is above
    /// [`SEND_LAG_WARN_FRACTION`] of the echo p99 and over a millisecond
    /// ([`read_delay_is_loadgens`]): the tail is then loadgen's as much as the server's. `None`
    /// for older reports or when the delay is small enough.
    pub fn read_delay_warning(&self) -> Option<String> {
        let delay = self.latency.read_delay.as_ref()?;
        let echo = &self.latency.echo;
        let loadgens = echo.count > 0
            && delay.count > 0
            && read_delay_is_loadgens(delay.p99_us as f64, echo.p99_us as f64);
        loadgens.then(|| {
            format!(
                "read delay p99 {} is more than {:.0}% of the echo p99 {}: echoes waited in \
                 loadgen's sockets for it to get a CPU (more connections than this \
                 machine runs smoothly, or a noisy machine?), so the echo latency measures \
                 loadgen as much as the server",
                format_us(delay.p99_us),
                SEND_LAG_WARN_FRACTION * 100.0,
                format_us(echo.p99_us)
            )
        })
    }

    /// Every warning about the run's own validity, one line each, for the text outputs.
    pub fn warnings(&self) -> Vec<String> {
        [self.send_lag_warning(), self.read_delay_warning()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// [`Report::failed_checks`] with the thresholds of `config`.
    pub fn failed_checks_for(&self, config: &crate::Config) -> Vec<String> {
        self.failed_checks(
            config.max_error_rate,
            config.max_session_failures,
            &config.slos,
        )
    }
}

/// Whether loadgen's own delay `own` has a p99 above [`SEND_LAG_WARN_FRACTION`] of `echo`'s.
fn above_share_of_p99(own: &HistogramReport, echo: &HistogramReport) -> bool {
    own.count > 0
        && echo.count > 0
        && own.p99_us as f64 > echo.p99_us as f64 * SEND_LAG_WARN_FRACTION
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
    above_share_of_p99(lag, echo).then(|| {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_histogram;

    fn histogram_of(values: &[u64]) -> HistogramReport {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        HistogramReport::from_histogram(&h, &[50.0, 99.0]).unwrap()
    }

    #[test]
    fn read_delay_is_loadgens_over_a_quarter_of_the_echo_and_over_a_millisecond() {
        assert!(read_delay_is_loadgens(30_000.0, 50_000.0));
        // A quarter or less of the echo is the server's to carry.
        assert!(!read_delay_is_loadgens(12_000.0, 50_000.0));
        // Under a millisecond it is the wake-up any client pays, however large its share.
        assert!(!read_delay_is_loadgens(900.0, 1_000.0));
        assert!(read_delay_is_loadgens(1_100.0, 1_200.0));
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
