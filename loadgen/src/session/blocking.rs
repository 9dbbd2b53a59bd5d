//! The threads engine's connection: the same [`Session`] as the tokio engine (plans, payloads,
//! verification, counting, the exactly-once [`Ending`]), driven by an OS thread of its own on a
//! blocking socket. Closed loop with one message in flight, an echo costs one `send` and one
//! `recv`, and the thread sleeps in `recv` until its echo is there: the kernel wakes exactly the
//! thread whose echo arrived, which is what lets it keep up with a fork-per-connection server
//! (loadgen/BENCH.md). Output is sent with `MSG_DONTWAIT`; while some of it is left, the thread
//! polls for room and echoes together, so pipelined bytes beyond the socket buffers cannot
//! deadlock. Ctrl-C and the run deadline (`RunShared::stop`) end a blocked `recv` at once (the
//! runner shuts the read side of every open socket down, `OpenSockets`); connects and sends
//! block at most one tick, so they notice a stop within it.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Sender};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::Socket;
use tokio::time::Instant;

use crate::session::connect::{connect_blocking, count_connect};
use crate::session::echo::{
    Ending, EstablishedGuard, Next, PhaseGuard, Session, Stage, BARRIER_GRACE,
};
use crate::session::failure::{Failure, Halt};
use crate::session::plan::{first_plan, ramp_slot, source_of, steady_plan, Plan};
use crate::session::read_delay;
use crate::session::shared::{RunShared, Steady};
use crate::session::uring::{Handoff, Returned};
use crate::Config;

/// The longest a connect or a send of the threads engine blocks before it looks at
/// `RunShared::stop` and its deadlines again: short against `--io-timeout`, long enough to cost
/// nothing while idle.
pub(crate) fn tick(config: &Config) -> Duration {
    (config.io_timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(50))
}

