//! What a session sends and until when: the [`Plan`] of one stretch of it (the first echo, then
//! the measured phase), and the open-loop [`Schedule`] of its messages, shared by both engines'
//! drivers and by the staged connections.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::stages::{StageUnit, Stages};
use crate::session::shared::{RunShared, Steady};
use crate::Config;

/// How one stretch of a session sends.
pub(crate) struct Plan {
    /// Send only sequence numbers below this.
    pub limit: Option<u64>,
    /// Send only messages intended before this.
    pub send_until: Option<Instant>,
    /// Open loop: when each message is intended.
    pub schedule: Option<Schedule>,
    /// Messages intended before this are warmup; `None` = all count.
    pub measure_start: Option<Instant>,
    /// Nothing outstanding survives this.
    pub deadline: Instant,
    /// Connect start, for the first-echo time of message 0.
    pub connect_start: Instant,
    /// Record the uncorrected latency too (open loop).
    pub uncorrected: bool,
}

/// Open loop: when message `seq` (from 1) of a connection is intended.
pub(crate) enum Schedule {
    /// `--rate`: at `first + (seq - 1) * interval`.
    Even { first: Instant, interval: f64 },
    /// `--stages` of rates: message `(seq - 1) * conns + conn` of the whole plan, as it is due
    /// (see `Stages::due_at`), so the connections take turns and the total follows the ramp.
    Staged {
        start: Instant,
        stages: Stages,
        conns: u64,
        conn: u64,
    },
}

impl Plan {
    pub fn intended(&self, seq: u64) -> Option<Instant> {
        Some(match self.schedule.as_ref()? {
            Schedule::Even { first, interval } => {
                *first + Duration::from_secs_f64(interval * seq.saturating_sub(1) as f64)
            }
            Schedule::Staged {
                start,
                stages,
                conns,
                conn,
            } => {
                let n = seq.saturating_sub(1).saturating_mul(*conns) + conn;
                // Past the plan: after its end, which `send_until` stops at.
                let at = stages
                    .due_at(n)
                    .unwrap_or(stages.total().as_secs_f64() + 1.0);
                *start + Duration::from_secs_f64(at)
            }
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
    Plan {
        limit: config.messages,
        send_until: steady.send_until,
        schedule: open_loop_schedule(config, conn, steady.schedule_start),
        measure_start: Some(steady.measure_start),
        deadline: steady.deadline,
        connect_start,
        uncorrected: config.rate.is_some(),
    }
}

/// The open-loop schedule of connection `conn` from `start`: `--rate` spread evenly, or the
/// rate `--stages`; `None` in closed loop.
fn open_loop_schedule(config: &Config, conn: u64, start: Instant) -> Option<Schedule> {
    if let Some(stages) = config
        .stages
        .as_ref()
        .filter(|s| s.unit == StageUnit::MessagesPerSec)
    {
        return Some(Schedule::Staged {
            start,
            stages: stages.clone(),
            conns: config.conns as u64,
            conn,
        });
    }
    let rate = config.rate?;
    let interval = config.conns as f64 / rate;
    // Spread connections evenly over one interval so the total rate is smooth.
    let offset = interval * (conn as f64 / config.conns as f64);
    Some(Schedule::Even {
        first: start + Duration::from_secs_f64(offset),
        interval,
    })
}
