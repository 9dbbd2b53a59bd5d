//! One client's echo session, run inside the forked child. Every byte read is written back in
//! full before the next read (so a half-closed client still gets all of its bytes, then EOF), and
//! the way the session ended becomes the child's exit status for the parent's statistics.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
}

impl EchoSession {
    /// `idle_timeout` bounds both directions: a client that stops sending, and a client that
    /// stops reading (its receive window fills, our write blocks), are both ended.
    pub fn new(
        stream: TcpStream,
        buffer: Vec<u8>,
        idle_timeout: Option<Duration>,
    ) -> io::Result<EchoSession> {
        stream.set_read_timeout(idle_timeout)?;
        stream.set_write_timeout(idle_timeout)?;
        Ok(EchoSession { stream, buffer })
    }

    pub fn run(&mut self) -> SessionEnd {
        loop {
            let n = match self.stream.read(&mut self.buffer) {
                Ok(0) => return SessionEnd::Eof,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.ended_by(err, "read"),
            };
            if log::enabled(log::TRACE) {
                crate::log_at!(
                    log::TRACE,
                    "recv {} bytes: {}",
                    n,
                    payload_preview(&self.buffer[..n], 64)
                );
            }
            // write_all retries short writes and EINTR; a send that stays blocked for the idle
            // timeout comes back as WouldBlock.
            if let Err(err) = self.stream.write_all(&self.buffer[..n]) {
                return self.ended_by(err, "write");
            }
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
    fn io_errors_map_to_reasons() {
        let of = |kind| SessionEnd::from_io_error(&io::Error::from(kind));
        assert_eq!(of(io::ErrorKind::WouldBlock), SessionEnd::IdleTimeout);
        assert_eq!(of(io::ErrorKind::ConnectionReset), SessionEnd::Reset);
        assert_eq!(of(io::ErrorKind::BrokenPipe), SessionEnd::Reset);
        assert_eq!(of(io::ErrorKind::InvalidData), SessionEnd::IoError);
    }
}
