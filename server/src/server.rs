//! The parent's event loop: one `poll` over the listener and the signal fd, an accept loop that
//! forks one child per client, the child limit, and the shutdown sequence. Everything here runs
//! in a single thread, which is what makes `fork` safe.
//!
//! The loop is built for bursts of thousands of connects: each wake-up drains the accept queue
//! (up to a bound), and between two forks it writes as little memory as it can, because after
//! each `fork` every page the parent writes is a copy-on-write fault (the child table and the
//! counters live in memory no child inherits, so recording a child costs none); and it reaps
//! only when a SIGCHLD was read, and then no more often than `ReapPacing` allows, because
//! `waitpid(-1, WNOHANG)` walks the whole list of live children even when none has exited.
//!
//! Layers it may import: `child_table`, `config`, `fork`, `limits`, `listener`, `log`, `metrics`,
//! `parent_only`, `reap_pacing`, `signals`, `stats`.
//! Crates it may import: `humantime`, `nix`, `socket2`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::Signal;
use nix::sys::time::TimeSpec;
use nix::unistd::{getpid, Pid};

use crate::child_table::ChildTable;
use crate::config::{AtLimit, Config};
use crate::fork::{fork_process, run_child, ChildStart, Forked};
use crate::limits::TokenBucket;
use crate::listener::Listener;
use crate::log::{self, RateLimitedLog};
use crate::metrics::{Metrics, MAX_POLL_FDS};
use crate::parent_only::ParentOnly;
use crate::reap_pacing::ReapPacing;
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
    /// Everything the loop writes between two forks, where no child inherits it.
    books: ParentOnly<Books>,
    phase: Phase,
    /// While set, the listener is not polled (EMFILE or fork failure back-off).
    paused_until: Option<Instant>,
    resource_log: RateLimitedLog,
    pid: Pid,
    /// `--metrics-file` / `--metrics-addr`; `None` when neither is given. Not in the books: the
    /// loop writes it once per wake-up, not between two forks.
    metrics: Option<Metrics>,
    /// Allocated once here, never in a child: each child inherits it copy-on-write and dirties
    /// only the pages its reads touch, instead of allocating (and faulting in) a fresh buffer.
    echo_buffer: Vec<u8>,
}

/// The parent's state that changes with every accept, fork and reap. It lives in a
/// `ParentOnly` mapping: in ordinary memory each fork would make its page copy-on-write again,
/// so the next write to it would fault and leave every child forked before holding a private
/// copy (4 KiB per live session).
struct Books {
    children: ChildTable,
    stats: Stats,
    /// Whether the last look found `max_children` live, so each stop at the limit counts once.
    was_full: bool,
    /// `--max-rate`; `None` when unlimited.
    rate: Option<TokenBucket>,
    /// Whether the last look found the rate spent, so each pause for the rate counts once.
    was_rate_limited: bool,
    /// When the exited children are reaped next; while a reap waits, the signal fd is not
    /// polled (see `ReapPacing`).
    reaping: ReapPacing,
}

impl Books {
    fn reap_children(&mut self, now: Instant) {
        self.children.reap_children(&mut self.stats);
        self.reaping.reaped(now);
    }

    fn insert_child(&mut self, pid: Pid, peer: Option<SocketAddr>) {
        self.children.insert(pid, peer, &mut self.stats);
    }
}

struct Ready {
    listener: bool,
    signals: bool,
    /// Readiness of the metrics' fds, in `Metrics::poll_fds` order.
    metrics: [bool; MAX_POLL_FDS],
}

impl Server {
    /// Fails only if the child table's first page cannot be mapped.
    pub fn new(config: Config, listener: Listener, signals: SignalSource) -> io::Result<Server> {
        Ok(Server {
            listener: Some(listener),
            signals,
            books: ParentOnly::new(Books {
                children: ChildTable::new(
                    log::enabled(log::DEBUG),
                    config.max_per_source.is_some(),
                )?,
                stats: Stats::new(),
                was_full: false,
                rate: config
                    .max_rate
                    .map(|per_second| TokenBucket::new(per_second, Instant::now())),
                was_rate_limited: false,
                reaping: ReapPacing::new(Instant::now()),
            })?,
            phase: Phase::Running,
            paused_until: None,
            resource_log: RateLimitedLog::new(Duration::from_secs(1)),
            pid: getpid(),
            echo_buffer: vec![0; config.buffer_size],
            metrics: None,
            config,
        })
    }

