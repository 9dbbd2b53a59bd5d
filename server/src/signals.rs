//! The signal source of the event loop: SIGCHLD, SIGTERM, SIGINT and SIGUSR1 are blocked and read
//! from a signalfd that is polled beside the listener. Signal handlers would have to be
//! async-signal-safe and std's `accept` silently retries EINTR, so a blocking accept would never
//! notice a signal; a readable fd in the same `poll` has neither problem.
//!
//! Layers it may import: none.
//! Crates it may import: `nix`.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals the parent handles through the fd.
const HANDLED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
];

/// Handled signals whose disposition is reset to the default at start-up. An ignored disposition
/// survives `exec`, and an ignored signal is discarded even while blocked, so it would never
/// reach the signalfd; an ignored SIGCHLD is worse still: the kernel then reaps the children
/// itself and `waitpid` only ever answers "no children". SIGINT keeps an inherited SIG_IGN: that
/// is how a shell runs a background job that Ctrl-C must not stop.
const RESET_TO_DEFAULT: [Signal; 3] = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGUSR1];

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
        // Blocked first, so a signal landing between the two steps waits instead of acting.
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        for signal in RESET_TO_DEFAULT {
            // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context;
            // the process is single-threaded here (see `fork::fork_process`).
            unsafe { nix::sys::signal::sigaction(signal, &default) }?;
        }
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalSource { fd, original_mask })
    }

    /// Reads every pending signal (several SIGCHLDs collapse into one; the reaper loops anyway).
    pub fn drain(&mut self) -> nix::Result<Received> {
        let mut signals = Received::default();
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        signals.insert(signal);
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

/// The handled signals read by one `drain`, as a set: standard signals do not queue, so a set
/// loses nothing. A bit mask rather than a `Vec`, because the parent should not touch the heap
/// between forks: every heap page it writes (malloc's own bookkeeping included) becomes a
/// private copy in each child forked before the write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received(u8);

impl Received {
    fn insert(&mut self, signal: Signal) {
        if let Some(bit) = HANDLED.iter().position(|&handled| handled == signal) {
            self.0 |= 1 << bit;
        }
    }

    /// The signals received, in `HANDLED` order.
    pub fn iter(self) -> impl Iterator<Item = Signal> {
        HANDLED
            .into_iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, signal)| signal)
    }
}

impl AsFd for SignalSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_is_a_set_of_the_handled_signals() {
        let mut received = Received::default();
        received.insert(Signal::SIGUSR1);
        received.insert(Signal::SIGTERM);
        received.insert(Signal::SIGTERM);
        received.insert(Signal::SIGHUP);
        let got: Vec<Signal> = received.iter().collect();
        assert_eq!(got, [Signal::SIGTERM, Signal::SIGUSR1]);
    }
}
