//! The per-second buckets a run's timeline is recorded in (by `session::stats`'s shards, and by
//! `merge` when it folds several reports' timelines together), and their conversion into the
//! report's [`TimelinePoint`]s. Here, in the format, so that both the recorder and the merge use it
//! without the format importing the recorder.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::report::TimelinePoint;
use crate::{new_histogram, Error};

/// One second of the run's timeline, before it is turned into a [`TimelinePoint`].
pub(crate) struct SecondBucket {
    pub messages: u64,
    pub errors: u64,
    pub established: u64,
    pub closed: u64,
    /// Only in merged timelines: the stage the reports gave this second.
    pub stage: Option<u32>,
    pub echo: Histogram<u64>,
}

impl SecondBucket {
    pub fn new() -> Self {
        SecondBucket {
            messages: 0,
            errors: 0,
            established: 0,
            closed: 0,
            stage: None,
            echo: new_histogram(),
        }
    }

    pub fn absorb(&mut self, other: SecondBucket) {
        self.messages += other.messages;
        self.errors += other.errors;
        self.established += other.established;
        self.closed += other.closed;
        self.stage = self.stage.or(other.stage);
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.echo.add(&other.echo);
    }
}

/// Turns buckets into timeline points (percentiles and the encoded histogram), in second order.
pub(crate) fn seconds_to_points(
    seconds: BTreeMap<u64, SecondBucket>,
) -> Result<Vec<TimelinePoint>, Error> {
    seconds
        .into_iter()
        .map(|(s, b)| {
            let mut p =
                TimelinePoint::new(s, b.messages, b.errors, b.established, b.closed, &b.echo)?;
            p.stage = b.stage;
            Ok(p)
        })
        .collect()
}
