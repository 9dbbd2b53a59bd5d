//! A run's sessions, whichever engine drives them (tokio tasks on the shards, or one OS thread
//! per connection): the runner starts them, waits for each to end and stops the rest the same
//! way for both.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::engine::threads::ThreadSessions;
use crate::session::{self, RunShared};
use crate::Error;

pub(crate) enum Sessions {
    Tasks(JoinSet<Option<Instant>>),
    Threads(ThreadSessions),
}

impl Sessions {
    /// Starts every connection of `shared.config` on its engine: tasks on `shards` (connection
    /// `i` on `shards[i % len]`, the current runtime when empty), or threads.
    pub fn start(shared: &Arc<RunShared>, shards: &[Handle]) -> Result<Sessions, Error> {
        if shared.config.engine().thread_per_connection() {
            return ThreadSessions::start(shared).map(Sessions::Threads);
        }
        let mut tasks = JoinSet::new();
        for conn in 0..shared.config.conns {
            let session = session::connection_of(shared, conn as u64);
            match shards.get(conn % shards.len().max(1)) {
                Some(shard) => tasks.spawn_on(session, shard),
                None => tasks.spawn(session),
            };
        }
        Ok(Sessions::Tasks(tasks))
    }

    /// The next session to end: `Some(its last echo's completion)`, `None` once all have.
    pub async fn next(&mut self) -> Option<Option<Instant>> {
        match self {
            // A task that panicked was counted by its drop guard; it has no completion time.
            Sessions::Tasks(tasks) => tasks.join_next().await.map(|r| r.ok().flatten()),
            Sessions::Threads(threads) => threads.next().await,
        }
    }

    /// Ends the sessions still going, once `RunShared::stop` says why (each counts itself by
    /// that cause); returns the latest completion among them.
    pub async fn stop(&mut self) -> Option<Instant> {
        match self {
            Sessions::Tasks(tasks) => {
                tasks.abort_all();
                let mut latest = None;
                while let Some(joined) = tasks.join_next().await {
                    latest = latest.max(joined.ok().flatten());
                }
                latest
            }
            Sessions::Threads(threads) => threads.stop().await,
        }
    }
}
