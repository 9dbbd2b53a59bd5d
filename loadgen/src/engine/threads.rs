//! The threads engine: one OS thread per connection, each running `session::blocking` on its
//! own socket. The threads get small stacks (a session keeps its buffers on the heap), record
//! into the run's shared `Stats` shards like the tokio engine's tasks, and each tells the runner
//! when it has ended over a channel, so the runner waits for them as it waits for tasks. The
//! uring engine is the same plus one `session::uring` driver thread per CPU, which runs the
//! steady plans the connection threads hand it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tokio::time::Instant;

use nix::sched::{sched_getaffinity, CpuSet};
use nix::unistd::Pid;

use crate::session::uring::{self, Drivers};
use crate::session::{blocking, RunShared, STOP_INTERRUPT};
use crate::{Engine, Error};

/// Stack of a connection's thread. A session's frames need a few KiB; only touched pages are
/// resident, so this bounds address space (128 MiB per 1000 connections), not memory.
const STACK_BYTES: usize = 128 << 10;

/// Stats shards of a threads-engine run: enough that the threads on the CPUs rarely share one,
/// few enough that their histograms (a few touched pages each) stay small.
pub(crate) const STATS_SHARDS: usize = 32;

/// The connection threads of one run.
pub(crate) struct ThreadSessions {
    threads: Vec<JoinHandle<()>>,
    /// The uring engine's drivers. Each ends by itself within a tick of the last connection
    /// thread's end (`Drivers::live`; every session's thread waits for its session), so they
    /// are joined last.
    drivers: Vec<JoinHandle<()>>,
    /// One message per thread, sent when it ends (also when it panics: [`EndReport`]).
    ended: mpsc::UnboundedReceiver<Option<Instant>>,
    /// Threads that have not reported their end yet.
    running: usize,
    /// To wake the threads blocked in `recv` when the run is stopped.
    shared: Arc<RunShared>,
}

/// Tells the runner a connection's thread ended, with its last echo's completion; sent on drop,
/// so a panicking session is not waited for forever.
struct EndReport {
    tx: mpsc::UnboundedSender<Option<Instant>>,
    last: Option<Instant>,
    /// The uring drivers' count of live connection threads (`Drivers::live`), taken when the
    /// thread was started.
    live: Option<Arc<AtomicUsize>>,
}

impl Drop for EndReport {
    fn drop(&mut self) {
        let _ = self.tx.send(self.last);
        if let Some(live) = &self.live {
            live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl ThreadSessions {
    /// Starts one thread per connection of `shared.config`. If the system refuses a thread,
    /// stops and joins those started and says which limit to raise.
    pub fn start(shared: &Arc<RunShared>) -> Result<ThreadSessions, Error> {
        let conns = shared.config.conns;
        let (drivers, steady) = match shared.config.engine() {
            Engine::Uring => start_drivers(shared).map(|(d, s)| (d, Some(s)))?,
            _ => (Vec::new(), None),
        };
        let live = steady.as_ref().map(|s| s.live.clone());
        let (tx, ended) = mpsc::unbounded_channel();
        let mut threads = Vec::with_capacity(conns);
        for conn in 0..conns {
            if let Some(live) = &live {
                live.fetch_add(1, Ordering::AcqRel);
            }
            let report = EndReport {
                tx: tx.clone(),
                last: None,
                live: live.clone(),
            };
            let shared_here = shared.clone();
            let driver = steady
                .as_ref()
                .map(|s| s.senders[conn % s.senders.len()].clone());
            let spawned = std::thread::Builder::new()
                .name("loadgen-conn".into())
                .stack_size(STACK_BYTES)
                .spawn(move || {
                    // Moved whole, so it is dropped (and sent) when this thread ends.
                    let mut report = report;
                    report.last = blocking::connection(&shared_here, conn as u64, driver.as_ref());
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.stop.store(STOP_INTERRUPT, Ordering::Release);
                    shared.open_sockets.wake_all();
                    for t in &threads {
                        t.thread().unpark();
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                    if let Some(live) = &live {
                        live.fetch_sub(1, Ordering::AcqRel);
                    }
                    for d in drivers {
                        let _ = d.join();
                    }
                    return Err(Error::Limit(format!(
                        "cannot start the thread of connection {conn} of {conns} (the threads \
                         engine runs one per connection): {e}; raise `ulimit -u` or \
                         kernel.threads-max, or use --engine tokio"
                    )));
                }
            }
        }
        // Every thread is started: the drivers may end once they all have.
        if let Some(live) = &live {
            live.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(ThreadSessions {
            running: threads.len(),
            threads,
            drivers,
            ended,
            shared: shared.clone(),
        })
    }

    /// The next connection to end: `Some(its last echo's completion)`, `None` once all have.
    pub async fn next(&mut self) -> Option<Option<Instant>> {
        if self.running == 0 {
            return None;
        }
        let last = self.ended.recv().await?;
        self.running -= 1;
        Some(last)
    }

    /// Waits for every thread to end (call after setting `RunShared::stop`: each notices it
    /// at once if blocked in `recv` or parked, else within a tick) and joins them; returns the
    /// latest completion among them.
    pub async fn stop(&mut self) -> Option<Instant> {
        self.shared.open_sockets.wake_all();
        // Threads parked in a ramp-up slot or at the barrier look at the stop flag when woken.
        for t in &self.threads {
            t.thread().unpark();
        }
        let mut latest = None;
        while let Some(last) = self.next().await {
            latest = latest.max(last);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for d in self.drivers.drain(..) {
            let _ = d.join();
        }
        latest
    }
}

/// Starts the uring engine's drivers, one per CPU this process may run on (at most one per
/// connection), each pinned there with a ring of its own; returns them and how to reach them.
/// A ring that cannot be created (io_uring disabled by `kernel.io_uring_disabled` or a seccomp
/// filter) is a setup error.
fn start_drivers(shared: &Arc<RunShared>) -> Result<(Vec<JoinHandle<()>>, Drivers), Error> {
    let conns = shared.config.conns.max(1);
    let mut cpus: Vec<Option<usize>> = match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .map(Some)
            .collect(),
        Err(_) => vec![None; std::thread::available_parallelism().map_or(1, |n| n.get())],
    };
    cpus.truncate(conns);
    let count = cpus.len().max(1);
    cpus.resize(count, None);
    let tick = blocking::tick(&shared.config);
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..count).map(|_| std::sync::mpsc::channel()).unzip();
    let peers = Drivers {
        senders,
        cpus,
        // One for the connection threads being started (`ThreadSessions::start`).
        live: Arc::new(AtomicUsize::new(1)),
    };
    let mut drivers = Vec::with_capacity(count);
    for (index, rx) in receivers.into_iter().enumerate() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared_here = shared.clone();
        let me = (index, peers.clone());
        let sessions = conns.div_ceil(count);
        let spawned = std::thread::Builder::new()
            .name("loadgen-uring".into())
            .spawn(move || uring::drive(&shared_here, me, rx, sessions, tick, ready_tx));
        let ready = match spawned {
            Ok(handle) => {
                drivers.push(handle);
                ready_rx
                    .recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("it died")))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = ready {
            peers.live.store(0, Ordering::Release);
            for d in drivers {
                let _ = d.join();
            }
            return Err(Error::Limit(format!(
                "cannot start uring driver {index} (--engine uring): {e}; io_uring may be \
                 disabled here (kernel.io_uring_disabled, a seccomp filter): use --engine threads"
            )));
        }
    }
    Ok((drivers, peers))
}
