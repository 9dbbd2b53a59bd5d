//! The proxy's own account of what it did: connections, which were faulted, and every action a
//! toxic took (resets, FINs, stalls, slices, delayed chunks). Counted with atomics as the actions
//! happen, read as a plain serde snapshot ([`ProxyCounts`]) that tests hold against what the
//! client (loadgen) and the server saw.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::plan::{CutAction, Direction};

/// What the proxy did, as counted when it did it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    /// Client connections accepted.
    pub connections: u64,
    /// Connections still open (client side not yet closed by the proxy).
    pub open: u64,
    /// Connections given to each profile, in the plan's order.
    pub per_profile: Vec<u64>,
    /// Accepted connections whose connect to the server failed (the client is closed at once).
    pub upstream_connect_failed: u64,
    /// Connections reset by a `reset-after` toxic (RST to both peers).
    pub resets: u64,
    /// Connections closed by a `close-after` toxic (FIN to both peers).
    pub closes: u64,
    /// Directions stalled by a `stall-after` toxic.
    pub stalls: u64,
    /// Writes made by `slice` toxics.
    pub slices: u64,
    /// Chunks held back by `latency` toxics.
    pub delayed_chunks: u64,
    /// Bytes forwarded client to server.
    pub bytes_up: u64,
    /// Bytes forwarded server to client.
    pub bytes_down: u64,
    /// Connections that ended with an I/O error from a peer (not one the proxy injected).
    pub peer_errors: u64,
}

impl ProxyCounts {
    /// Connections given to any profile.
    pub fn faulted(&self) -> u64 {
        self.per_profile.iter().sum()
    }
}

/// The live counters behind [`ProxyCounts`].
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    closed: AtomicU64,
    per_profile: Vec<AtomicU64>,
    upstream_connect_failed: AtomicU64,
    resets: AtomicU64,
    closes: AtomicU64,
    stalls: AtomicU64,
    slices: AtomicU64,
    delayed_chunks: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    peer_errors: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn new(profiles: usize) -> Counters {
        Counters {
            per_profile: (0..profiles).map(|_| AtomicU64::new(0)).collect(),
            ..Counters::default()
        }
    }

    pub fn accepted(&self, profile: Option<usize>) {
        add(&self.connections, 1);
        if let Some(counter) = profile.and_then(|p| self.per_profile.get(p)) {
            add(counter, 1);
        }
    }

    pub fn connection_closed(&self) {
        add(&self.closed, 1);
    }

    pub fn upstream_connect_failed(&self) {
        add(&self.upstream_connect_failed, 1);
    }

    pub fn cut(&self, action: CutAction) {
        add(
            match action {
                CutAction::Reset => &self.resets,
                CutAction::Stall => &self.stalls,
                CutAction::Close => &self.closes,
            },
            1,
        );
    }

    pub fn slice_written(&self) {
        add(&self.slices, 1);
    }

    pub fn chunk_delayed(&self) {
        add(&self.delayed_chunks, 1);
    }

    pub fn forwarded(&self, direction: Direction, bytes: usize) {
        let counter = match direction {
            Direction::Up => &self.bytes_up,
            Direction::Down => &self.bytes_down,
        };
        add(counter, bytes as u64);
    }

    pub fn peer_error(&self) {
        add(&self.peer_errors, 1);
    }

    pub fn snapshot(&self) -> ProxyCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let connections = get(&self.connections);
        ProxyCounts {
            connections,
            open: connections.saturating_sub(get(&self.closed)),
            per_profile: self.per_profile.iter().map(get).collect(),
            upstream_connect_failed: get(&self.upstream_connect_failed),
            resets: get(&self.resets),
            closes: get(&self.closes),
            stalls: get(&self.stalls),
            slices: get(&self.slices),
            delayed_chunks: get(&self.delayed_chunks),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
            peer_errors: get(&self.peer_errors),
        }
    }
}
