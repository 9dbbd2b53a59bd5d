//! Where sessions record what they measure while a run is going on.
//!
//! Recording is sharded by worker thread: each thread records into its own shard, so a shard's
//! mutex is in practice uncontended (about the cost of an atomic increment; only the once-a-second
//! timeline drain and the progress bar take it from outside). Sessions keep their own per-session
//! counters locally and add them once at the end. After the run the shards are merged.

use std::cell::Cell;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::hlog::{IntervalLog, Metric};
use crate::report::timeline::SecondBucket;
use crate::report::{Counters, Errors, Mismatch};
use crate::{new_histogram, Error};

/// `--hlog`: a shard's histograms per interval not yet drained, keyed by interval index (time
/// since the run started divided by the interval). Recorded exactly where the end-of-run
/// histograms are, so the intervals of a log add up to them.
struct IntervalRecorder {
    interval_us: u64,
    open: BTreeMap<u64, [Histogram<u64>; 3]>,
}

impl IntervalRecorder {
    fn new(interval_us: u64) -> Self {
        IntervalRecorder {
            interval_us: interval_us.max(1),
            open: BTreeMap::new(),
        }
    }

    fn record(&mut self, metric: Metric, at_us: u64, value_us: u64) {
        let index = at_us / self.interval_us;
        self.open
            .entry(index)
            .or_insert_with(|| [new_histogram(), new_histogram(), new_histogram()])
            [metric as usize]
            .saturating_record(value_us);
    }

    /// Takes the intervals before `before` out.
    fn take_before(&mut self, before: u64) -> BTreeMap<u64, [Histogram<u64>; 3]> {
        let keep = self.open.split_off(&before);
        std::mem::replace(&mut self.open, keep)
    }
}

/// Adds drained intervals into `log` (compressing them).
fn add_intervals(
    intervals: BTreeMap<u64, [Histogram<u64>; 3]>,
    log: &mut IntervalLog,
) -> Result<(), Error> {
    for (index, hists) in intervals {
        for metric in Metric::ALL {
            log.add(index, metric, &hists[metric as usize])?;
        }
    }
    Ok(())
}

/// Everything one shard has recorded.
pub(crate) struct ShardStats {
    pub connect: Histogram<u64>,
    pub first_echo: Histogram<u64>,
    pub echo: Histogram<u64>,
    pub echo_uncorrected: Histogram<u64>,
    /// Open loop: how late loadgen queued each measured message after it could have been sent.
    pub send_lag: Histogram<u64>,
    /// How long each measured echo waited in the socket, fully received, before loadgen read it.
    pub read_delay: Histogram<u64>,
    pub counters: Counters,
    pub errors: Errors,
    /// Latest first-echo completion, in microseconds since the run started.
    pub last_first_echo_us: u64,
    /// Timeline buckets not yet drained, keyed by whole seconds since the run started.
    pub timeline: BTreeMap<u64, SecondBucket>,
    /// `--hlog` only.
    intervals: Option<IntervalRecorder>,
}

impl ShardStats {
    fn new(hlog_interval_us: Option<u64>) -> Self {
        ShardStats {
            connect: new_histogram(),
            first_echo: new_histogram(),
            echo: new_histogram(),
            echo_uncorrected: new_histogram(),
            send_lag: new_histogram(),
            read_delay: new_histogram(),
            counters: Counters::default(),
            errors: Errors::default(),
            last_first_echo_us: 0,
            timeline: BTreeMap::new(),
            intervals: hlog_interval_us.map(IntervalRecorder::new),
        }
    }

    /// Records a connect time; `at_us` is when it completed, since the run started. The engines
    /// record through these three, so the end-of-run histograms and the hlog's intervals agree.
    pub fn record_connect(&mut self, at_us: u64, us: u64) {
        self.connect.saturating_record(us);
        if let Some(i) = &mut self.intervals {
            i.record(Metric::Connect, at_us, us);
        }
    }

    /// Records a first-echo time (connect start to first echo).
    pub fn record_first_echo(&mut self, at_us: u64, us: u64) {
        self.first_echo.saturating_record(us);
        if let Some(i) = &mut self.intervals {
            i.record(Metric::FirstEcho, at_us, us);
        }
    }

    /// Records a measured (not warmup) echo round trip.
    pub fn record_echo(&mut self, at_us: u64, us: u64) {
        self.echo.saturating_record(us);
        if let Some(i) = &mut self.intervals {
            i.record(Metric::Echo, at_us, us);
        }
    }

    /// The timeline bucket for `second` (since run start).
    pub fn second(&mut self, second: u64) -> &mut SecondBucket {
        self.timeline
            .entry(second)
            .or_insert_with(SecondBucket::new)
    }

    /// Keeps the first mismatch seen (by this shard); later ones are only counted.
    pub fn note_mismatch(&mut self, m: Mismatch) {
        if self.errors.first_mismatch.is_none() {
            self.errors.first_mismatch = Some(m);
        }
    }

