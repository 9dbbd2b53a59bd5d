//! What the fault proxy does to which connection: toxics in the Toxiproxy sense (`slice`,
//! `latency`, `bandwidth`, `reset-after`, `stall-after`, `close-after`), each on one direction,
//! grouped into profiles that each take a fraction of the connections. Parsing of the
//! `--faults` syntax, and the seeded draws that pick a connection's profile and its jitter, so that
//! the same seed faults the same connections (by accept order) the same way.
//!
//! Syntax of one profile: `TOXIC[+TOXIC...][@FRACTION]`, a toxic being `DIR:KIND=VALUE` with DIR
//! `up` (client to server) or `down` (server to client):
//!
//! - `slice=N[:DELAY]`: forward at most N bytes per write, waiting DELAY after each write;
//! - `latency=D[:JITTER]`: deliver every chunk D (plus or minus up to JITTER, uniform) after it
//!   was read, in order;
//! - `bandwidth=BYTES`: at most BYTES per second;
//! - `reset-after=BYTES`: forward BYTES, then reset both sides (RST: SO_LINGER 0, close);
//! - `stall-after=BYTES`: forward BYTES, then forward nothing more, keeping both sockets open;
//! - `close-after=BYTES`: forward BYTES, then close both sides with FIN.
//!
//! Example: `down:reset-after=1000@0.05` resets 5% of connections after 1000 bytes of echo;
//! `up:slice=1+down:latency=50ms` slices and delays every connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which way the bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// What ends a direction's forwarding once its byte budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CutAction {
    /// RST to both peers (SO_LINGER 0, then close).
    Reset,
    /// Nothing more is forwarded in this direction; both sockets stay open.
    Stall,
    /// FIN to both peers (shutdown of both write sides, then close once both peers closed).
    Close,
}

/// One toxic, as it applies to one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Toxic {
    Slice { max_bytes: usize, delay: Duration },
    Latency { delay: Duration, jitter: Duration },
    Bandwidth { bytes_per_sec: u64 },
    Cut { action: CutAction, after_bytes: u64 },
}

/// The toxics of one direction of one connection; at most one of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DirectionToxics {
    /// Most bytes per write and the pause after each write.
    pub slice: Option<(usize, Duration)>,
    /// Delay and jitter of every chunk.
    pub latency: Option<(Duration, Duration)>,
    pub bandwidth: Option<u64>,
    /// What happens after how many bytes.
    pub cut: Option<(CutAction, u64)>,
}

impl DirectionToxics {
    pub fn is_clean(&self) -> bool {
        *self == DirectionToxics::default()
    }

