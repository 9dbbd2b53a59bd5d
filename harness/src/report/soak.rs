//! The soak report (`results/soak-<UTC time>.json`): the server under a long load through the
//! fault proxy, its descriptors, memory and children sampled every second, and a straight line
//! fitted to each over time. A leak shows as a slope: the report says, per resource, how much the
//! line grows over the run and whether that is within the limit ("flat"), as Test::Nginx's leak
//! check reads its memory samples.

use serde::{Deserialize, Serialize};

use crate::capacity::fit::{fit_line, LinearFit};
use crate::faults::{FaultPlan, ProxyCounts};
use crate::report::parts::{Environment, ReportKind, ServerEnd, ServerInfo};

/// One sample of the server, taken every second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SoakSample {
    /// Seconds since the load started.
    pub t_secs: f64,
    /// The server process's open descriptors; `None` when /proc could not be read.
    pub fds: Option<usize>,
    /// The server process's resident memory (`smaps_rollup` Rss), KiB.
    pub rss_kib: Option<u64>,
    pub live_children: usize,
    pub zombies: usize,
}

/// What the soak asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakParameters {
    pub duration_secs: f64,
    /// Connections of each loadgen round; rounds follow each other until the duration is over.
    pub conns: usize,
    /// Messages per connection and round.
    pub messages: u64,
    pub size: usize,
    pub io_timeout_secs: f64,
    /// Which connections the proxy faults, and how.
    pub faults: FaultPlan,
    /// Samples before this time are left out of the fits (allocator and page-cache warm-up).
    pub warmup_secs: f64,
    /// Largest growth of the fitted fd line over the run that still counts as flat.
    pub max_fd_growth: f64,
    /// Largest growth of the fitted RSS line over the run that still counts as flat, KiB.
    pub max_rss_growth_kib: f64,
}

/// loadgen's counts, summed over every round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoakLoad {
    pub rounds: u64,
    pub conns: u64,
    pub sessions_completed: u64,
    pub sessions_failed: u64,
    pub connections_failed: u64,
    pub messages_verified: u64,
    pub mismatch: u64,
    pub short_echo: u64,
    pub closed_early: u64,
    pub echo_timeout: u64,
    pub reset: u64,
    /// Other session errors and those cut off by a round's deadline.
    pub other: u64,
}

impl SoakLoad {
    pub fn add(&mut self, report: &loadgen::Report) {
        let (c, e) = (&report.counters, &report.errors.session);
        self.rounds += 1;
        self.conns += report.parameters.conns;
        self.sessions_completed += c.sessions_completed;
        self.sessions_failed += c.sessions_failed;
        self.connections_failed += c.connections_failed;
        self.messages_verified += c.messages_verified;
        self.mismatch += e.mismatch;
        self.short_echo += e.short_echo;
        self.closed_early += e.closed_early;
        self.echo_timeout += e.echo_timeout;
        self.reset += e.reset;
        self.other += e.other + e.run_deadline;
    }
}

/// A resource's straight line over time and whether it is flat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Least squares of the resource against seconds; `None` with fewer than two samples.
    pub fit: Option<LinearFit>,
    /// The line's change over the fitted span (slope x span), in the resource's unit.
    pub growth: Option<f64>,
    /// The most growth that counts as flat; `None` for resources only reported.
    pub limit: Option<f64>,
    /// `growth` within `limit` (either sign); `None` without a limit or a fit.
    pub flat: Option<bool>,
}

impl Trend {
    /// The trend of `points` (seconds, value), judged against `limit`.
    pub fn of(points: &[(f64, f64)], limit: Option<f64>) -> Trend {
        let fit = fit_line(points);
        let span = points.iter().map(|p| p.0).fold(f64::NAN, f64::max)
            - points.iter().map(|p| p.0).fold(f64::NAN, f64::min);
        let growth = fit.map(|f| f.slope * span);
        Trend {
            fit,
            growth,
            limit,
            flat: limit.zip(growth).map(|(l, g)| g.abs() <= l),
        }
    }
}

/// The trends the verdict rests on (fds, RSS) and those reported beside them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SoakTrends {
    pub fds: Trend,
    pub rss_kib: Trend,
    pub live_children: Trend,
    pub zombies: Trend,
}

impl SoakTrends {
    /// The trends of the samples after `warmup_secs`.
    pub fn of(samples: &[SoakSample], params: &SoakParameters) -> SoakTrends {
        let kept: Vec<&SoakSample> = samples
            .iter()
            .filter(|s| s.t_secs >= params.warmup_secs)
            .collect();
        let points = |value: &dyn Fn(&SoakSample) -> Option<f64>| -> Vec<(f64, f64)> {
            kept.iter()
                .filter_map(|s| value(s).map(|v| (s.t_secs, v)))
                .collect()
        };
        SoakTrends {
            fds: Trend::of(
                &points(&|s| s.fds.map(|n| n as f64)),
                Some(params.max_fd_growth),
            ),
            rss_kib: Trend::of(
                &points(&|s| s.rss_kib.map(|n| n as f64)),
                Some(params.max_rss_growth_kib),
            ),
            live_children: Trend::of(&points(&|s| Some(s.live_children as f64)), None),
            zombies: Trend::of(&points(&|s| Some(s.zombies as f64)), None),
        }
    }

    /// Both judged resources flat.
    pub fn flat(&self) -> bool {
        self.fds.flat == Some(true) && self.rss_kib.flat == Some(true)
    }
}

/// `results/soak-<UTC time>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    pub schema_version: u32,
    pub kind: ReportKind,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_secs: f64,
    pub environment: Environment,
    pub server: ServerInfo,
    pub parameters: SoakParameters,
    pub load: SoakLoad,
    /// What the proxy did, by its own count.
    pub proxy: ProxyCounts,
    pub samples: Vec<SoakSample>,
    pub trends: SoakTrends,
    pub server_end: ServerEnd,
    /// Why the soak failed, one line each; empty when it passed.
    pub failures: Vec<String>,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_leak_is_not_flat_and_noise_around_a_level_is() {
        // One descriptor leaked every ten seconds over ten minutes: 60 over the run.
        let leak: Vec<(f64, f64)> = (0..600)
            .map(|t| (t as f64, 8.0 + (t / 10) as f64))
            .collect();
        let trend = Trend::of(&leak, Some(2.0));
        assert!(
            (trend.growth.expect("growth") - 60.0).abs() < 1.0,
            "{trend:?}"
        );
        assert_eq!(trend.flat, Some(false));
        // A level of 8 with one sample in ten catching a descriptor mid-accept.
        let noise: Vec<(f64, f64)> = (0..600)
            .map(|t| (t as f64, if t % 10 == 3 { 9.0 } else { 8.0 }))
            .collect();
        let trend = Trend::of(&noise, Some(2.0));
        assert_eq!(trend.flat, Some(true), "{trend:?}");
        // A shrinking resource beyond the limit is not flat either (something is off).
        let shrink: Vec<(f64, f64)> = (0..60).map(|t| (t as f64, 100.0 - t as f64)).collect();
        assert_eq!(Trend::of(&shrink, Some(2.0)).flat, Some(false));
        assert_eq!(Trend::of(&[(0.0, 1.0)], Some(2.0)).flat, None);
        assert_eq!(Trend::of(&noise, None).flat, None);
    }
}
