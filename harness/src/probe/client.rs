//! Blocking loopback clients for the checks: connect with a timeout, send, read back and compare.
//! Plain std sockets with read/write timeouts are enough here (the load phase uses `loadgen`); every
//! failure comes back as a one-line description, never a panic.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Per-operation timeout of check clients.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

/// Reads exactly `len` bytes.
pub fn read_n(stream: &mut TcpStream, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(format!("server closed after {got} of {len} bytes")),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                return Err(format!("timed out after {got} of {len} bytes"))
            }
            Err(e) => return Err(format!("read after {got} of {len} bytes: {e}")),
        }
    }
    Ok(buf)
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Where `got` first differs from `want`, described.
pub fn compare(want: &[u8], got: &[u8]) -> Result<(), String> {
    if want == got {
        return Ok(());
    }
    let offset = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    Err(format!(
        "echo differs at byte {offset} of {} (sent {:?}, got {:?})",
        want.len(),
        want.get(offset),
        got.get(offset)
    ))
}

/// Sends `payload` and checks that exactly it comes back.
pub fn echo(stream: &mut TcpStream, payload: &[u8]) -> Result<(), String> {
    stream
        .write_all(payload)
        .map_err(|e| format!("write {} bytes: {e}", payload.len()))?;
    let got = read_n(stream, payload.len())?;
    compare(payload, &got)
}

/// Connect, one echo of `payload`, close.
pub fn round_trip(addr: SocketAddr, payload: &[u8]) -> Result<(), String> {
    let mut stream = connect(addr)?;
    echo(&mut stream, payload)
}

/// Closes with SO_LINGER 0, so the peer sees a reset instead of a FIN.
pub fn close_with_reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Writes `payload`, shuts down the write side, and reads everything until EOF.
pub fn half_close(addr: SocketAddr, payload: &[u8]) -> Result<(), String> {
    let mut stream = connect(addr)?;
    stream
        .write_all(payload)
        .map_err(|e| format!("write: {e}"))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown(SHUT_WR): {e}"))?;
    let mut got = Vec::with_capacity(payload.len());
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "no EOF within {}s after half-close ({} of {} bytes back)",
                    IO_TIMEOUT.as_secs(),
                    got.len(),
                    payload.len()
                ))
            }
            Err(e) => return Err(format!("read after half-close: {e}")),
        }
    }
    compare(payload, &got)
}

/// A deterministic payload of `len` bytes for client `id`, so a client that got another's bytes is caught.
pub fn payload_for(id: usize, len: usize) -> Vec<u8> {
    let tag = format!("client-{id:06}:");
    tag.bytes().cycle().take(len).collect()
}
