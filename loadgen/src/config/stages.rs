//! `--stages`: a load that changes over time, with k6's ramping model. Each stage names a
//! duration and a target; the target is reached linearly over the stage from where the previous
//! stage ended (the first starts from 0). Targets are either open connections
//! (`"10s:100,30s:1000,10s:0"`, k6's ramping-vus) or a total message rate (`"10s:200/s,30s:2000/s"`,
//! ramping-arrival-rate, over `--conns` connections). This module is the plan's arithmetic only,
//! engine-independent: which connections are open when, when each message is due, which stage
//! a moment belongs to. [`Stage`] is also the report's record of a stage (`parameters.stages`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the stage targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageUnit {
    /// Open connections.
    Connections,
    /// Messages per second over all connections (open loop).
    MessagesPerSec,
}

/// One stage: reach `target` linearly over `duration`. The serde struct is the report's
/// `parameters.stages` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub duration_secs: f64,
    pub target: f64,
    pub unit: StageUnit,
}

/// A validated `--stages` plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    pub unit: StageUnit,
    pub stages: Vec<Stage>,
}

impl std::str::FromStr for Stages {
    type Err = String;

    /// Parses `DURATION:TARGET[,DURATION:TARGET...]`, every target a count or every one a rate
    /// (`N/s`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut stages = Vec::new();
        let mut unit = None;
        for part in s.split(',').map(str::trim) {
            let (d, t) = part.split_once(':').ok_or_else(|| {
                format!("--stages: {part:?} is not DURATION:TARGET, e.g. 10s:100")
            })?;
            let duration =
                humantime::parse_duration(d.trim()).map_err(|e| format!("--stages: {d:?}: {e}"))?;
            if duration.is_zero() {
                return Err(format!("--stages: {part:?} lasts no time"));
            }
            let (number, this_unit) = match t.trim().strip_suffix("/s") {
                Some(rate) => (rate, StageUnit::MessagesPerSec),
                None => (t.trim(), StageUnit::Connections),
            };
            if unit.is_some_and(|u| u != this_unit) {
                return Err(
                    "--stages: give every target as connections or every one as a \
                            rate (N/s), not both"
                        .into(),
                );
            }
            unit = Some(this_unit);
            let target: f64 = number
                .parse()
                .map_err(|_| format!("--stages: target {t:?} is not a number"))?;
            let whole = this_unit == StageUnit::Connections && target.fract() != 0.0;
            if !target.is_finite() || target < 0.0 || whole {
                return Err(format!(
                    "--stages: target {t:?} must be a whole number of connections or a rate \
                     of at least 0"
                ));
            }
            stages.push(Stage {
                duration_secs: duration.as_secs_f64(),
                target,
                unit: this_unit,
            });
        }
        let unit = unit.ok_or("--stages: no stage given")?;
        if stages.iter().all(|s| s.target == 0.0) {
            return Err("--stages: every target is 0, so there is no load".into());
        }
        Ok(Stages { unit, stages })
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                let d = humantime::format_duration(Duration::from_secs_f64(s.duration_secs));
                match s.unit {
                    StageUnit::Connections => format!("{d}:{}", s.target),
                    StageUnit::MessagesPerSec => format!("{d}:{}/s", s.target),
                }
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

impl Stages {
    /// The whole plan's length.
    pub fn total(&self) -> Duration {
        Duration::from_secs_f64(self.stages.iter().map(|s| s.duration_secs).sum())
    }

    /// The highest target.
    pub fn peak(&self) -> f64 {
        self.stages.iter().map(|s| s.target).fold(0.0, f64::max)
    }

    /// `(start, end, from, to)` of every stage, in seconds since the plan started.
    fn segments(&self) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        let mut at = 0.0;
        let mut from = 0.0;
        self.stages.iter().map(move |s| {
            let seg = (at, at + s.duration_secs, from, s.target);
            at += s.duration_secs;
            from = s.target;
            seg
        })
    }

    /// The planned target `t` seconds into the plan (the last target after the end).
    pub fn target_at(&self, t: f64) -> f64 {
        let mut last = 0.0;
        for (start, end, from, to) in self.segments() {
            if t < end {
                return from + (to - from) * ((t - start).max(0.0) / (end - start));
            }
            last = to;
        }
        last
    }

    /// The stage (from 0) that `t` seconds into the plan belong to; `None` outside the plan.
    pub fn stage_at(&self, t: f64) -> Option<usize> {
        if t < 0.0 {
            return None;
        }
        self.segments().position(|(_, end, _, _)| t < end)
    }

    /// Where each stage starts, in seconds since the plan started.
    pub fn starts(&self) -> Vec<f64> {
        self.segments().map(|(start, ..)| start).collect()
    }

