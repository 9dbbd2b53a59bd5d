//! A fork-per-connection TCP echo server, done right: one `fork()`ed child per client (the
//! tutorial's model), but the parent closes its copy of each client socket, reaps every child,
//! bounds how many live at once, and on SIGTERM drains, terminates and reaps them all so no
//! zombie or orphan outlives it.
//!
//! `main_with_args` is the whole program (the binary and the harness's hidden `__serve`
//! subcommand both call it); `Server` takes an already bound `Listener` and `SignalSource`, so
//! callers choose the address and tests bind port 0.
//!
//! Every module's `//!` header ends with the layers (modules) and crates it may import;
//! `ci/layers.py` fails CI on an import outside them and on any loop between modules. Top to
//! bottom: `server` (the event loop) over `child_table`, `fork`, `config`, `listener`, `signals`;
//! `metrics` (`--metrics-file`, `--metrics-addr`) beside the loop, under `server` and
//! `child_table`; those over `stats`, `session`, `limits`; `log` at the bottom.

pub mod child_table;
pub mod config;
pub mod fork;
pub mod limits;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod page_top;
pub mod parent_only;
pub mod pid_set;
pub mod reap_pacing;
pub mod server;
pub mod session;
pub mod signals;
pub mod stats;

use std::ffi::OsString;
use std::io::Write;

pub use config::{AtLimit, Config};
pub use listener::Listener;
pub use server::Server;
pub use signals::SignalSource;
pub use stats::Stats;

/// Exit code for usage and start-up errors.
pub const EXIT_SETUP: i32 = 2;

/// Runs the server with a command line (`args[0]` is the program name) and returns the process
/// exit code. Call it only while the process is single-threaded: it forks.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(err) => {
            // --help and --version land here too, with exit code 0.
            let _ = err.print();
            return err.exit_code();
        }
    };
    log::set_level(config.log_level);
    log::set_access_log_json(config.log_format == config::LogFormat::Json);
    match run(config) {
        Ok(mut stats) => {
            stats.print();
            0
        }
        Err(message) => {
            log::write_line(format_args!("fork-echo-server: {message}"));
            EXIT_SETUP
        }
    }
}

/// Binds (or takes the socket passed by socket activation), announces the address on stdout,
/// and serves until shut down.
pub fn run(config: Config) -> Result<Stats, String> {
    let listener = match Listener::from_socket_activation().map_err(|err| err.to_string())? {
        Some(listener) => listener,
        None => Listener::bind(config.addr, config.backlog).map_err(|err| err.to_string())?,
    };
    let signals =
        SignalSource::install().map_err(|err| format!("cannot set up signal handling: {err}"))?;
    let local = listener.local_addr();
    let metrics = metrics::Metrics::start(&config.metrics, &Stats::new())?;
    log_at!(
        log::INFO,
        "{}; at most {}",
        listener.describe_backlog(config.backlog),
        log::count(config.max_children, "child", "children")
    );
    if let Some(addr) = metrics.as_ref().and_then(metrics::Metrics::local_addr) {
        log_at!(log::INFO, "metrics at http://{addr}/metrics");
    }
    announce(local).map_err(|err| format!("cannot write to stdout: {err}"))?;
    let server = Server::new(config, listener, signals)
        .map_err(|err| format!("cannot map the child table: {err}"))?
        .with_metrics(metrics);
    page_top::at_page_top(|| server.run()).map_err(|err| format!("event loop failed: {err}"))
}

/// The contract the harness and tests rely on: the first stdout line, flushed at once, before
/// any child exists (so no child inherits unflushed output).
fn announce(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()
}
