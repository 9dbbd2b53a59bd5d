//! The report's record of a `--stages` plan (`parameters.stages`); the plan's arithmetic is
//! `engine::stages`. Here so the format stays a leaf that depends on nothing of the engine.

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
