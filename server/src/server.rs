//! The parent's event loop: one `poll` over the listener and the signal fd, an accept loop that
//! forks one child per client, the child limit, and the shutdown sequence. Everything here runs
//! in a single thread, which is what makes `fork` safe.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::getpid;

use crate::child_table::ChildTable;
use crate::config::{AtLimit, Config};
use crate::fork::{fork_process, run_child, ChildStart, Forked};
use crate::limits::TokenBucket;
use crate::listener::Listener;
use crate::log::{self, RateLimitedLog};
use crate::signals::SignalSource;
use crate::stats::Stats;

/// How long accepting pauses after EMFILE/ENFILE or a failed fork. Level-triggered poll would
/// report the still-queued connection again at once, so without a pause this is a busy loop.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);
/// After SIGTERM to the remaining children, how long before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(1);
/// Most connections accepted per wake-up, so signals are looked at between batches.
const ACCEPT_BATCH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Listener closed; live sessions may finish until the deadline.
    Draining {
        until: Instant,
    },
    /// Remaining children got SIGTERM; SIGKILL follows at the deadline.
    Terminating {
        until: Instant,
    },
}

pub struct Server {
    config: Config,
    /// `Some` while accepting; dropped (closed) when shutdown starts so new clients are refused
    /// at once instead of queueing on a port that will never be served.
    listener: Option<Listener>,
    signals: SignalSource,
    children: ChildTable,
    stats: Stats,
    phase: Phase,
    /// While set, the listener is not polled (EMFILE or fork failure back-off).
    paused_until: Option<Instant>,
    /// Whether the last look found `max_children` live, so each stop at the limit counts once.
    was_full: bool,
    /// `--max-rate`; `None` when unlimited.
    rate: Option<TokenBucket>,
    /// Whether the last look found the rate spent, so each pause for the rate counts once.
    was_rate_limited: bool,
    resource_log: RateLimitedLog,
    pid: nix::unistd::Pid,
    /// Allocated once here, never in a child: each child inherits it copy-on-write and dirties
    /// only the pages its reads touch, instead of allocating (and faulting in) a fresh buffer.
    echo_buffer: Vec<u8>,
}

struct Ready {
    listener: bool,
    signals: bool,
}

