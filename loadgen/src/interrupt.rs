//! Ctrl-C as wrk and k6 treat it: the first one stops the load (sessions are cut off, the summary
//! of what ran is printed and the report is written, marked `interrupted`); a second one quits at
//! once. The flag is process-wide so that the harness, which runs loadgen in-process, shares it:
//! its first Ctrl-C stops a load (or the checks) the same way.
//!
//! A leaf.
//!
//! Layers it may import: none.
//! Crates it may import: `tokio`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set by the first Ctrl-C (or [`request`]); runs started afterwards stop at once. Never cleared:
/// an interrupted process finishes what it was doing and exits.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks the running load (and any later one) to stop as after a first Ctrl-C.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Catches SIGINT on a thread of its own: the first one calls [`request`] and says so on stderr
/// as `program`; the second calls `on_second` (the harness kills its servers there) and exits
/// with 130, the shell's code for SIGINT. Without this handler Ctrl-C kills the process with
/// nothing printed. Installing it twice is harmless (the second call does nothing).
pub fn install_ctrl_c_handler(program: &'static str, on_second: fn()) {
    static INSTALLED: AtomicUsize = AtomicUsize::new(0);
    if INSTALLED.fetch_add(1, Ordering::SeqCst) > 0 {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(_) => return,
    };
    // Register now, not on the thread, so a Ctrl-C right after this call is already caught.
    let mut sigint = match runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    }) {
        Ok(s) => s,
        Err(_) => return,
    };
    let _ = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            runtime.block_on(async move {
                sigint.recv().await;
                request();
                eprintln!(
                    "\n{program}: interrupted; stopping and writing what ran (Ctrl-C again to quit)"
                );
                sigint.recv().await;
                on_second();
                eprintln!("{program}: interrupted twice; quitting");
                std::process::exit(130);
            });
        });
}