    fn add(&mut self, toxic: Toxic) -> Result<(), String> {
        let taken = match toxic {
            Toxic::Slice { max_bytes, delay } => self.slice.replace((max_bytes, delay)).is_some(),
            Toxic::Latency { delay, jitter } => self.latency.replace((delay, jitter)).is_some(),
            Toxic::Bandwidth { bytes_per_sec } => self.bandwidth.replace(bytes_per_sec).is_some(),
            Toxic::Cut {
                action,
                after_bytes,
            } => self.cut.replace((action, after_bytes)).is_some(),
        };
        if taken {
            return Err(
                "two toxics of the same kind (or two of reset/stall/close-after) on one direction"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A set of toxics given to a fraction of the connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The `--faults` text it was parsed from.
    pub spec: String,
    /// Share of connections in [0, 1].
    pub fraction: f64,
    pub up: DirectionToxics,
    pub down: DirectionToxics,
}

/// Every profile and the seed; profiles take disjoint shares of the connections, in order. In JSON
/// it is the seed and the `--faults` texts, parsed again when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PlanText", into = "PlanText")]
pub struct FaultPlan {
    pub seed: u64,
    pub profiles: Vec<Profile>,
}

/// [`FaultPlan`] as JSON.
#[derive(Serialize, Deserialize)]
struct PlanText {
    seed: u64,
    faults: Vec<String>,
}

impl From<FaultPlan> for PlanText {
    fn from(plan: FaultPlan) -> PlanText {
        PlanText {
            seed: plan.seed,
            faults: plan.profiles.into_iter().map(|p| p.spec).collect(),
        }
    }
}

impl TryFrom<PlanText> for FaultPlan {
    type Error = String;

    fn try_from(text: PlanText) -> Result<FaultPlan, String> {
        FaultPlan::parse(&text.faults, text.seed)
    }
}

impl FaultPlan {
    /// A plan from `--faults` texts; the fractions may add up to at most 1.
    pub fn parse(specs: &[String], seed: u64) -> Result<FaultPlan, String> {
        let profiles = specs
            .iter()
            .map(|s| Profile::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let total: f64 = profiles.iter().map(|p| p.fraction).sum();
        if total > 1.0 + 1e-9 {
            return Err(format!(
                "the fractions of the fault profiles add up to {total}, more than 1"
            ));
        }
        Ok(FaultPlan { seed, profiles })
    }

    /// A plan that forwards every connection untouched.
    pub fn clean() -> FaultPlan {
        FaultPlan {
            seed: 0,
            profiles: Vec::new(),
        }
    }

    /// The profile of the `index`-th accepted connection (from 0), if any: a seeded draw in [0, 1)
    /// against the profiles' fractions laid end to end.
    pub fn profile_of(&self, index: u64) -> Option<usize> {
        let u = Draws::new(self.seed, DRAW_PROFILE).unit_at(index);
        let mut start = 0.0;
        for (i, p) in self.profiles.iter().enumerate() {
            if u < start + p.fraction {
                return Some(i);
            }
            start += p.fraction;
        }
        None
    }
}

impl Profile {
    pub fn parse(spec: &str) -> Result<Profile, String> {
        let bad = |why: String| format!("--faults {spec:?}: {why}");
        let (toxics, fraction) = match spec.rsplit_once('@') {
            Some((t, f)) => (t, parse_fraction(f).map_err(bad)?),
            None => (spec, 1.0),
        };
        let mut profile = Profile {
            spec: spec.to_string(),
            fraction,
            up: DirectionToxics::default(),
            down: DirectionToxics::default(),
        };
        for part in toxics.split('+').map(str::trim) {
            let (direction, toxic) = parse_toxic(part).map_err(bad)?;
            match direction {
                Direction::Up => profile.up.add(toxic),
                Direction::Down => profile.down.add(toxic),
            }
            .map_err(bad)?;
        }
        Ok(profile)
    }

    pub fn toxics(&self, direction: Direction) -> &DirectionToxics {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let fraction = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?} is not a fraction (0.05 or 5%)"))?
        / scale;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!("fraction {text} is not between 0 and 1"));
    }
    Ok(fraction)
}

/// `DIR:KIND=VALUE`.
fn parse_toxic(text: &str) -> Result<(Direction, Toxic), String> {
    let (direction, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not DIR:KIND=VALUE (DIR is up or down)"))?;
    let direction = match direction {
        "up" => Direction::Up,
        "down" => Direction::Down,
        other => return Err(format!("direction {other:?} is neither up nor down")),
    };
    let (kind, value) = rest
        .split_once('=')
        .ok_or_else(|| format!("{text:?} has no =VALUE"))?;
    let (first, second) = match value.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (value, None),
    };
    let no_second = |kind: &str| match second {
        Some(_) => Err(format!("{kind} takes one value, got {value:?}")),
        None => Ok(()),
    };
    let toxic = match kind {
        "slice" => Toxic::Slice {
            max_bytes: match parse_bytes(first)? {
                0 => return Err("slice=0 would forward nothing".into()),
                n => usize::try_from(n).map_err(|_| format!("slice={first} is too large"))?,
            },
            delay: second.map(parse_duration).transpose()?.unwrap_or_default(),
        },
        "latency" => Toxic::Latency {
            delay: parse_duration(first)?,
            jitter: second.map(parse_duration).transpose()?.unwrap_or_default(),
        },
        "bandwidth" => {
            no_second(kind)?;
            match parse_bytes(first.trim_end_matches("/s"))? {
                0 => return Err("bandwidth=0 would forward nothing; use stall-after=0".into()),
                n => Toxic::Bandwidth { bytes_per_sec: n },
            }
        }
        "reset-after" | "stall-after" | "close-after" => {
            no_second(kind)?;
            let action = match kind {
                "reset-after" => CutAction::Reset,
                "stall-after" => CutAction::Stall,
                _ => CutAction::Close,
            };
            Toxic::Cut {
                action,
                after_bytes: parse_bytes(first)?,
            }
        }
        other => {
            return Err(format!(
                "unknown toxic {other:?} (slice, latency, bandwidth, reset-after, stall-after, close-after)"
            ))
        }
    };
    Ok((direction, toxic))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// A byte count: a plain number, or with a KiB/MiB suffix.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, scale) = [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("B", 1)]
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1));
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a byte count (e.g. 1000, 64KiB)"))
}

/// The stream of draws that picks profiles; others are keyed per connection and direction.
const DRAW_PROFILE: u64 = 0x7072_6f66;

/// Seeded uniform draws in [0, 1): draw `i` of stream `key` is a pure function of (seed, key, i),
/// made from loadgen's payload generator (SplitMix64), so no second generator is kept here.
#[derive(Debug, Clone)]
pub struct Draws {
    key: u64,
    next: u64,
}

impl Draws {
    pub fn new(seed: u64, stream: u64) -> Draws {
        Draws {
            key: seed.rotate_left(17) ^ stream,
            next: 0,
        }
    }