impl Server {
    pub fn new(config: Config, listener: Listener, signals: SignalSource) -> Server {
        Server {
            listener: Some(listener),
            signals,
            children: ChildTable::new(config.max_per_source.is_some()),
            stats: Stats::new(),
            phase: Phase::Running,
            paused_until: None,
            was_full: false,
            rate: config
                .max_rate
                .map(|per_second| TokenBucket::new(per_second, Instant::now())),
            was_rate_limited: false,
            resource_log: RateLimitedLog::new(Duration::from_secs(1)),
            pid: getpid(),
            echo_buffer: vec![0; config.buffer_size],
            config,
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(Listener::local_addr)
    }

    /// Serves until a shutdown signal has been handled and every child is reaped. In a forked
    /// child this never returns: the child branch diverges into `run_child`.
    pub fn run(mut self) -> io::Result<Stats> {
        loop {
            if self.phase != Phase::Running && self.children.is_empty() {
                break;
            }
            let ready = self.wait_for_events()?;
            if ready.signals {
                self.handle_signals()?;
            }
            self.children.reap_children(&mut self.stats);
            self.advance_shutdown(Instant::now());
            if !ready.listener {
                continue;
            }
            for _ in 0..ACCEPT_BATCH {
                if !self.may_accept(Instant::now()) {
                    break;
                }
                let Some((client, peer)) = self.accept_one() else {
                    break;
                };
                match fork_process() {
                    Ok(Forked::Child) => self.become_child(client),
                    Ok(Forked::Parent(pid)) => {
                        // The parent's copy of the client fd is closed here; keeping it would
                        // leak one descriptor per client and hold the connection open after
                        // the child is done.
                        drop(client);
                        crate::log_at!(log::DEBUG, "forked child {pid} for {}", describe(peer));
                        self.children.insert(pid, peer, &mut self.stats);
                    }
                    Err(err) => {
                        drop(client);
                        self.stats.fork_failures += 1;
                        self.back_off(format_args!(
                            "fork failed: {err}; closed the client, backing off"
                        ));
                        break;
                    }
                }
            }
        }
        Ok(self.stats)
    }

    fn become_child(self, client: socket2::Socket) -> ! {
        let Server {
            config,
            listener,
            signals,
            children,
            stats,
            pid,
            echo_buffer,
            ..
        } = self;
        let start = ChildStart {
            client,
            parent_pid: pid,
            original_mask: signals.original_mask(),
            echo_buffer,
            idle_timeout: config.idle_timeout,
        };
        // The child must not keep the port open or read the parent's signals.
        drop(listener);
        drop(signals);
        // Freeing the parent's tables would write to heap pages the child shares copy-on-write
        // with the parent, costing memory per child for nothing: the child ends with _exit.
        std::mem::forget(children);
        std::mem::forget(stats);
        run_child(start)
    }

    fn wait_for_events(&mut self) -> io::Result<Ready> {
        let now = Instant::now();
        let poll_listener = self.may_accept(now);
        let deadline = [
            self.paused_until,
            self.phase_deadline(),
            self.rate_ready_at(now),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match deadline {
            // Rounded up so the wake-up is not a hair early, which would spin until it is due.
            Some(at) => {
                PollTimeout::try_from(at.saturating_duration_since(now) + Duration::from_millis(1))
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        // An array, not a Vec: see `signals::Received` on why the parent avoids the heap.
        let signal_fd = || PollFd::new(self.signals.as_fd(), PollFlags::POLLIN);
        let mut fds = [signal_fd(), signal_fd()];
        let mut polled = 1;
        if let (true, Some(listener)) = (poll_listener, self.listener.as_ref()) {
            fds[1] = PollFd::new(listener.as_fd(), PollFlags::POLLIN);
            polled = 2;
        }
        let fds = &mut fds[..polled];
        match poll(fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => {
                return Ok(Ready {
                    listener: false,
                    signals: false,
                })
            }
            Err(err) => return Err(io::Error::from(err)),
        }
        let readable = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        Ok(Ready {
            signals: readable(&fds[0]),
            listener: fds.get(1).is_some_and(readable),
        })
    }

    /// When `--max-rate` allows the next session, if it does not allow one now.
    fn rate_ready_at(&mut self, now: Instant) -> Option<Instant> {
        if self.phase != Phase::Running {
            return None;
        }
        self.rate.as_mut()?.ready_at(now)
    }

    fn phase_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            Phase::Draining { until } | Phase::Terminating { until } => Some(until),
        }
    }

    /// Whether the listener should be accepted from now; also counts arrivals at the limit.
    fn may_accept(&mut self, now: Instant) -> bool {
        if self.listener.is_none() || self.phase != Phase::Running {
            return false;
        }
        if let Some(until) = self.paused_until {
            if now < until {
                return false;
            }
            self.paused_until = None;
        }
        // The rate waits like `--at-limit wait`: the listener is not polled until the next
        // token is due (a poll deadline), so the connects queue in the backlog, no busy loop.
        let rate_spent = self.rate_ready_at(now).is_some();
        if rate_spent && !self.was_rate_limited {
            self.stats.rate_limited += 1;
        }
        self.was_rate_limited = rate_spent;
        if rate_spent {
            return false;
        }
        let full = self.children.len() >= self.config.max_children;
        if self.config.at_limit == AtLimit::Wait {
            if full && !self.was_full {
                self.stats.limit_hits += 1;
                crate::log_at!(
                    log::DEBUG,
                    "{} live (--max-children): new clients wait in the backlog",
                    log::count(self.children.len(), "child", "children")
                );
            }
            self.was_full = full;
            return !full;
        }
        true
    }

    /// Accepts one client, handling every error; `None` when nothing (more) can be accepted now.
    fn accept_one(&mut self) -> Option<(socket2::Socket, Option<SocketAddr>)> {
        loop {
            let listener = self.listener.as_ref()?;
            match listener.accept() {
                Ok((client, peer)) => {
                    self.stats.accepted += 1;
                    if self.config.at_limit == AtLimit::Close
                        && self.children.len() >= self.config.max_children
                    {
                        self.stats.limit_hits += 1;
                        crate::log_at!(
                            log::DEBUG,
                            "at --max-children: closed {} at once",
                            describe(peer)
                        );
                        drop(client);
                        continue;
                    }
                    if self.source_is_full(peer) {
                        self.stats.per_source_refused += 1;
                        crate::log_at!(
                            log::DEBUG,
                            "at --max-per-source: closed {} at once",
                            describe(peer)
                        );
                        drop(client);
                        continue;
                    }
                    if let Some(rate) = self.rate.as_mut() {
                        rate.take(Instant::now());
                    }
                    return Some((client, peer));
                }
                Err(err) => match err.raw_os_error().map(Errno::from_raw) {
                    Some(Errno::EAGAIN) => return None,
                    // The client gave up while queued, or a signal arrived: try the next one.
                    Some(Errno::EINTR | Errno::ECONNABORTED) => continue,
                    // Linux passes pending network errors of the new socket to accept(); they
                    // belong to that client, not to the listener.
                    Some(
                        Errno::EPROTO
                        | Errno::ENETDOWN
                        | Errno::ENOPROTOOPT
                        | Errno::EHOSTDOWN
                        | Errno::ENONET
                        | Errno::EHOSTUNREACH
                        | Errno::EOPNOTSUPP
                        | Errno::ENETUNREACH,
                    ) => {
                        crate::log_at!(log::DEBUG, "accept: {err} (client dropped)");
                        continue;
                    }
                    Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                        self.stats.emfile_pauses += 1;
                        self.back_off(format_args!("accept: {err}; pausing accepts"));
                        return None;
                    }
                    _ => {
                        self.back_off(format_args!("accept: {err}; pausing accepts"));
                        return None;
                    }
                },
            }
        }
    }

    /// Whether `peer`'s source already has `--max-per-source` sessions. Waiting would block
    /// every other client behind this one in the backlog, so such a client is closed instead.
    fn source_is_full(&self, peer: Option<SocketAddr>) -> bool {
        match (self.config.max_per_source, peer) {
            (Some(limit), Some(peer)) => self.children.live_from(peer) >= limit,
            _ => false,
        }
    }

    fn back_off(&mut self, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        self.paused_until = Some(now + RESOURCE_BACKOFF);
        if let Some(suppressed) = self.resource_log.permit(now) {
            if suppressed > 0 {
                crate::log_at!(log::INFO, "{what} ({suppressed} similar lines suppressed)");
            } else {
                crate::log_at!(log::INFO, "{what}");
            }
        }
    }

    fn handle_signals(&mut self) -> io::Result<()> {
        for signal in self.signals.drain()?.iter() {
            match signal {
                Signal::SIGTERM | Signal::SIGINT => self.begin_shutdown(signal),
                Signal::SIGUSR1 => {
                    self.children.reap_children(&mut self.stats);
                    self.stats.print();
                }
                // SIGCHLD: the reaper runs after every wake-up anyway.
                _ => {}
            }
        }
        Ok(())
    }

    fn begin_shutdown(&mut self, signal: Signal) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                self.listener = None;
                let grace = self.config.shutdown_grace;
                let live = self.children.len();
                crate::log_at!(
                    log::INFO,
                    "{signal}: stopped accepting; {} {} {} to finish",
                    log::count(live, "live session", "live sessions"),
                    if live == 1 { "has" } else { "have" },
                    humantime::format_duration(grace)
                );
                self.phase = Phase::Draining { until: now + grace };
            }
            Phase::Draining { .. } => {
                crate::log_at!(log::INFO, "{signal} again: skipping the grace period");
                self.terminate_children(now);
            }
            Phase::Terminating { .. } => {}
        }
    }

    fn advance_shutdown(&mut self, now: Instant) {
        match self.phase {
            Phase::Draining { until } if now >= until && !self.children.is_empty() => {
                self.terminate_children(now);
            }
            Phase::Terminating { until } if now >= until && !self.children.is_empty() => {
                crate::log_at!(
                    log::INFO,
                    "{} outlived SIGTERM: SIGKILL",
                    log::count(self.children.len(), "child", "children")
                );
                self.children.signal_all(Signal::SIGKILL);
                // SIGKILL cannot be ignored, so this wait ends; run() then finds the table empty.
                self.children.reap_all_blocking(&mut self.stats);
            }
            _ => {}
        }
    }

    fn terminate_children(&mut self, now: Instant) {
        if !self.children.is_empty() {
            crate::log_at!(
                log::INFO,
                "sending SIGTERM to {}",
                log::count(self.children.len(), "live child", "live children")
            );
            self.children.signal_all(Signal::SIGTERM);
        }
        self.phase = Phase::Terminating {
            until: now + KILL_AFTER,
        };
    }
}

fn describe(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown peer".to_owned(), |p| p.to_string())
}
