//! Binding the listening socket. Close-on-exec and non-blocking from the start: the accept loop
//! drains the queue until `EAGAIN`, and a poll wake-up must never turn into a blocking `accept`
//! that keeps SIGCHLD and SIGTERM waiting.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A bound, listening TCP socket and the address it really got (port 0 resolved).
pub struct Listener {
    socket: Socket,
    local_addr: SocketAddr,
    /// The backlog the kernel applies: the requested one capped at `net.core.somaxconn`.
    pub effective_backlog: i32,
    /// `net.core.somaxconn` when it could be read.
    pub somaxconn: Option<i32>,
}

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
        })
    }

    /// The start-up line's account of the backlog: the cap is named only when it applies.
    pub fn describe_backlog(&self, requested: i32) -> String {
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
    pub fn accept(&self) -> io::Result<(Socket, Option<SocketAddr>)> {
        let (socket, peer) = self.socket.accept()?;
        Ok((socket, peer.as_socket()))
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
