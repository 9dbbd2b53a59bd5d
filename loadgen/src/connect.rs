//! Opening one client connection: optional source address (bound without a port so the kernel
//! picks the port per destination, which is what lifts the ~28k ports-per-source-IP ceiling),
//! the connect timeout, and classifying connect failures by kind.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

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
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(fail)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket).map_err(fail)?;
        socket.bind(SocketAddr::new(ip, 0)).map_err(fail)?;
    }
    let stream = match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(e)),
        Err(_) => {
            return Err((
                ConnectFailure::Timeout,
                format!(
                    "no connection within {}",
                    humantime::format_duration(timeout)
                ),
            ))
        }
    };
    stream.set_nodelay(true).map_err(fail)?;
    Ok(stream)
}

/// IP_BIND_ADDRESS_NO_PORT: bind the address now but choose the port at connect time, per
/// destination, instead of reserving one port for good at bind time.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
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
fn bind_address_no_port(_socket: &TcpSocket) -> io::Result<()> {
    Ok(())
}
