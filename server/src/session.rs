//! One client's echo session, run inside the forked child. Every byte read is written back in
//! full before the next read (so a half-closed client still gets all of its bytes, then EOF), and
//! the way the session ended becomes the child's exit status for the parent's statistics.
//!
//! Layers it may import: `log`.
//! Crates it may import: `libc`, `nix`, `socket2`.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::log::{self, payload_preview};

/// Why a session ended; the discriminant is the child's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum SessionEnd {
    /// The client closed its side and every byte went back.
    Eof = 0,
    /// ECONNRESET or EPIPE: the client went away abruptly. Normal for a network server.
    Reset = 3,
    /// Nothing read, or nothing could be written, for the idle timeout.
    IdleTimeout = 4,
    /// Any other I/O error.
    IoError = 5,
    /// The session code panicked (caught before it could unwind anywhere).
    Panic = 6,
    /// The parent was already gone when the child started.
    Orphaned = 7,
    /// Not an exit code: the child was killed by a signal.
    Signaled = -1,
}

impl SessionEnd {
    pub fn exit_code(self) -> i32 {
        self as i32
    }

    /// The name the access log and the stats line's `reaped` counters use.
    pub fn name(self) -> &'static str {
        match self {
            SessionEnd::Eof => "eof",
            SessionEnd::Reset => "reset",
            SessionEnd::IdleTimeout => "idle_timeout",
            SessionEnd::IoError => "io_error",
            SessionEnd::Panic => "panic",
            SessionEnd::Orphaned => "orphaned",
            SessionEnd::Signaled => "signaled",
        }
    }

    /// Every end that is a real exit code (all but `Signaled`).
    pub const EXIT_CODED: [SessionEnd; 6] = [
        SessionEnd::Eof,
        SessionEnd::Reset,
        SessionEnd::IdleTimeout,
        SessionEnd::IoError,
        SessionEnd::Panic,
        SessionEnd::Orphaned,
    ];

    pub fn from_exit_code(code: i32) -> Option<SessionEnd> {
        Self::EXIT_CODED
            .into_iter()
            .find(|end| end.exit_code() == code)
    }

    fn from_io_error(err: &io::Error) -> SessionEnd {
        match err.kind() {
            // SO_RCVTIMEO / SO_SNDTIMEO expired.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => SessionEnd::IdleTimeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => SessionEnd::Reset,
            _ => SessionEnd::IoError,
        }
    }
}

pub struct EchoSession {
    stream: TcpStream,
    buffer: Vec<u8>,
    idle_timeout: Option<Duration>,
    /// What the access log reports; byte counts are kept even when it is off (two additions
    /// per echo cost nothing next to the syscalls).
    bytes_in: u64,
    bytes_out: u64,
    started: Instant,
    /// Only looked up when the access log is on: after a reset `getpeername` fails, so it is
    /// read at the start, and without `-v` the child saves the syscall.
    peer: Option<SocketAddr>,
}

/// The peer as the access log prints it.
struct PeerField(Option<SocketAddr>);

impl std::fmt::Display for PeerField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(peer) => write!(f, "{peer}"),
            None => f.write_str("unknown"),
        }
    }
}

impl EchoSession {
    /// `idle_timeout` bounds both directions as a deadline on progress: the session ends once no
    /// byte has arrived from the client (while reading), or no byte of the echo could be handed
    /// to the kernel (while writing: the client stopped reading and the buffers are full), for
    /// that long. Reads use SO_RCVTIMEO, which already restarts only when data arrives. Writes
    /// do not use SO_SNDTIMEO: a send that copies some bytes and then blocks returns only when
    /// its timer expires, and the retry gets a fresh one, so a stalled client could hold the
    /// child for up to twice the timeout.
    pub fn new(
        stream: TcpStream,
        buffer: Vec<u8>,
        idle_timeout: Option<Duration>,
    ) -> io::Result<EchoSession> {
        stream.set_read_timeout(idle_timeout)?;
        let peer = if log::enabled(log::DEBUG) {
            stream.peer_addr().ok()
        } else {
            None
        };
        Ok(EchoSession {
            stream,
            buffer,
            idle_timeout,
            bytes_in: 0,
            bytes_out: 0,
            started: Instant::now(),
            peer,
        })
    }

