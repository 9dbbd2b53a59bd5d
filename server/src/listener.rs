//! Binding the listening socket, or taking the one systemd (or `systemd-socket-activate`) passed
//! by socket activation. Close-on-exec and non-blocking from the start: the accept loop drains
//! the queue until `EAGAIN`, and a poll wake-up must never turn into a blocking `accept` that
//! keeps SIGCHLD and SIGTERM waiting.
//!
//! Layers it may import: none.
//! Crates it may import: `libc`, `rustix`, `socket2`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A bound, listening TCP socket and the address it really got (port 0 resolved).
pub struct Listener {
    socket: Socket,
    local_addr: SocketAddr,
    /// The backlog the kernel applies: the requested one capped at `net.core.somaxconn`
    /// (0 when unknown: a socket passed by socket activation).
    pub effective_backlog: i32,
    /// `net.core.somaxconn` when it could be read.
    pub somaxconn: Option<i32>,
    /// Passed in by socket activation: address and backlog were chosen by whoever passed it.
    pub activated: bool,
}

/// The first descriptor passed by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Why a socket passed by socket activation cannot be used; printed as one line.
#[derive(Debug)]
pub struct ActivationError(String);

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket activation: {}", self.0)
    }
}

impl std::error::Error for ActivationError {}

/// Why the server could not start listening; printed as one line naming the address.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub step: &'static str,
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.source.raw_os_error() {
            Some(libc::EADDRINUSE) => {
                " (another process holds the port; pick another with --port, or --port 0)"
            }
            Some(libc::EACCES) => " (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
            Some(libc::EADDRNOTAVAIL) => " (no interface on this host has that address)",
            _ => "",
        };
        write!(
            f,
            "cannot listen on {}: {} failed: {}{}",
            self.addr, self.step, self.source, hint
        )
    }
}

impl std::error::Error for BindError {}

impl Listener {
    pub fn bind(addr: SocketAddr, backlog: i32) -> Result<Listener, BindError> {
        let fail = |step| move |source| BindError { addr, step, source };
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )
        .map_err(fail("socket"))?;
        // A restarted server must not wait out TIME_WAIT connections of its previous life.
        socket
            .set_reuse_address(true)
            .map_err(fail("setsockopt(SO_REUSEADDR)"))?;
        if addr.is_ipv6() {
            // `::` should take IPv4 clients too, whatever net.ipv6.bindv6only says.
            socket
                .set_only_v6(false)
                .map_err(fail("setsockopt(IPV6_V6ONLY)"))?;
        }
        socket.bind(&addr.into()).map_err(fail("bind"))?;
        socket.listen(backlog).map_err(fail("listen"))?;
        let local_addr = socket
            .local_addr()
            .map_err(fail("getsockname"))?
            .as_socket()
            .ok_or_else(|| BindError {
                addr,
                step: "getsockname",
                source: io::Error::other("not an IP socket address"),
            })?;
        let somaxconn = somaxconn();
        let effective_backlog = match somaxconn {
            Some(cap) => backlog.min(cap),
            None => backlog,
        };
        Ok(Listener {
            socket,
            local_addr,
            effective_backlog,
            somaxconn,
            activated: false,
        })
    }

    /// The listening socket passed by socket activation, when `LISTEN_PID` names this process
    /// (the systemd protocol: `LISTEN_FDS` sockets from fd 3 on); `Ok(None)` when the variables
    /// are absent or meant for another process. The variables are removed, as `sd_listen_fds`
    /// does, so nothing started later mistakes them for its own.
    pub fn from_socket_activation() -> Result<Option<Listener>, ActivationError> {
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| pid == std::process::id());
        if !for_us {
            return Ok(None);
        }
        let count = std::env::var("LISTEN_FDS").unwrap_or_default();
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
        let fail = |what: String| ActivationError(what);
        match count.trim().parse::<u32>() {
            Ok(1) => {}
            Ok(n) => {
                return Err(fail(format!(
                    "LISTEN_FDS={n}, but this server serves exactly one listening socket"
                )))
            }
            Err(_) => return Err(fail(format!("LISTEN_FDS={count:?} is not a number"))),
        }
        // Refused before taking ownership: an OwnedFd must never stand for a closed descriptor.
        let is_socket = std::fs::read_link(format!("/proc/self/fd/{LISTEN_FDS_START}"))
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            return Err(fail(format!("fd {LISTEN_FDS_START} is not an open socket")));
        }
        // SAFETY: LISTEN_PID names this process, so by the socket-activation protocol fd 3 was
        // opened by whoever exec'd us and handed over to this process alone; nothing in this
        // program opened it, and this runs once at start-up (the variables are gone now). The
        // checks below refuse anything but a listening TCP socket.
        let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
        let socket = Socket::from(fd);
        let stream = socket.r#type().is_ok_and(|kind| kind == Type::STREAM);
        let listening = socket.is_listener().unwrap_or(false);
        let local_addr = socket.local_addr().ok().and_then(|a| a.as_socket());
        let Some(local_addr) = local_addr.filter(|_| stream && listening) else {
            return Err(fail(format!(
                "fd {LISTEN_FDS_START} is not a listening TCP socket (use ListenStream= with Accept=no)"
            )));
        };
        socket
            .set_nonblocking(true)
            .and_then(|()| socket.set_cloexec(true))
            .map_err(|err| fail(format!("fcntl on fd {LISTEN_FDS_START}: {err}")))?;
        Ok(Some(Listener {
            socket,
            local_addr,
            effective_backlog: 0,
            somaxconn: somaxconn(),
            activated: true,
        }))
    }

    /// The start-up line's account of the backlog: the cap is named only when it applies.
    pub fn describe_backlog(&self, requested: i32) -> String {
        if self.activated {
            return format!(
                "using the listening socket passed by socket activation (LISTEN_FDS), not \
                 --bind/--port/--backlog (backlog {requested} not applied)"
            );
        }
        match self.somaxconn {
            Some(cap) if cap < requested => format!(
                "listen backlog {requested} requested, {} effective (net.core.somaxconn is {cap})",
                self.effective_backlog
            ),
            Some(cap) => format!("listen backlog {requested} (net.core.somaxconn {cap} allows it)"),
            None => format!("listen backlog {requested} (net.core.somaxconn unknown)"),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// One non-blocking accept. The accepted socket is blocking (Linux does not inherit
    /// O_NONBLOCK) and close-on-exec.
    ///
    /// A direct system call (rustix), not libc's `accept4`: every accept batch ends in EAGAIN,
    /// and libc stores that in `errno`, a thread-local on a page every live child shares
    /// copy-on-write; writing it after a fork costs a fault and leaves each child forked before
    /// with a private copy of that page. rustix returns the error without touching `errno`.
    pub fn accept(&self) -> io::Result<(Socket, Option<SocketAddr>)> {
        let (fd, peer) =
            rustix::net::acceptfrom_with(&self.socket, rustix::net::SocketFlags::CLOEXEC)?;
        Ok((
            Socket::from(fd),
            peer.and_then(|peer| SocketAddr::try_from(peer).ok()),
        ))
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn somaxconn() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}
