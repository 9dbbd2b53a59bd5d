//! The uring engine's steady phase: a few driver threads (one per CPU) each run the steady plans
//! of their share of the connections on one io_uring, a batch of sends and receives per system
//! call. A connection's thread connects, makes its first echo and waits at the barrier as in the
//! threads engine (`blocking`), then hands its [`Session`] to a driver and sleeps until the
//! driver hands it back with how the plan ended; the thread then counts and closes it as before.
//!
//! Why: against a fork-per-connection server the threads engine's client thread sleeps in `recv`
//! once per echo, so each echo costs two context switches (client to child and back). A driver
//! only sleeps when none of its sessions has anything to do, so each echo costs about one switch
//! (from one server child to the next). Each driver is pinned to a CPU, and every few echoes a
//! session moves to the driver on the CPU its server child ran on (`SO_INCOMING_CPU`): a send
//! then wakes the child on the sender's own CPU. Without that, 46 % of wake-ups crossed CPUs
//! and cost the rate its gain; with it, 1.25x rust_echo_bench's rate at 0.69x its client CPU
//! per echo on a 2-CPU box (loadgen/BENCH.md, "The uring engine").
//!
//! Buffers handed to the kernel stay put: a session's `out` is only grown by `next_step`, which
//! runs only while no send of it is in flight, and `rbuf` is only read once its receive has
//! completed. A session is handed back only when none of its operations is in flight.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use socket2::Socket;
use tokio::time::Instant;

use crate::session::echo::{Next, Session};
use crate::session::failure::{Failure, Halt};
use crate::session::plan::Plan;
use crate::session::read_delay::{self, ControlBuffer, CONTROL_BYTES};
use crate::session::shared::RunShared;

/// A session whose steady plan a driver runs.
pub(crate) struct Handoff {
    pub(super) session: Box<Session<Arc<Socket>>>,
    pub(super) plan: Plan,
    /// Where the session goes back, with how its plan ended, once nothing of it is in flight.
    pub(super) back: SyncSender<Returned>,
}

/// The uring engine's drivers, as each of them sees the others.
#[derive(Clone)]
pub(crate) struct Drivers {
    /// Driver `i`'s handoffs.
    pub senders: Vec<Sender<Handoff>>,
    /// The CPU driver `i` runs on (it pins itself there), if this process may choose.
    pub cpus: Vec<Option<usize>>,
    /// Connection threads still running, plus one while they are being started: a driver ends
    /// once this is zero and it holds no session (every session's thread waits for it).
    pub live: Arc<AtomicUsize>,
}

/// A session handed back by its driver.
pub(crate) struct Returned {
    pub(super) session: Box<Session<Arc<Socket>>>,
    pub(super) result: Result<(), Halt>,
}

/// How often a session looks at where its server's side runs (one `getsockopt` per this many
/// completions): often enough to settle within a second, rare enough to cost nothing per echo.
const FOLLOW_EVERY: u64 = 8;

/// What an operation's `user_data` says besides its slot.
const OP_SEND: u64 = 0;
const OP_RECV: u64 = 1;
const OP_CANCEL: u64 = 2;

/// Whether this kernel lets this process use io_uring (it may be disabled by
/// `kernel.io_uring_disabled` or a seccomp filter, as in many containers).
pub fn available() -> bool {
    new_ring(64).is_ok()
}

/// A ring whose completions are only processed when its thread asks for them (no interrupting
/// task work while the thread runs); it must be created on the thread that uses it.
/// Up to two operations per session are in flight, and two cancels when it ends: the completion
/// queue holds them all up to 64 Ki (beyond, the kernel keeps overflowing completions); a push
/// that finds the submission queue full submits first.
fn new_ring(sessions: usize) -> io::Result<IoUring> {
    let sq = sessions
        .saturating_mul(2)
        .clamp(64, 4096)
        .next_power_of_two();
    let cq = sessions
        .saturating_mul(4)
        .clamp(2 * sq, 1 << 16)
        .next_power_of_two();
    IoUring::builder()
        .setup_cqsize(cq as u32)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(sq as u32)
}

