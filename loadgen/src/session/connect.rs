//! Opening one client connection: optional source address (bound without a port so the kernel
//! picks the port per destination, which is what lifts the ~28k ports-per-source-IP ceiling),
//! the connect timeout, and classifying connect failures by kind.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::session::read_delay;
use crate::session::shared::{micros, RunShared};

/// Why a connect failed, as counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    Refused,
    Timeout,
    Reset,
    AddressNotAvailable,
    Other,
}

impl ConnectFailure {
    pub fn name(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Reset => "reset",
            ConnectFailure::AddressNotAvailable => "address_not_available",
            ConnectFailure::Other => "other",
        }
    }

    pub fn classify(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => {
                return ConnectFailure::AddressNotAvailable
            }
            Some(libc::ETIMEDOUT) => return ConnectFailure::Timeout,
            _ => {}
        }
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ConnectFailure::Reset
            }
            io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => {
                ConnectFailure::AddressNotAvailable
            }
            _ => ConnectFailure::Other,
        }
    }
}

/// Connects to `addr`, from `source` if given, within `timeout`; sets TCP_NODELAY.
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, (ConnectFailure, String)> {
    let fail = |e: io::Error| (ConnectFailure::classify(&e), e.to_string());
    let socket = client_socket(addr, source).map_err(fail)?;
    let stream = match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(e)),
        Err(_) => return Err((ConnectFailure::Timeout, no_connection_within(timeout))),
    };
    stream.set_nodelay(true).map_err(fail)?;
    read_delay::enable(&stream).map_err(fail)?;
    Ok(stream)
}

/// A socket for `addr`, bound to `source` (address only, port chosen at connect) if given.
fn client_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(ip) = source {
        bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket)
}

/// The threads engine's connect: a blocking socket to `addr`, from `source` if given, within
/// `timeout`, with TCP_NODELAY and reads that give up after `read_timeout`. Waits in slices of
/// `tick` so that `stopped` (Ctrl-C, the run deadline) is noticed: `Ok(None)` when it was.
pub(crate) fn connect_blocking(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    tick: Duration,
    read_timeout: Duration,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<socket2::Socket>, (ConnectFailure, String)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let fail = |e: io::Error| (ConnectFailure::classify(&e), e.to_string());
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(fail)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket).map_err(fail)?;
        socket.bind(&SocketAddr::new(ip, 0).into()).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let deadline = Instant::now() + timeout;
            loop {
                if stopped() {
                    return Ok(None);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err((ConnectFailure::Timeout, no_connection_within(timeout)));
                }
                let ms = left.min(tick).as_millis().clamp(1, u16::MAX as u128) as u16;
                let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                    Ok(_) => break,
                    Err(e) => return Err(fail(e.into())),
                }
            }
            if let Some(e) = socket.take_error().map_err(fail)? {
                return Err(fail(e));
            }
        }
        Err(e) => return Err(fail(e)),
    }
    socket.set_nonblocking(false).map_err(fail)?;
    socket.set_tcp_nodelay(true).map_err(fail)?;
    socket.set_read_timeout(Some(read_timeout)).map_err(fail)?;
    read_delay::enable(&socket).map_err(fail)?;
    Ok(Some(socket))
}

fn no_connection_within(timeout: Duration) -> String {
    format!(
        "no connection within {}",
        humantime::format_duration(timeout)
    )
}

/// IP_BIND_ADDRESS_NO_PORT: bind the address now but choose the port at connect time, per
/// destination, instead of reserving one port for good at bind time.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a correctly sized int option value.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    Ok(())
}

/// Counts a connect that began at `connect_start` and ended now with `result`; returns the
/// stream if it was established.
pub(crate) fn count_connect<T>(
    shared: &RunShared,
    connect_start: Instant,
    result: Result<T, (ConnectFailure, String)>,
) -> Option<T> {
    let now = Instant::now();
    let second = now.duration_since(shared.t0).as_secs();
    let mut shard = shared.stats.local();
    match result {
        Err((kind, message)) => {
            shard.counters.connections_failed += 1;
            let c = &mut shard.errors.connect;
            match kind {
                ConnectFailure::Refused => c.refused += 1,
                ConnectFailure::Timeout => c.timeout += 1,
                ConnectFailure::Reset => c.reset += 1,
                ConnectFailure::AddressNotAvailable => c.address_not_available += 1,
                ConnectFailure::Other => c.other += 1,
            }
            shard
                .errors
                .examples
                .entry(format!("connect.{}", kind.name()))
                .or_insert(message);
            shard.second(second).errors += 1;
            None
        }
        Ok(stream) => {
            shard.counters.connections_established += 1;
            let at_us = micros(now.duration_since(shared.t0));
            shard.record_connect(at_us, micros(now.duration_since(connect_start)));
            shard.second(second).established += 1;
            Some(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn source_bound_sockets_defer_the_port_to_connect() {
        use std::os::fd::AsRawFd;
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let socket = client_socket(target, Some("127.0.0.2".parse().unwrap())).unwrap();
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reading an int option into a correctly sized buffer.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(value, 1, "IP_BIND_ADDRESS_NO_PORT is set");
        // The address is bound; the port is not reserved until connect.
        let local = socket.local_addr().unwrap();
        assert_eq!(local.ip().to_string(), "127.0.0.2");
        assert_eq!(local.port(), 0);
        // Without a source address nothing is bound.
        let plain = client_socket(target, None).unwrap();
        assert_eq!(plain.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn connect_errors_are_classified_by_kind() {
        let os = io::Error::from_raw_os_error;
        let cases = [
            (os(libc::ECONNREFUSED), ConnectFailure::Refused),
            (os(libc::ETIMEDOUT), ConnectFailure::Timeout),
            (os(libc::ECONNRESET), ConnectFailure::Reset),
            (os(libc::EADDRNOTAVAIL), ConnectFailure::AddressNotAvailable),
            (os(libc::EADDRINUSE), ConnectFailure::AddressNotAvailable),
            (os(libc::ENETUNREACH), ConnectFailure::Other),
        ];
        for (e, want) in cases {
            assert_eq!(ConnectFailure::classify(&e), want, "{e}");
        }
    }
}