    /// Connection stages: the spans (seconds since the plan started) in which connection `i`
    /// (from 0) is open. It is open while the planned count, rounded, exceeds `i`, so at each
    /// stage boundary exactly the target is open, and a ramp opens its connections evenly.
    pub fn open_spans(&self, i: u64) -> Vec<(f64, f64)> {
        // Open while target(t) >= i + 0.5 (round(target) > i).
        let level = i as f64 + 0.5;
        let mut spans: Vec<(f64, f64)> = Vec::new();
        for (start, end, from, to) in self.segments() {
            let cross = |v: f64| start + (end - start) * (v - from) / (to - from);
            let span = match (from >= level, to >= level) {
                (true, true) => Some((start, end)),
                (false, true) => Some((cross(level), end)),
                (true, false) => Some((start, cross(level))),
                (false, false) => None,
            };
            match (span, spans.last_mut()) {
                (Some((s, e)), Some(last)) if (s - last.1).abs() < 1e-9 => last.1 = e,
                (Some(span), _) if span.1 > span.0 => spans.push(span),
                _ => {}
            }
        }
        spans
    }

    /// Rate stages: messages due in the first `t` seconds of the plan.
    fn due_by(&self, t: f64) -> f64 {
        let mut n = 0.0;
        for (start, end, from, to) in self.segments() {
            let upto = t.min(end);
            if upto <= start {
                break;
            }
            let rate_at = from + (to - from) * (upto - start) / (end - start);
            n += (from + rate_at) / 2.0 * (upto - start);
        }
        n
    }

    /// Rate stages: when message number `n` (from 0, over all connections) is due, in seconds
    /// since the plan started: the moment `due_by` passes `n + 0.5`. `None` after the plan.
    pub fn due_at(&self, n: u64) -> Option<f64> {
        let want = n as f64 + 0.5;
        let mut before = 0.0;
        for (start, end, from, to) in self.segments() {
            let len = end - start;
            let in_stage = (from + to) / 2.0 * len;
            if before + in_stage >= want {
                // Solve from*x + (to-from)/(2*len)*x^2 = want - before for x in [0, len].
                let need = want - before;
                let a = (to - from) / (2.0 * len);
                let x = if a.abs() < 1e-12 {
                    need / from
                } else {
                    (-from + (from * from + 4.0 * a * need).sqrt()) / (2.0 * a)
                };
                return Some(start + x.clamp(0.0, len));
            }
            before += in_stage;
        }
        None
    }

    /// Rate stages: messages the plan sends in all.
    pub fn messages(&self) -> f64 {
        self.due_by(self.total().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(s: &str) -> Stages {
        s.parse().unwrap()
    }

    #[test]
    fn parses_k6_style_stages_and_refuses_mixtures() {
        let p = plan("10s:100, 30s:1000,10s:0");
        assert_eq!(p.unit, StageUnit::Connections);
        assert_eq!(p.total(), Duration::from_secs(50));
        assert_eq!(p.peak(), 1000.0);
        assert_eq!(p.to_string(), "10s:100,30s:1000,10s:0");
        assert_eq!(plan("10s:200/s,30s:2000/s").unit, StageUnit::MessagesPerSec);
        for bad in [
            "",
            "10s",
            "10s:100,5s:10/s",
            "0s:5",
            "1s:-1",
            "1s:1.5",
            "x:1",
            "1s:0",
        ] {
            assert!(bad.parse::<Stages>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_ramp_linearly_and_stages_partition_the_time() {
        let p = plan("10s:100,30s:1000,10s:0");
        assert_eq!(p.target_at(0.0), 0.0);
        assert_eq!(p.target_at(5.0), 50.0);
        assert_eq!(p.target_at(10.0), 100.0);
        assert_eq!(p.target_at(25.0), 550.0);
        assert_eq!(p.target_at(45.0), 500.0);
        assert_eq!(p.target_at(60.0), 0.0);
        assert_eq!(p.stage_at(9.99), Some(0));
        assert_eq!(p.stage_at(10.0), Some(1));
        assert_eq!(p.stage_at(50.0), None);
        assert_eq!(p.starts(), vec![0.0, 10.0, 40.0]);
    }

    #[test]
    fn connection_spans_give_the_planned_count_at_every_moment() {
        let p = plan("2s:20,1s:20,2s:5,1s:10");
        let spans: Vec<_> = (0..20).map(|i| p.open_spans(i)).collect();
        for t in [0.5, 1.0, 2.0, 2.5, 3.0, 4.1, 5.0, 5.5] {
            let open = spans
                .iter()
                .filter(|s| s.iter().any(|(a, b)| *a <= t && t < *b))
                .count();
            assert_eq!(open as f64, p.target_at(t).round(), "at {t}s");
        }
        // Connection 7 opens on the first ramp, closes on the way down and opens again.
        assert_eq!(spans[7].len(), 2, "{:?}", spans[7]);
        assert!(spans[0].len() == 1 && spans[0][0].1 == 6.0);
    }

    #[test]
    fn rate_stages_space_messages_by_the_ramp() {
        let p = plan("2s:100/s,2s:100/s");
        assert_eq!(p.messages(), 300.0);
        // The ramp sends 100 messages in 2 s, the flat stage 200.
        let t99 = p.due_at(99).unwrap();
        assert!((t99 - 2.0).abs() < 0.01, "{t99}");
        let t199 = p.due_at(199).unwrap();
        assert!((t199 - 3.0).abs() < 0.011, "{t199}");
        assert!(p.due_at(300).is_none());
        let mut last = 0.0;
        for n in 0..300 {
            let t = p.due_at(n).unwrap();
            assert!(t >= last);
            last = t;
        }
    }
}