    fn absorb(
        &mut self,
        mut other: ShardStats,
        log: Option<&mut IntervalLog>,
    ) -> Result<(), Error> {
        if let (Some(i), Some(log)) = (&mut other.intervals, log) {
            add_intervals(i.take_before(u64::MAX), log)?;
        }
        let _ = self.connect.add(&other.connect);
        let _ = self.first_echo.add(&other.first_echo);
        let _ = self.echo.add(&other.echo);
        let _ = self.echo_uncorrected.add(&other.echo_uncorrected);
        let _ = self.send_lag.add(&other.send_lag);
        let _ = self.read_delay.add(&other.read_delay);
        self.counters.add(&other.counters);
        self.errors.add(&other.errors);
        self.last_first_echo_us = self.last_first_echo_us.max(other.last_first_echo_us);
        add_seconds(&mut self.timeline, other.timeline);
        Ok(())
    }
}

/// Adds the buckets of `from` into `into`, second by second.
fn add_seconds(into: &mut BTreeMap<u64, SecondBucket>, from: BTreeMap<u64, SecondBucket>) {
    for (second, bucket) in from {
        match into.entry(second) {
            Entry::Occupied(mut mine) => mine.get_mut().absorb(bucket),
            Entry::Vacant(slot) => {
                slot.insert(bucket);
            }
        }
    }
}

static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard slot, assigned round-robin on first use.
    static THREAD_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| match slot.get() {
        Some(s) => s,
        None => {
            let s = NEXT_THREAD_SLOT.fetch_add(1, Ordering::Relaxed);
            slot.set(Some(s));
            s
        }
    })
}

/// The shards of one run, plus the concurrency gauges that must be global.
pub(crate) struct Stats {
    shards: Vec<Mutex<ShardStats>>,
    hlog_interval_us: Option<u64>,
    /// Connections currently established (incremented on connect, decremented on close).
    pub current_established: AtomicUsize,
    /// Highest value `current_established` reached.
    pub peak_established: AtomicUsize,
}

impl Stats {
    /// `hlog_interval`: record `--hlog` intervals of this length too.
    pub fn new(threads: usize, hlog_interval: Option<Duration>) -> Self {
        let n = (threads * 2).max(4);
        let hlog_interval_us = hlog_interval.map(|d| d.as_micros().min(u64::MAX as u128) as u64);
        Stats {
            shards: (0..n)
                .map(|_| Mutex::new(ShardStats::new(hlog_interval_us)))
                .collect(),
            hlog_interval_us,
            current_established: AtomicUsize::new(0),
            peak_established: AtomicUsize::new(0),
        }
    }

    /// The calling thread's shard.
    pub fn local(&self) -> MutexGuard<'_, ShardStats> {
        let i = thread_slot() % self.shards.len();
        lock(&self.shards[i])
    }

    pub fn connection_opened(&self) {
        let now = self.current_established.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_established.fetch_max(now, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.current_established.fetch_sub(1, Ordering::Relaxed);
    }

    /// Removes and returns the timeline buckets of seconds before `before`, merged over shards.
    pub fn drain_timeline(&self, before: u64) -> BTreeMap<u64, SecondBucket> {
        let mut out: BTreeMap<u64, SecondBucket> = BTreeMap::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let keep = shard.timeline.split_off(&before);
            let done = std::mem::replace(&mut shard.timeline, keep);
            drop(shard);
            add_seconds(&mut out, done);
        }
        out
    }

    /// `--hlog`: moves the intervals that ended before `elapsed` (since the run started) from
    /// every shard into `log`, compressed. Late recordings into a drained interval are added to
    /// it at the next drain, so nothing is lost.
    pub fn drain_intervals(&self, elapsed: Duration, log: &mut IntervalLog) -> Result<(), Error> {
        let Some(interval_us) = self.hlog_interval_us else {
            return Ok(());
        };
        let before = (elapsed.as_micros().min(u64::MAX as u128) as u64) / interval_us;
        for shard in &self.shards {
            let done = lock(shard)
                .intervals
                .as_mut()
                .map(|i| i.take_before(before));
            // Compressing happens outside the lock, so sessions do not wait for it.
            add_intervals(done.unwrap_or_default(), log)?;
        }
        Ok(())
    }

    /// Messages verified and errors so far, for the progress bar.
    pub fn progress_counts(&self) -> (u64, u64) {
        let mut verified = 0;
        let mut errors = 0;
        for shard in &self.shards {
            let s = lock(shard);
            verified += s.counters.messages_verified + s.counters.warmup_messages;
            errors += s.errors.total();
        }
        (verified, errors)
    }

    /// Takes everything recorded so far out of the shards, merged into one; intervals not yet
    /// drained go into `log`.
    pub fn take_merged(&self, mut log: Option<&mut IntervalLog>) -> Result<ShardStats, Error> {
        let mut all = ShardStats::new(None);
        for shard in &self.shards {
            let fresh = ShardStats::new(self.hlog_interval_us);
            let taken = std::mem::replace(&mut *lock(shard), fresh);
            all.absorb(taken, log.as_deref_mut())?;
        }
        Ok(all)
    }
}

/// Locks a shard, ignoring poisoning: a panicking session must not lose everyone's numbers.
fn lock(m: &Mutex<ShardStats>) -> MutexGuard<'_, ShardStats> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