    /// The stream of connection `index`'s `direction` (its jitter).
    pub fn for_connection(seed: u64, index: u64, direction: Direction) -> Draws {
        let tag = match direction {
            Direction::Up => 0x7570,
            Direction::Down => 0x646f_776e,
        };
        Draws::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15), tag)
    }

    pub fn unit_at(&self, index: u64) -> f64 {
        let mut bytes = [0u8; 8];
        loadgen::payload::fill(self.key, index, &mut bytes);
        // The top 53 bits: every value is exact in an f64 and below 1.
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn next_unit(&mut self) -> f64 {
        let u = self.unit_at(self.next);
        self.next += 1;
        u
    }

    /// `delay` plus a uniform draw in [-jitter, +jitter], never below zero.
    pub fn jittered(&mut self, delay: Duration, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return delay;
        }
        let offset = (self.next_unit() * 2.0 - 1.0) * jitter.as_secs_f64();
        Duration::from_secs_f64((delay.as_secs_f64() + offset).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_every_toxic_and_fraction() {
        let plan = FaultPlan::parse(
            &[
                "up:slice=1:1ms+down:latency=50ms:5ms@0.25".into(),
                "down:bandwidth=64KiB/s+up:reset-after=1000@5%".into(),
                "up:stall-after=10+down:close-after=2KiB@0.1".into(),
            ],
            7,
        )
        .expect("parse");
        let [a, b, c] = &plan.profiles[..] else {
            panic!("three profiles")
        };
        assert_eq!(a.fraction, 0.25);
        assert_eq!(a.up.slice, Some((1, Duration::from_millis(1))));
        assert_eq!(
            a.down.latency,
            Some((Duration::from_millis(50), Duration::from_millis(5)))
        );
        assert!((b.fraction - 0.05).abs() < 1e-12);
        assert_eq!(b.down.bandwidth, Some(65536));
        assert_eq!(b.up.cut, Some((CutAction::Reset, 1000)));
        assert_eq!(c.up.cut, Some((CutAction::Stall, 10)));
        assert_eq!(c.down.cut, Some((CutAction::Close, 2048)));
        assert!(c.up.slice.is_none() && FaultPlan::clean().profiles.is_empty());
        let json = serde_json::to_string(&plan).expect("json");
        assert_eq!(
            serde_json::from_str::<FaultPlan>(&json).expect("read back"),
            plan
        );
        // No fraction: every connection.
        assert_eq!(Profile::parse("up:slice=3").expect("parse").fraction, 1.0);
    }

    #[test]
    fn bad_profiles_name_what_is_wrong() {
        for (spec, want) in [
            ("sideways:slice=1", "neither up nor down"),
            ("up:slice", "no =VALUE"),
            ("up:slice=0", "forward nothing"),
            ("up:warp=9", "unknown toxic"),
            ("up:latency=soon", "not a duration"),
            ("up:reset-after=1:2", "takes one value"),
            ("up:slice=1@1.5", "not between 0 and 1"),
            ("up:reset-after=1+up:stall-after=2", "same kind"),
            ("down:bandwidth=fast", "not a byte count"),
        ] {
            let err = Profile::parse(spec).expect_err(spec);
            assert!(err.contains(want) && err.contains(spec), "{spec}: {err}");
        }
        let err = FaultPlan::parse(&["up:slice=1@0.6".into(), "up:slice=2@0.6".into()], 1)
            .expect_err("over 1");
        assert!(err.contains("more than 1"), "{err}");
    }

    #[test]
    fn the_seed_decides_which_connections_are_faulted_and_the_fractions_hold() {
        let plan = FaultPlan::parse(
            &["up:reset-after=1@0.1".into(), "up:stall-after=1@0.1".into()],
            42,
        )
        .expect("parse");
        let picks: Vec<Option<usize>> = (0..10_000).map(|i| plan.profile_of(i)).collect();
        let again: Vec<Option<usize>> = (0..10_000).map(|i| plan.profile_of(i)).collect();
        assert_eq!(picks, again);
        for profile in [0, 1] {
            let n = picks.iter().filter(|p| **p == Some(profile)).count();
            // 1000 expected; a binomial spread of sd 30.
            assert!((850..1150).contains(&n), "profile {profile}: {n}");
        }
        let other_seed = FaultPlan { seed: 43, ..plan };
        let differs = (0..100).any(|i| other_seed.profile_of(i) != picks[i as usize]);
        assert!(differs, "another seed picks other connections");
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_is_seeded() {
        let (delay, jitter) = (Duration::from_millis(50), Duration::from_millis(10));
        let mut a = Draws::for_connection(1, 3, Direction::Down);
        let mut b = Draws::for_connection(1, 3, Direction::Down);
        let drawn: Vec<Duration> = (0..1000).map(|_| a.jittered(delay, jitter)).collect();
        assert!(drawn
            .iter()
            .all(|d| *d >= delay - jitter && *d <= delay + jitter));
        assert!(drawn.iter().any(|d| *d < Duration::from_millis(45)));
        assert!(drawn.iter().any(|d| *d > Duration::from_millis(55)));
        assert_eq!(drawn[0], b.jittered(delay, jitter));
        let mut up = Draws::for_connection(1, 3, Direction::Up);
        assert_ne!(up.jittered(delay, jitter), drawn[0]);
    }
}
