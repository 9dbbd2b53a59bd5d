//! The default engine: one `current_thread` tokio runtime per worker thread, with connection `i`
//! living on shard `i % threads` for its whole life.
//!
//! Why not tokio's multi-thread scheduler: against process-per-connection servers its work
//! stealing and cross-thread wakeups cost CPU per message, and its run queue is not fair under a
//! closed loop of many connections. A worker's local queue holds 256 tasks; when a driver poll
//! wakes more, the oldest half overflows into the global queue, which a busy worker only looks at
//! once every few dozen polls, while freshly woken tasks keep refilling the local queue. With 1000
//! connections on one CPU that starved some connections for seconds (an echo over 5 s, issue 10).
//! A `current_thread` runtime runs woken tasks in the order their events arrived, so every ready
//! connection is served within one pass over the ready ones.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

use crate::Error;

/// The runtimes of one run: the caller's thread runs shard 0 (and the runner itself); each other
/// shard has a thread of its own, blocked on its runtime until [`Shards::stop`].
pub(crate) struct Shards {
    main: Runtime,
    handles: Vec<Handle>,
    /// One per extra thread: dropping or sending ends that thread's `block_on`, after which the
    /// thread shuts its runtime down (aborting whatever sessions are still on it) and exits.
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts `threads` shards (at least one).
    pub fn start(threads: usize) -> Result<Shards, Error> {
        let main = runtime()?;
        let mut shards = Shards {
            handles: vec![main.handle().clone()],
            main,
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 1..threads.max(1) {
            let rt = runtime()?;
            let (stop, stopped) = oneshot::channel::<()>();
            shards.handles.push(rt.handle().clone());
            let thread = std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                    rt.shutdown_timeout(Duration::from_secs(1));
                })
                .map_err(Error::Runtime)?;
            shards.stops.push(stop);
            shards.threads.push(thread);
        }
        Ok(shards)
    }

    /// One handle per shard; shard 0 is the caller's.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Runs `future` on shard 0, on the calling thread.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.main.block_on(future)
    }

    /// Ends every shard's thread and waits for it.
    pub fn stop(self) {
        drop(self.stops);
        for t in self.threads {
            let _ = t.join();
        }
        self.main.shutdown_timeout(Duration::from_secs(1));
    }
}

fn runtime() -> Result<Runtime, Error> {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn each_shard_is_a_current_thread_runtime_on_its_own_thread() {
        let shards = Shards::start(3).unwrap();
        assert_eq!(shards.handles().len(), 3);
        let caller = std::thread::current().id();
        let seen = shards.block_on(async {
            let mut seen = Vec::new();
            for handle in shards.handles() {
                assert_eq!(handle.runtime_flavor(), RuntimeFlavor::CurrentThread);
                let on = handle.spawn(async {
                    let t = std::thread::current();
                    (t.id(), t.name().map(str::to_string))
                });
                seen.push(on.await.unwrap());
            }
            seen
        });
        assert_eq!(seen[0].0, caller, "shard 0 runs on the calling thread");
        assert_eq!(seen[1].1.as_deref(), Some("loadgen-1"));
        assert_eq!(seen[2].1.as_deref(), Some("loadgen-2"));
        assert_ne!(seen[1].0, seen[2].0);
        shards.stop();
    }

    #[test]
    fn stop_ends_shards_with_sessions_still_running() {
        let shards = Shards::start(2).unwrap();
        // A session that would outlive the run: stop must not wait for it.
        shards.handles()[1].spawn(std::future::pending::<()>());
        let started = std::time::Instant::now();
        shards.stop();
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
