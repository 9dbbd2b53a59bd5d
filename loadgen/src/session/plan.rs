//! What a session sends and until when: the [`Plan`] of one stretch of it (the first echo, then
//! the measured phase), shared by both engines' drivers.

use std::time::Duration;

use tokio::time::Instant;

use crate::session::shared::{RunShared, Steady};
use crate::Config;

/// How one stretch of a session sends.
pub(crate) struct Plan {
    /// Send only sequence numbers below this.
    pub limit: Option<u64>,
    /// Send only messages intended before this.
    pub send_until: Option<Instant>,
    /// Open loop: message `seq` is intended at `first + (seq - first_seq) * interval`.
    pub schedule: Option<(Instant, u64, f64)>,
    /// Messages intended before this are warmup; `None` = all count.
    pub measure_start: Option<Instant>,
    /// Nothing outstanding survives this.
    pub deadline: Instant,
    /// Connect start, for the first-echo time of message 0.
    pub connect_start: Instant,
    /// Record the uncorrected latency too (open loop).
    pub uncorrected: bool,
}

impl Plan {
    pub fn intended(&self, seq: u64) -> Option<Instant> {
        self.schedule.map(|(first, first_seq, interval)| {
            first + Duration::from_secs_f64(interval * (seq - first_seq) as f64)
        })
    }
}

/// When connection `conn` may start connecting (`--connect-rate`), `None` = at once.
pub(crate) fn ramp_slot(shared: &RunShared, conn: u64) -> Option<Instant> {
    let rate = shared.config.connect_rate?;
    Some(shared.t0 + Duration::from_secs_f64(conn as f64 / rate))
}

/// The source address of connection `conn` (`--source-ip`, round-robin).
pub(crate) fn source_of(config: &Config, conn: u64) -> Option<std::net::IpAddr> {
    (!config.source_ips.is_empty())
        .then(|| config.source_ips[conn as usize % config.source_ips.len()])
}

/// The plan of the first echo (message 0), which ends the connection's connect phase.
pub(crate) fn first_plan(shared: &RunShared, connect_start: Instant) -> Plan {
    Plan {
        limit: Some(1),
        send_until: None,
        schedule: None,
        measure_start: None,
        deadline: shared.connect_deadline,
        connect_start,
        uncorrected: false,
    }
}

/// The plan of the measured phase once the barrier has opened with `steady`.
pub(crate) fn steady_plan(
    config: &Config,
    steady: &Steady,
    conn: u64,
    connect_start: Instant,
) -> Plan {
    let schedule = config.rate.map(|rate| {
        let interval = config.conns as f64 / rate;
        // Spread connections evenly over one interval so the total rate is smooth.
        let offset = interval * (conn as f64 / config.conns as f64);
        (
            steady.schedule_start + Duration::from_secs_f64(offset),
            1,
            interval,
        )
    });
    Plan {
        limit: config.messages,
        send_until: steady.send_until,
        schedule,
        measure_start: Some(steady.measure_start),
        deadline: steady.deadline,
        connect_start,
        uncorrected: config.rate.is_some(),
    }
}
