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

use hdrhistogram::Histogram;

use crate::new_histogram;
use crate::report::timeline::SecondBucket;
use crate::report::{Counters, Errors, Mismatch};

/// Everything one shard has recorded.
pub(crate) struct ShardStats {
    pub connect: Histogram<u64>,
    pub first_echo: Histogram<u64>,
    pub echo: Histogram<u64>,
    pub echo_uncorrected: Histogram<u64>,
    /// Open loop: how late loadgen queued each measured message after it could have been sent.
    pub send_lag: Histogram<u64>,
    pub counters: Counters,
    pub errors: Errors,
    /// Latest first-echo completion, in microseconds since the run started.
    pub last_first_echo_us: u64,
    /// Timeline buckets not yet drained, keyed by whole seconds since the run started.
    pub timeline: BTreeMap<u64, SecondBucket>,
}

impl ShardStats {
    fn new() -> Self {
        ShardStats {
            connect: new_histogram(),
            first_echo: new_histogram(),
            echo: new_histogram(),
            echo_uncorrected: new_histogram(),
            send_lag: new_histogram(),
            counters: Counters::default(),
            errors: Errors::default(),
            last_first_echo_us: 0,
            timeline: BTreeMap::new(),
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

    fn absorb(&mut self, other: ShardStats) {
        let _ = self.connect.add(&other.connect);
        let _ = self.first_echo.add(&other.first_echo);
        let _ = self.echo.add(&other.echo);
        let _ = self.echo_uncorrected.add(&other.echo_uncorrected);
        let _ = self.send_lag.add(&other.send_lag);
        self.counters.add(&other.counters);
        self.errors.add(&other.errors);
        self.last_first_echo_us = self.last_first_echo_us.max(other.last_first_echo_us);
        add_seconds(&mut self.timeline, other.timeline);
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
    /// Connections currently established (incremented on connect, decremented on close).
    pub current_established: AtomicUsize,
    /// Highest value `current_established` reached.
    pub peak_established: AtomicUsize,
}

impl Stats {
    pub fn new(threads: usize) -> Self {
        let n = (threads * 2).max(4);
        Stats {
            shards: (0..n).map(|_| Mutex::new(ShardStats::new())).collect(),
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

    /// Takes everything recorded so far out of the shards, merged into one.
    pub fn take_merged(&self) -> ShardStats {
        let mut all = ShardStats::new();
        for shard in &self.shards {
            let taken = std::mem::replace(&mut *lock(shard), ShardStats::new());
            all.absorb(taken);
        }
        all
    }
}

/// Locks a shard, ignoring poisoning: a panicking session must not lose everyone's numbers.
fn lock(m: &Mutex<ShardStats>) -> MutexGuard<'_, ShardStats> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
