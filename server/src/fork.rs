//! `fork()` and the child's side of it. Apart from two start-up calls (`signals.rs` resets signal
//! dispositions, `listener.rs` adopts a socket-activation fd) and `parent_only.rs` (a value placed
//! in memory the children do not inherit) this is the only module with `unsafe`: the fork itself,
//! and `_exit`, which std does not offer. The child never returns into the parent's accept loop:
//! `run_child` ends the process with `_exit`, so destructors, atexit handlers and buffered stdout
//! that belong to the parent never run a second time in the child.
//!
//! Layers it may import: `log`, `session`.
//! Crates it may import: `libc`, `nix`, `rustix`, `socket2`.

use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{getppid, ForkResult, Pid};

use crate::session::{EchoSession, SessionEnd};

pub enum Forked {
    Parent(Pid),
    Child,
}

/// Forks the calling process.
pub fn fork_process() -> Result<Forked, Errno> {
    // SAFETY: the server process is single-threaded (no tokio, no helper threads, and the harness
    // calls `main_with_args` before it starts any), so the child cannot inherit a lock held by
    // another thread. The child only closes descriptors, adjusts its own signal mask and runs
    // the echo session, then leaves with `_exit` (see `run_child`).
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// What the child needs from the parent, owned so that dropping it closes what must be closed.
pub struct ChildStart {
    pub client: socket2::Socket,
    pub parent_pid: Pid,
    pub original_mask: SigSet,
    pub echo_buffer: Vec<u8>,
    pub idle_timeout: Option<Duration>,
    /// Added to the child's nice value before anything else (`--child-nice`).
    pub child_nice: u8,
}

/// The child's whole life. The caller has already dropped (closed) the listener and the signal
/// fd, so the child holds exactly one socket: its client's.
pub fn run_child(start: ChildStart) -> ! {
    let end = catch_unwind(AssertUnwindSafe(|| child_session(start))).unwrap_or(SessionEnd::Panic);
    exit_now(end.exit_code())
}

fn child_session(start: ChildStart) -> SessionEnd {
    // First, so the child's own start-up already runs behind the parent: during a connect burst
    // the parent is one runnable process among thousands of children, and under a fair scheduler
    // its share of the CPU (and so the accept rate) would collapse exactly when it has the most
    // to do. Relative to the parent's value, so it only ever lowers priority and needs no
    // privilege; the kernel caps it at 19.
    if start.child_nice > 0 {
        if let Err(err) = rustix::process::nice(i32::from(start.child_nice)) {
            crate::log_at!(
                crate::log::INFO,
                "child could not lower its priority (nice +{}): {err}",
                start.child_nice
            );
        }
    }
    // The parent blocks SIGTERM/SIGCHLD/SIGUSR1 for its signalfd; the child must die of an
    // ordinary SIGTERM again. SIGINT stays blocked: a Ctrl-C in a terminal reaches the whole
    // foreground process group, and whether live sessions get their grace period is the
    // parent's decision, not the terminal's.
    let mut mask = start.original_mask;
    mask.add(Signal::SIGINT);
    if let Err(err) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None) {
        crate::log_at!(
            crate::log::INFO,
            "child could not restore its signal mask: {err}"
        );
    }
    // Dies with the parent, even a SIGKILLed one. The parent may have died between fork and
    // prctl, in which case the death signal was never armed: getppid() tells.
    if let Err(err) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        crate::log_at!(
            crate::log::INFO,
            "child could not set PR_SET_PDEATHSIG: {err}"
        );
    }
    if getppid() != start.parent_pid {
        return SessionEnd::Orphaned;
    }
    let stream = TcpStream::from(start.client);
    match EchoSession::new(stream, start.echo_buffer, start.idle_timeout) {
        Ok(mut session) => session.run(),
        Err(err) => {
            crate::log_at!(crate::log::INFO, "child could not set up its socket: {err}");
            SessionEnd::IoError
        }
    }
}

fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it ends the process without running the parent's
    // atexit handlers or flushing stdio buffers the child inherited (the reason to avoid
    // `std::process::exit` here).
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// `run_child` counts a panicking session as `SessionEnd::Panic` by unwinding to its
    /// `catch_unwind`. This crate links the unwinder statically (`build.rs`, no libgcc_s): a
    /// panic must still unwind to the catch, not abort the process.
    #[test]
    fn a_panic_unwinds_to_the_catch_with_the_static_unwinder() {
        let caught = catch_unwind(AssertUnwindSafe(|| -> u8 { panic!("a session bug") }));
        assert!(caught.is_err());
    }
}
