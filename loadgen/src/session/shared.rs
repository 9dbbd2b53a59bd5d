//! The state every session of one run shares with the others and with the runner: the measured
//! phase's timing ([`Steady`]), the run's counters and barrier ([`RunShared`]) and why the runner
//! is stopping sessions. Apart from the sessions that use it, so the session's helpers
//! (`connect`, `plan`) reach it without importing the session itself.

use std::net::Shutdown;
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socket2::Socket;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::session::pacer::Pacer;
use crate::session::stats::Stats;
use crate::Config;

/// The measured phase's timing, decided once at the barrier and shared by every session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steady {
    /// When the measured phase's sending starts: the barrier (every connection had connected and
    /// echoed once, or failed) plus, in open loop, [`Config::schedule_lead`].
    pub schedule_start: Instant,
    /// `schedule_start + warmup`: messages intended before this are warmup.
    pub measure_start: Instant,
    /// Duration mode: no message is intended at or after this.
    pub send_until: Option<Instant>,
    /// Hard deadline: whatever is outstanding then is counted as cut off.
    pub deadline: Instant,
}

/// State shared by all sessions of one run.
pub(crate) struct RunShared {
    pub config: Config,
    pub stats: Stats,
    /// Start of the connect phase; timeline seconds count from here.
    pub t0: Instant,
    /// Deadline of the connect phase (first echo included).
    pub connect_deadline: Instant,
    /// Sessions still connecting or waiting for their first echo. Each session decrements it
    /// exactly once (through `PhaseGuard`, so also when aborted); whoever takes it to zero
    /// notifies `connect_phase_done`, which opens the barrier.
    pub connecting: AtomicUsize,
    pub connect_phase_done: Notify,
    /// `None` until the barrier opens; then the measured phase's timing.
    pub steady: watch::Receiver<Option<Steady>>,
    /// Open loop: the run's microsecond send timer (closed loop: `None`).
    pub pacer: Option<Pacer>,
    /// Why the runner is aborting the sessions still going ([`STOP_DEADLINE`] or
    /// [`STOP_INTERRUPT`]); set before `abort_all`, so each aborted session's drop guard
    /// (`session::Ending`) counts it under the right cause. 0 while nobody is stopping them.
    pub stop: AtomicU8,
    /// The threads engine's sockets, so that stopping the run wakes the threads blocked in
    /// `recv` at once (after `stop` is set) instead of at their read timeout.
    pub open_sockets: OpenSockets,
}

/// Sockets a stop must wake: shutting a socket's read side down ends a `recv` blocked on it
/// with 0 bytes, which its session reads as "stopped" because `RunShared::stop` is set first.
/// Held weakly: a session that ended has closed its socket, and a closed socket is never
/// touched (no descriptor number is reused under a stop).
#[derive(Default)]
pub(crate) struct OpenSockets(Mutex<Vec<Weak<Socket>>>);

impl OpenSockets {
    pub fn register(&self, socket: &Arc<Socket>) {
        self.lock().push(Arc::downgrade(socket));
    }

    /// Shuts down the read side of every socket still open. Call after setting `stop`.
    pub fn wake_all(&self) {
        let sockets = std::mem::take(&mut *self.lock());
        for socket in sockets.iter().filter_map(Weak::upgrade) {
            let _ = socket.shutdown(Shutdown::Read);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Socket>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `RunShared::stop`: the hard run deadline passed.
pub(crate) const STOP_DEADLINE: u8 = 1;
/// `RunShared::stop`: Ctrl-C.
pub(crate) const STOP_INTERRUPT: u8 = 2;

/// `d` in whole microseconds, the unit of every histogram (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Instant;

    /// A thread blocked in `recv` without a timeout returns 0 bytes once `wake_all` runs: the
    /// stop no longer waits for the threads engine's read timeout.
    #[test]
    fn wake_all_ends_a_blocked_recv() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let socket = Arc::new(Socket::from(client));
        let open = OpenSockets::default();
        open.register(&socket);
        let reader = socket.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let blocked = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let _ = tx.send(());
            let n = (&*reader).read(&mut buf);
            n.map_err(|e| e.kind())
        });
        rx.recv().unwrap();
        // Before or after the thread reaches `recv`: the shut-down read side stays shut.
        open.wake_all();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !blocked.is_finished() {
            assert!(Instant::now() < deadline, "recv was never woken");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(blocked.join().unwrap(), Ok(0));
    }
}