/// One driver thread's loop: runs every session handed to it on `handoffs` until all are handed
/// back and every sender is gone. `ready` gets the ring's creation result first, so a kernel
/// without io_uring is a setup error before any connection starts.
pub(crate) fn drive(
    shared: &RunShared,
    (me, drivers): (usize, Drivers),
    handoffs: Receiver<Handoff>,
    sessions: usize,
    tick: Duration,
    ready: Sender<io::Result<()>>,
) {
    if let Some(cpu) = drivers.cpus[me] {
        // Where it cannot be pinned it still runs, only its sessions follow their children less
        // well.
        let mut set = CpuSet::new();
        if set.set(cpu).is_ok() {
            let _ = sched_setaffinity(Pid::from_raw(0), &set);
        }
    }
    let ring = match new_ring(sessions) {
        Ok(ring) => {
            let _ = ready.send(Ok(()));
            ring
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    Driver {
        shared,
        me,
        drivers,
        ring,
        slots: Vec::new(),
        free: Vec::new(),
        active: 0,
    }
    .run(handoffs, tick);
}

/// What a session's `recvmsg` on the ring points at (the iovec at its `rbuf`), boxed so it stays
/// put while the receive is in flight.
struct RecvMsg {
    header: libc::msghdr,
    iov: libc::iovec,
    control: ControlBuffer,
}

/// A session on the ring, with what of it is in flight.
struct Slot {
    handoff: Handoff,
    recv: Box<RecvMsg>,
    send_in_flight: bool,
    recv_in_flight: bool,
    /// The echo timeout or the plan's deadline, whichever is first (from `next_step`).
    wake: Instant,
    /// Set once the plan has ended: the session goes back when nothing is in flight.
    ended: Option<Result<(), Halt>>,
    /// Completions here that left nothing of it in flight, to look at where the server's side
    /// runs every [`FOLLOW_EVERY`]th.
    settled: u64,
}

struct Driver<'a> {
    shared: &'a RunShared,
    /// This driver's index in `drivers`.
    me: usize,
    drivers: Drivers,
    ring: IoUring,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    active: usize,
}

impl Driver<'_> {
    fn run(mut self, handoffs: Receiver<Handoff>, tick: Duration) {
        let mut completions: Vec<(u64, i32)> = Vec::new();
        let mut next_scan = Instant::now() + tick;
        loop {
            // Every driver holds a sender to every other: the channels never disconnect.
            while let Ok(h) = handoffs.try_recv() {
                self.add(h);
            }
            if self.active == 0 {
                if self.drivers.live.load(Ordering::Acquire) == 0 {
                    return;
                }
                if let Ok(h) = handoffs.recv_timeout(tick) {
                    self.add(h);
                }
                continue;
            }
            self.wait(tick);
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|c: cqueue::Entry| (c.user_data(), c.result())),
            );
            for &(user_data, result) in &completions {
                self.complete(user_data, result);
            }
            let now = Instant::now();
            let stopped = self.shared.stop.load(Ordering::Acquire) != 0;
            if stopped || now >= next_scan {
                next_scan = now + tick;
                self.scan(now, stopped);
            }
        }
    }

    /// Submits what is queued and waits for one completion, at most `tick`.
    fn wait(&mut self, tick: Duration) {
        let ts = types::Timespec::from(tick);
        let args = types::SubmitArgs::new().timespec(&ts);
        // ETIME (nothing completed within the tick) and EINTR are only reasons to look again;
        // anything else is a broken ring, seen as sessions that stop completing (echo timeouts).
        let _ = self.ring.submitter().submit_with_args(1, &args);
    }

    fn add(&mut self, handoff: Handoff) {
        // SAFETY: `msghdr` is plain data (pointers, lengths, flags): all zeroes is a valid one.
        let header: libc::msghdr = unsafe { std::mem::zeroed() };
        let recv = Box::new(RecvMsg {
            header,
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            control: ControlBuffer([0; CONTROL_BYTES]),
        });
        let slot = Slot {
            wake: handoff.plan.deadline,
            recv,
            handoff,
            send_in_flight: false,
            recv_in_flight: false,
            ended: None,
            settled: 0,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.active += 1;
        self.step(index);
    }

    /// Sessions whose deadline has come get a step (it fails them or ends their plan); on a
    /// stop, every session ends.
    fn scan(&mut self, now: Instant, stopped: bool) {
        for i in 0..self.slots.len() {
            let Some(slot) = &self.slots[i] else { continue };
            if slot.ended.is_some() {
                continue;
            }
            if stopped {
                self.end(i, Err(Halt::Stopped));
            } else if now >= slot.wake && !slot.send_in_flight {
                self.step(i);
            } else if now >= slot.wake {
                // A send the server does not take (its socket full): `next_step` may not run
                // while it is in flight, so the deadline it would have found is found here.
                let failure = match now >= slot.handoff.plan.deadline {
                    true => Failure::RunDeadline,
                    false => Failure::EchoTimeout,
                };
                self.end(i, Err(Halt::Failed(failure)));
            }
        }
    }

    /// Queues what the session does next: its pending output and a receive.
    fn step(&mut self, i: usize) {
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        if self.shared.stop.load(Ordering::Acquire) != 0 {
            return self.end(i, Err(Halt::Stopped));
        }
        let Handoff { session, plan, .. } = &mut slot.handoff;
        match session.next_step(plan, self.shared) {
            Next::Done => self.end(i, Ok(())),
            Next::Fail(f) => self.end(i, Err(Halt::Failed(f))),
            Next::Wait { wake, .. } => {
                slot.wake = wake;
                let fd = types::Fd(session.stream.as_raw_fd());
                let mut ops: [Option<squeue::Entry>; 2] = [None, None];
                if session.out_off < session.out.len() && !slot.send_in_flight {
                    let pending = &session.out[session.out_off..];
                    ops[0] = Some(
                        opcode::Send::new(fd, pending.as_ptr(), pending.len() as u32)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(tag(i, OP_SEND)),
                    );
                    slot.send_in_flight = true;
                }
                if !slot.recv_in_flight {
                    let r = &mut *slot.recv;
                    r.iov.iov_base = session.rbuf.as_mut_ptr().cast();
                    r.iov.iov_len = session.rbuf.len();
                    r.control.0[..16].fill(0);
                    r.header.msg_iov = &mut r.iov;
                    r.header.msg_iovlen = 1;
                    r.header.msg_control = r.control.0.as_mut_ptr().cast();
                    r.header.msg_controllen = CONTROL_BYTES;
                    ops[1] = Some(
                        opcode::RecvMsg::new(fd, &mut r.header)
                            .build()
                            .user_data(tag(i, OP_RECV)),
                    );
                    slot.recv_in_flight = true;
                }
                for op in ops.into_iter().flatten() {
                    self.push(&op);
                }
            }
        }
    }

    /// Handles one completion.
    fn complete(&mut self, user_data: u64, result: i32) {
        let (i, op) = ((user_data >> 2) as usize, user_data & 3);
        if op == OP_CANCEL {
            return;
        }
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if op == OP_SEND {
            slot.send_in_flight = false;
        } else {
            slot.recv_in_flight = false;
        }
        if slot.ended.is_some() {
            return self.hand_back_if_idle(i);
        }
        let stopped = self.shared.stop.load(Ordering::Acquire) != 0;
        let send_in_flight = slot.send_in_flight;
        let Handoff { session, plan, .. } = &mut slot.handoff;
        let outcome = if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ if stopped => Err(Halt::Stopped),
                _ => Err(Halt::Failed(Failure::from_io(&e))),
            }
        } else if op == OP_SEND {
            session.wrote(result as usize).map_err(Halt::Failed)
        } else if result == 0 && stopped {
            // The runner shut the read side down to stop the run (`OpenSockets::wake_all`).
            Err(Halt::Stopped)
        } else {
            let r = &slot.recv;
            session.read_delay_us = read_delay::from_control(&r.control, r.header.msg_controllen);
            session
                .read(result as usize, plan, self.shared)
                .map_err(Halt::Failed)
        };
        match outcome {
            Err(halt) => self.end(i, Err(halt)),
            // `next_step` may grow `out`: never while the kernel may still read it.
            Ok(()) if !send_in_flight => {
                if !self.follow(i) {
                    self.step(i);
                }
            }
            Ok(()) => {}
        }
    }

    /// Every [`FOLLOW_EVERY`]th completion of session `i` that leaves nothing of it in flight,
    /// moves it to the driver on the CPU its last bytes arrived on (`SO_INCOMING_CPU`: over
    /// loopback, where the server's side sent them), so that its sends wake the server's side
    /// on this driver's own CPU. True if it moved.
    fn follow(&mut self, i: usize) -> bool {
        let Some(slot) = self.slots[i].as_mut() else {
            return false;
        };
        // A receive still in flight (a send completed first) points at this slot and the
        // session's `rbuf`: moving now would free the one and give the other two receives.
        if slot.send_in_flight || slot.recv_in_flight {
            return false;
        }
        slot.settled += 1;
        if self.drivers.senders.len() < 2 || slot.settled % FOLLOW_EVERY != 0 {
            return false;
        }
        let Ok(cpu) = slot.handoff.session.stream.cpu_affinity() else {
            return false;
        };
        let to = self.drivers.cpus.iter().position(|c| *c == Some(cpu));
        let Some(to) = to.filter(|&to| to != self.me) else {
            return false;
        };
        let Some(slot) = self.slots[i].take() else {
            return false;
        };
        self.free.push(i);
        self.active -= 1;
        // Its thread still waits for it, so every driver is still there; if one were not,
        // the session stays here.
        if let Err(unsent) = self.drivers.senders[to].send(slot.handoff) {
            self.add(unsent.0);
        }
        true
    }

    /// Ends session `i`'s plan: cancels what of it is in flight, and hands it back once nothing
    /// is.
    fn end(&mut self, i: usize, result: Result<(), Halt>) {
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        slot.ended = Some(result);
        let mut cancels = Vec::new();
        for (op, in_flight) in [
            (OP_SEND, slot.send_in_flight),
            (OP_RECV, slot.recv_in_flight),
        ] {
            if in_flight {
                cancels.push(
                    opcode::AsyncCancel::new(tag(i, op))
                        .build()
                        .user_data(tag(i, OP_CANCEL)),
                );
            }
        }
        if cancels.is_empty() {
            return self.hand_back_if_idle(i);
        }
        // A receive the cancel misses (already completing) ends when the read side is shut.
        if slot.recv_in_flight {
            let _ = slot.handoff.session.stream.shutdown(Shutdown::Read);
        }
        for c in &cancels {
            self.push(c);
        }
    }

    fn hand_back_if_idle(&mut self, i: usize) {
        let idle = self.slots[i]
            .as_ref()
            .is_some_and(|s| s.ended.is_some() && !s.send_in_flight && !s.recv_in_flight);
        if !idle {
            return;
        }
        let Some(slot) = self.slots[i].take() else {
            return;
        };
        self.free.push(i);
        self.active -= 1;
        let Handoff { session, back, .. } = slot.handoff;
        let result = slot.ended.unwrap_or(Ok(()));
        // The connection's thread waits for it; it only goes if that thread has gone.
        let _ = back.send(Returned { session, result });
    }

    /// Queues `entry`, submitting first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points at is a session's `out`, or its `rbuf` and
            // the slot's boxed `RecvMsg`, which stay allocated and unmoved until the operation's
            // completion has been reaped: a slot is only freed, and its session handed back (and
            // `out` only grown), with nothing of it in flight.
            let pushed = unsafe { self.ring.submission().push(entry) };
            if pushed.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }
}

fn tag(slot: usize, op: u64) -> u64 {
    ((slot as u64) << 2) | op
}