    /// Echoes until the session ends; at `-v` then writes its access-log line (one `write`, far
    /// below PIPE_BUF, so lines of concurrent children never interleave on a shared pipe).
    pub fn run(&mut self) -> SessionEnd {
        let end = self.echo_until_end();
        if log::enabled(log::DEBUG) {
            self.log_access(end);
        }
        end
    }

    /// Formatted without the heap (see `log::write_line`): the JSON is written by hand, which is
    /// safe because no field needs escaping (an IP:port, numbers, and fixed end names).
    fn log_access(&self, end: SessionEnd) {
        let peer = PeerField(self.peer);
        let pid = std::process::id();
        let duration = self.started.elapsed().as_secs_f64();
        if log::access_log_json() {
            log::write_line(format_args!(
                "{{\"event\":\"session\",\"peer\":\"{peer}\",\"pid\":{pid},\"duration_s\":{duration:.6},\"bytes_in\":{},\"bytes_out\":{},\"end\":\"{}\"}}",
                self.bytes_in,
                self.bytes_out,
                end.name()
            ));
        } else {
            log::write_line(format_args!(
                "fork-echo-server[{pid}]: event=session peer={peer} pid={pid} duration={duration:.6}s bytes_in={} bytes_out={} end={}",
                self.bytes_in,
                self.bytes_out,
                end.name()
            ));
        }
    }

    fn echo_until_end(&mut self) -> SessionEnd {
        loop {
            let n = match self.stream.read(&mut self.buffer) {
                Ok(0) => return SessionEnd::Eof,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.ended_by(err, "read"),
            };
            self.bytes_in += n as u64;
            if log::enabled(log::TRACE) {
                crate::log_at!(
                    log::TRACE,
                    "recv {} bytes: {}",
                    n,
                    payload_preview(&self.buffer[..n], 64)
                );
            }
            if let Err(err) = self.echo(n) {
                return self.ended_by(err, "write");
            }
        }
    }

    /// Writes `buffer[..len]` in full. Non-blocking sends, and `poll` for room only when the
    /// socket is full, with the idle deadline counted from the last send that moved a byte;
    /// when everything fits (the common case) this is one `send`, as a blocking write would be.
    fn echo(&mut self, len: usize) -> io::Result<()> {
        let socket = socket2::SockRef::from(&self.stream);
        let mut sent = 0;
        let mut deadline = self.idle_timeout.map(|t| Instant::now() + t);
        while sent < len {
            match socket.send_with_flags(
                &self.buffer[sent..len],
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    sent += n;
                    self.bytes_out += n as u64;
                    deadline = self.idle_timeout.map(|t| Instant::now() + t);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_writable(deadline)?
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Waits until the socket takes more bytes (or has an error, which the next send reports);
    /// `TimedOut` once the deadline passes.
    fn wait_writable(&self, deadline: Option<Instant>) -> io::Result<()> {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                // Rounded up: a wake-up a hair early would only poll again.
                PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, timeout) {
            Ok(0) => Err(io::ErrorKind::TimedOut.into()),
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    fn ended_by(&self, err: io::Error, op: &str) -> SessionEnd {
        let end = SessionEnd::from_io_error(&err);
        let level = if end == SessionEnd::IoError {
            log::INFO
        } else {
            log::DEBUG
        };
        crate::log_at!(level, "session {op} ended it: {err} ({end:?})");
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_round_trip() {
        for end in SessionEnd::EXIT_CODED {
            assert_eq!(SessionEnd::from_exit_code(end.exit_code()), Some(end));
        }
        assert_eq!(SessionEnd::from_exit_code(1), None);
    }

    #[test]
    fn end_names_match_the_stats_counters() {
        let counters = serde_json::to_value(crate::stats::ReapedByReason::default()).unwrap();
        for end in SessionEnd::EXIT_CODED
            .into_iter()
            .chain([SessionEnd::Signaled])
        {
            assert!(counters.get(end.name()).is_some(), "{end:?}");
        }
    }

    #[test]
    fn io_errors_map_to_reasons() {
        let of = |kind| SessionEnd::from_io_error(&io::Error::from(kind));
        assert_eq!(of(io::ErrorKind::WouldBlock), SessionEnd::IdleTimeout);
        assert_eq!(of(io::ErrorKind::ConnectionReset), SessionEnd::Reset);
        assert_eq!(of(io::ErrorKind::BrokenPipe), SessionEnd::Reset);
        assert_eq!(of(io::ErrorKind::InvalidData), SessionEnd::IoError);
    }
}