    /// Exports metrics (see `crate::metrics`); session durations are measured only then.
    pub fn with_metrics(mut self, metrics: Option<Metrics>) -> Server {
        if metrics.is_some() {
            self.books.children.measure_durations();
        }
        self.metrics = metrics;
        self
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(Listener::local_addr)
    }

    /// Serves until a shutdown signal has been handled and every child is reaped. In a forked
    /// child this never returns: the child branch diverges into `run_child`.
    pub fn run(mut self) -> io::Result<Stats> {
        self.warn_if_backlog_capped();
        loop {
            if self.phase != Phase::Running && self.books.children.is_empty() {
                break;
            }
            let ready = self.wait_for_events()?;
            let now = Instant::now();
            // A reap that waited comes due with the signal fd unpolled meanwhile: the signals
            // read now are covered by it (and a SIGTERM among them is handled at once).
            let reap_came_due = self.reap_is_due(now);
            if (ready.signals || reap_came_due) && self.handle_signals()? {
                self.books.reaping.child_exited();
            }
            // Every exit raises SIGCHLD (coalesced, but the reaper loops), so a wake-up without
            // one has nothing to reap; reaping anyway walked all (up to 10,000) live children
            // for nothing after every accept batch of a burst.
            if self.reap_is_due(now) {
                self.books.reap_children(now);
            }
            self.advance_shutdown(Instant::now());
            if ready.listener {
                if let Some(client) = self.accept_batch() {
                    self.become_child(client);
                }
            }
            if let Some(metrics) = self.metrics.as_mut() {
                let durations = self.books.children.durations();
                metrics.service(&ready.metrics, Instant::now(), &self.books.stats, durations);
            }
        }
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.write_file(&self.books.stats, self.books.children.durations());
        }
        Ok(std::mem::take(&mut self.books.stats))
    }

    /// Accepts and forks for up to `ACCEPT_BATCH` queued clients, recording each child at once.
    /// Between forks the parent touches as little memory as it can: the children share every
    /// page copy-on-write, so the first write to a page after each `fork` copies it (a fault in
    /// the parent, a private page in the child). The child table is not such a page (see
    /// `PidSet`); what remains is the stack and the thread area.
    /// Returns `Some(client)` only in a newly forked child, which must become that client's
    /// session at once (the caller owns `self`, which `become_child` consumes).
    #[must_use]
    fn accept_batch(&mut self) -> Option<socket2::Socket> {
        // Room for the whole batch first: a child, once forked, must be recorded.
        if let Err(err) = self.books.children.reserve(ACCEPT_BATCH) {
            self.back_off(format_args!(
                "cannot grow the child table: {err}; pausing accepts"
            ));
            return None;
        }
        for _ in 0..ACCEPT_BATCH {
            if !self.may_accept(Instant::now()) {
                break;
            }
            let (client, peer) = self.accept_one()?;
            match fork_process() {
                Ok(Forked::Child) => return Some(client),
                Ok(Forked::Parent(pid)) => {
                    // The parent's copy of the client fd is closed here; keeping it would leak
                    // one descriptor per client and hold the connection open after the child
                    // is done.
                    drop(client);
                    self.books.insert_child(pid, peer);
                    crate::log_at!(log::DEBUG, "forked child {pid} for {}", describe(peer));
                }
                Err(err) => {
                    drop(client);
                    self.books.stats.fork_failures += 1;
                    self.back_off(format_args!(
                        "fork failed: {err}; closed the client, backing off"
                    ));
                    break;
                }
            }
        }
        None
    }

    /// The start-up line gives the effective backlog as a number; a capped one deserves a
    /// warning of its own, because a connect burst larger than the accept queue does not fail:
    /// it waits out SYN retransmits (1 s, then 3 s), which looks like a slow server. Not for a
    /// socket passed by socket activation: whoever passed it chose its backlog, `--backlog` was
    /// never applied, and its `effective_backlog` of 0 means "unknown", not "capped to 0".
    fn warn_if_backlog_capped(&self) {
        let Some(listener) = self.listener.as_ref().filter(|l| !l.activated) else {
            return;
        };
        if listener.effective_backlog < self.config.backlog {
            crate::log_at!(
                log::INFO,
                "warning: --backlog {} is above net.core.somaxconn, so the kernel uses {}: a \
                 connect burst larger than that overflows the accept queue and waits out SYN \
                 retransmits (raise it: sysctl -w net.core.somaxconn={})",
                self.config.backlog,
                listener.effective_backlog,
                self.config.backlog
            );
        }
    }

    fn become_child(self, client: socket2::Socket) -> ! {
        let Server {
            config,
            listener,
            signals,
            books,
            pid,
            echo_buffer,
            metrics,
            ..
        } = self;
        let start = ChildStart {
            client,
            parent_pid: pid,
            original_mask: signals.original_mask(),
            echo_buffer,
            idle_timeout: config.idle_timeout,
            child_nice: config.child_nice,
        };
        // The child must not keep the port open or read the parent's signals.
        drop(listener);
        drop(signals);
        // Nor keep the metrics port or a scrape connection open.
        drop(metrics);
        // The books are not mapped in the child (dropping them would fault), and freeing the
        // tables behind them would write heap pages the child shares copy-on-write with the
        // parent, for nothing: the child ends with _exit.
        std::mem::forget(books);
        run_child(start)
    }

    fn wait_for_events(&mut self) -> io::Result<Ready> {
        let now = Instant::now();
        let poll_listener = self.may_accept(now);
        let deadline = [
            self.paused_until,
            self.phase_deadline(),
            self.rate_ready_at(now),
            self.metrics.as_ref().and_then(Metrics::deadline),
            self.books.reaping.due_at(self.paced_children()),
        ]
        .into_iter()
        .flatten()
        .min();
        // `ppoll`, not `poll`: a paced reap may be due in microseconds, and `poll`'s timeout in
        // whole milliseconds, rounded up so as not to wake a hair early and spin, would hold it
        // back a millisecond. A timer never expires early, so this needs no rounding.
        let timeout = deadline.map(|at| TimeSpec::from(at.saturating_duration_since(now)));
        // While a reap waits, the exit storm's SIGCHLDs must not wake the loop (see
        // `ReapPacing`); the signals are read when the reap comes due.
        let signals_polled = !self.books.reaping.is_waiting(now, self.paced_children());
        // An array, not a Vec: no heap write per wake-up (see `accept_batch` on why the
        // parent avoids writing memory).
        let signal_fd = || PollFd::new(self.signals.as_fd(), PollFlags::POLLIN);
        let mut fds: [PollFd; 2 + MAX_POLL_FDS] = std::array::from_fn(|_| signal_fd());
        let mut polled = usize::from(signals_polled);
        let listener_at = polled;
        if let (true, Some(listener)) = (poll_listener, self.listener.as_ref()) {
            fds[polled] = PollFd::new(listener.as_fd(), PollFlags::POLLIN);
            polled += 1;
        }
        let listener_polled = polled > listener_at;
        let metrics_from = polled;
        if let Some(metrics) = self.metrics.as_ref() {
            polled += metrics.poll_fds(&mut fds[polled..]);
        }
        let fds = &mut fds[..polled];
        let mut ready = Ready {
            listener: false,
            signals: false,
            metrics: [false; MAX_POLL_FDS],
        };
        match ppoll(fds, timeout, None) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(ready),
            Err(err) => return Err(io::Error::from(err)),
        }
        let readable = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        ready.signals = signals_polled && readable(&fds[0]);
        ready.listener = listener_polled && readable(&fds[listener_at]);
        for (slot, fd) in ready.metrics.iter_mut().zip(&fds[metrics_from..]) {
            *slot = readable(fd);
        }
        Ok(ready)
    }

    /// Whether exited children wait to be reaped and their reap is due now.
    fn reap_is_due(&self, now: Instant) -> bool {
        self.books.reaping.is_due(now, self.paced_children())
    }

    /// The live children a reap is paced by: none once shutdown began, which waits for the
    /// table to empty and so reaps at once.
    fn paced_children(&self) -> usize {
        if self.phase == Phase::Running {
            self.books.children.len()
        } else {
            0
        }
    }

    /// When `--max-rate` allows the next session, if it does not allow one now.
    fn rate_ready_at(&mut self, now: Instant) -> Option<Instant> {
        if self.phase != Phase::Running {
            return None;
        }
        self.books.rate.as_mut()?.ready_at(now)
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
        if rate_spent && !self.books.was_rate_limited {
            self.books.stats.rate_limited += 1;
        }
        self.books.was_rate_limited = rate_spent;
        if rate_spent {
            return false;
        }
        let live = self.books.children.len();
        let full = live >= self.config.max_children;
        if self.config.at_limit == AtLimit::Wait {
            if full && !self.books.was_full {
                self.books.stats.limit_hits += 1;
                crate::log_at!(
                    log::DEBUG,
                    "{} live (--max-children): new clients wait in the backlog",
                    log::count(live, "child", "children")
                );
            }
            self.books.was_full = full;
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
                    self.books.stats.accepted += 1;
                    if self.config.at_limit == AtLimit::Close
                        && self.books.children.len() >= self.config.max_children
                    {
                        self.books.stats.limit_hits += 1;
                        crate::log_at!(
                            log::DEBUG,
                            "at --max-children: closed {} at once",
                            describe(peer)
                        );
                        drop(client);
                        continue;
                    }
                    if self.source_is_full(peer) {
                        self.books.stats.per_source_refused += 1;
                        crate::log_at!(
                            log::DEBUG,
                            "at --max-per-source: closed {} at once",
                            describe(peer)
                        );
                        drop(client);
                        continue;
                    }
                    if let Some(rate) = self.books.rate.as_mut() {
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
                        self.books.stats.emfile_pauses += 1;
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
            (Some(limit), Some(peer)) => self.books.children.live_from(peer) >= limit,
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

    /// Acts on every pending signal; returns whether a SIGCHLD was among them.
    fn handle_signals(&mut self) -> io::Result<bool> {
        let mut child_exited = false;
        for signal in self.signals.drain()?.iter() {
            match signal {
                Signal::SIGTERM | Signal::SIGINT => self.begin_shutdown(signal),
                Signal::SIGUSR1 => {
                    self.books.reap_children(Instant::now());
                    self.books.stats.print();
                }
                Signal::SIGCHLD => child_exited = true,
                _ => {}
            }
        }
        Ok(child_exited)
    }

    fn begin_shutdown(&mut self, signal: Signal) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                self.listener = None;
                let grace = self.config.shutdown_grace;
                let live = self.books.children.len();
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
            Phase::Draining { until } if now >= until && !self.books.children.is_empty() => {
                self.terminate_children(now);
            }
            Phase::Terminating { until } if now >= until && !self.books.children.is_empty() => {
                crate::log_at!(
                    log::INFO,
                    "{} outlived SIGTERM: SIGKILL",
                    log::count(self.books.children.len(), "child", "children")
                );
                self.books.children.signal_all(Signal::SIGKILL);
                // SIGKILL cannot be ignored, so this wait ends; run() then finds the table empty.
                let books = &mut *self.books;
                books.children.reap_all_blocking(&mut books.stats);
            }
            _ => {}
        }
    }

    fn terminate_children(&mut self, now: Instant) {
        if !self.books.children.is_empty() {
            crate::log_at!(
                log::INFO,
                "sending SIGTERM to {}",
                log::count(self.books.children.len(), "live child", "live children")
            );
            self.books.children.signal_all(Signal::SIGTERM);
        }
        self.phase = Phase::Terminating {
            until: now + KILL_AFTER,
        };
    }
}

fn describe(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown peer".to_owned(), |p| p.to_string())
}