/// The longest a `recv` blocks before its session looks at its deadlines again (an echo timeout
/// is then noticed at most a quarter of `--io-timeout` late). Not the tick: a stop wakes a
/// blocked `recv` itself (`OpenSockets::wake_all`), and with a 50 ms timeout every echo slower
/// than that woke its thread once more for nothing, 0.05 context switches per message at 1000
/// connections (loadgen/BENCH.md, "The read timeout's wake-ups").
pub(crate) fn read_timeout(config: &Config) -> Duration {
    (config.io_timeout / 4).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

fn stopped(shared: &RunShared) -> bool {
    shared.stop.load(Ordering::Acquire) != 0
}

/// Sleeps until `at`; false if the run was stopped meanwhile (the runner unparks every thread
/// when it stops them).
fn sleep_until(shared: &RunShared, at: Instant) -> bool {
    loop {
        if stopped(shared) {
            return false;
        }
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::park_timeout(left);
    }
}

/// Wakes a thread parked in [`wait_for_barrier`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits for the barrier to open (parked, woken by the runner's `watch` send, or by the runner
/// unparking it to stop); `None` if it did not by `until` or the run was stopped.
fn wait_for_barrier(shared: &RunShared, until: Instant) -> Option<Steady> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut rx = shared.steady.clone();
    let mut opened = pin!(rx.wait_for(|s| s.is_some()));
    loop {
        match opened.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(steady)) => return *steady,
            Poll::Ready(Err(_)) => return None,
            Poll::Pending => {}
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stopped(shared) {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// `socket`, shared with the run's `OpenSockets` before its first `recv`: a stop set after that
/// is either woken by `wake_all`, or (registered after `wake_all` ran) seen by
/// `drive_blocking`'s first look at `RunShared::stop`.
fn registered(shared: &RunShared, socket: Socket) -> Arc<Socket> {
    let socket = Arc::new(socket);
    shared.open_sockets.register(&socket);
    socket
}

/// Runs connection number `conn` from ramp-up to close on the calling thread; with `driver`
/// (the uring engine), its steady plan runs on that driver while the thread waits. Returns when
/// its last echo completed.
pub(crate) fn connection(
    shared: &RunShared,
    conn: u64,
    driver: Option<&Sender<Handoff>>,
) -> Option<Instant> {
    let config = &shared.config;
    let tick = tick(config);
    let mut phase = PhaseGuard(Some(shared));
    let mut ending = Ending::<Arc<Socket>> {
        shared,
        stage: Stage::Waiting,
    };
    if let Some(slot) = ramp_slot(shared, conn) {
        if !sleep_until(shared, slot) {
            return None;
        }
    }
    ending.stage = Stage::Connecting;
    shared.stats.local().counters.connections_attempted += 1;
    let connect_start = Instant::now();
    // `None`: the run was stopped while connecting (the `Ending` counts it by the cause).
    let result = connect_blocking(
        config.addr,
        source_of(config, conn),
        config.connect_timeout,
        tick,
        read_timeout(config),
        &|| stopped(shared),
    )
    .transpose()?;
    let Some(stream) = count_connect(shared, connect_start, result) else {
        ending.stage = Stage::Counted;
        return None;
    };
    let stream = registered(shared, stream);
    shared.stats.connection_opened();
    let _established = EstablishedGuard(shared);
    ending.stage = Stage::Session(Box::new(Session::new(stream, conn, config)));
    let Stage::Session(session) = &mut ending.stage else {
        unreachable!("the stage was set just above")
    };

    let first = first_plan(shared, connect_start);
    let result = session.drive_blocking(&first, shared, tick);
    if result.is_ok() {
        phase.done();
    }
    let steady = match result {
        Err(Halt::Stopped) => return session.last_completion,
        Err(Halt::Failed(f)) => Err(f),
        Ok(()) => match wait_for_barrier(shared, shared.connect_deadline + BARRIER_GRACE) {
            Some(steady) => Ok(steady),
            None if stopped(shared) => return session.last_completion,
            // The barrier never opened (cannot happen unless the runner died): end cleanly.
            None => {
                session.finish(None, shared);
                let last = session.last_completion;
                ending.stage = Stage::Counted;
                return last;
            }
        },
    };
    let result = match steady.map(|s| steady_plan(config, &s, conn, connect_start)) {
        Ok(plan) => match driver {
            None => session.drive_blocking(&plan, shared, tick),
            Some(driver) => handed_off(&mut ending, plan, driver)?,
        },
        Err(f) => Err(Halt::Failed(f)),
    };
    close(&mut ending, result)
}

/// Counts the session in `ending` by how its plan ended and closes it; returns when its last
/// echo completed.
fn close(ending: &mut Ending<'_, Arc<Socket>>, result: Result<(), Halt>) -> Option<Instant> {
    let shared = ending.shared;
    let Stage::Session(session) = &mut ending.stage else {
        unreachable!("closed only with its session in its stage")
    };
    let failure = match result {
        Err(Halt::Stopped) => return session.last_completion,
        Err(Halt::Failed(f)) => Some(f),
        Ok(()) => None,
    };
    session.finish(failure.as_ref(), shared);
    let last = session.last_completion;
    // Close our side first; the server then sees a clean EOF.
    let _ = session.stream.shutdown(Shutdown::Write);
    ending.stage = Stage::Counted;
    last
}

/// Hands the session in `ending` to a uring driver for `plan` and waits until it comes back
/// (into `ending` again) with how the plan ended. `None` if the driver is gone: the session
/// went with it, and is counted here as failed.
fn handed_off(
    ending: &mut Ending<'_, Arc<Socket>>,
    plan: Plan,
    driver: &Sender<Handoff>,
) -> Option<Result<(), Halt>> {
    let Stage::Session(session) = std::mem::replace(&mut ending.stage, Stage::Counted) else {
        unreachable!("only an established session is handed off")
    };
    let (back, returned) = sync_channel(1);
    let handoff = Handoff {
        session,
        plan,
        back,
    };
    let returned = match driver.send(handoff) {
        Ok(()) => returned.recv().ok(),
        Err(unsent) => Some(Returned {
            session: unsent.0.session,
            result: Err(Halt::Failed(Failure::Other(
                "the uring driver is gone".into(),
            ))),
        }),
    };
    match returned {
        Some(Returned { session, result }) => {
            ending.stage = Stage::Session(session);
            Some(result)
        }
        None => {
            let mut shard = ending.shared.stats.local();
            Failure::Other("the uring driver ended with the session".into()).record(&mut shard);
            shard.counters.sessions_failed += 1;
            None
        }
    }
}

impl Session<Arc<Socket>> {
    /// Runs `plan` until it has nothing more to send and nothing outstanding, fails, or the run
    /// is stopped. Closed loop only (the threads engine refuses `--rate`).
    fn drive_blocking(
        &mut self,
        plan: &Plan,
        shared: &RunShared,
        tick: Duration,
    ) -> Result<(), Halt> {
        loop {
            if stopped(shared) {
                return Err(Halt::Stopped);
            }
            let wake = match self.next_step(plan, shared) {
                Next::Done => return Ok(()),
                Next::Fail(f) => return Err(Halt::Failed(f)),
                Next::Wait { wake, .. } => wake,
            };
            if self.out_off < self.out.len() {
                match self.send_pending(wake, tick).map_err(Halt::Failed)? {
                    Sent::All | Sent::Readable => {}
                    Sent::Partly => continue,
                }
            }
            match read_delay::read(&*self.stream, &mut self.rbuf) {
                // The runner shut the read side down to stop the run (`OpenSockets::wake_all`).
                Ok((0, _)) if stopped(shared) => return Err(Halt::Stopped),
                Ok((n, delay_us)) => {
                    self.read_delay_us = delay_us;
                    self.read(n, plan, shared).map_err(Halt::Failed)?
                }
                // The read timeout is the tick: look at the deadlines and the stop flag again.
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(Halt::Failed(Failure::from_io(&e))),
            }
        }
    }

    /// Sends what is pending without blocking; when the socket is full, waits (until `wake`,
    /// at most a tick) for room or for an echo to read.
    fn send_pending(&mut self, wake: Instant, tick: Duration) -> Result<Sent, Failure> {
        match self
            .stream
            .send_with_flags(&self.out[self.out_off..], libc::MSG_DONTWAIT)
        {
            Ok(n) => {
                self.wrote(n)?;
                Ok(if self.out_off == 0 {
                    Sent::All
                } else {
                    Sent::Partly
                })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = wake.saturating_duration_since(Instant::now()).min(tick);
                let ms = left.as_millis().clamp(1, u16::MAX as u128) as u16;
                let flags = PollFlags::POLLIN | PollFlags::POLLOUT;
                let mut fds = [PollFd::new(self.stream.as_fd(), flags)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(Failure::from_io(&e.into())),
                }
                let readable = fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP));
                Ok(if readable {
                    Sent::Readable
                } else {
                    Sent::Partly
                })
            }
            Err(e) if is_transient(&e) => Ok(Sent::Partly),
            Err(e) => Err(Failure::from_io(&e)),
        }
    }
}

/// What [`Session::send_pending`] achieved.
enum Sent {
    /// Nothing is left to send: wait for echoes.
    All,
    /// Output is left and an echo (or the server's close) is there to read.
    Readable,
    /// Output is left and nothing to read yet: try again.
    Partly,
}

/// A timeout or interruption of a blocking call: not a failure, just a reason to look again.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
