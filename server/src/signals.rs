//! The signal source of the event loop: SIGCHLD, SIGTERM, SIGINT and SIGUSR1 are blocked and read
//! from a signalfd that is polled beside the listener. Signal handlers would have to be
//! async-signal-safe and std's `accept` silently retries EINTR, so a blocking accept would never
//! notice a signal; a readable fd in the same `poll` has neither problem.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals the parent handles through the fd.
const HANDLED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
];

pub struct SignalSource {
    fd: SignalFd,
    /// The mask in force before the server blocked its signals; children restore it so a session
    /// can be ended by an ordinary SIGTERM.
    original_mask: SigSet,
}

impl SignalSource {
    /// Blocks the handled signals for this (single-threaded) process and opens the signalfd.
    pub fn install() -> nix::Result<SignalSource> {
        let mut set = SigSet::empty();
        for signal in HANDLED {
            set.add(signal);
        }
        let mut original_mask = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut original_mask))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalSource { fd, original_mask })
    }

    /// Reads every pending signal (several SIGCHLDs collapse into one; the reaper loops anyway).
    pub fn drain(&mut self) -> nix::Result<Vec<Signal>> {
        let mut signals = Vec::new();
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        signals.push(signal);
                    }
                }
                Ok(None) => return Ok(signals),
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// The mask the process had before `install`, for children to restore.
    pub fn original_mask(&self) -> SigSet {
        self.original_mask
    }
}

impl AsFd for SignalSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
