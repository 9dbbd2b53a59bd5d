//! `harness proxy`: the fault proxy on its own, in front of any loopback echo server, for a
//! client of the user's choosing (`loadgen`, `nc`, a browser). Prints `listening on IP:PORT` like
//! the servers do, runs until Ctrl-C, SIGTERM or `--duration`, then prints its counts as one JSON
//! line on stdout and writes them to `--counts PATH` (temp file and rename) when asked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::commands::outcome::{SetupError, Verdict};
use crate::faults::{FaultPlan, FaultProxy};
use crate::report::write::write_atomic;

/// Validated options of `harness proxy`.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub plan: FaultPlan,
    /// Stop after this long; `None`: on Ctrl-C or SIGTERM.
    pub duration: Option<Duration>,
    /// Where the final counts go as JSON.
    pub counts: Option<PathBuf>,
}

pub fn execute(opts: &ProxyOptions) -> Result<Verdict, SetupError> {
    if let Some(path) = &opts.counts {
        loadgen::output::probe_writable(path).map_err(|e| {
            SetupError(format!(
                "--counts {} cannot be written: {e}",
                path.display()
            ))
        })?;
    }
    let proxy = FaultProxy::start(opts.listen, opts.upstream, opts.plan.clone())
        .map_err(|e| SetupError(format!("cannot start the proxy on {}: {e}", opts.listen)))?;
    println!("listening on {}", proxy.addr());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait_for_stop(opts.duration)?;
    let counts = proxy.stop();
    let json = serde_json::to_string(&counts).map_err(|e| SetupError(e.to_string()))?;
    println!("{json}");
    if let Some(path) = &opts.counts {
        write_atomic(path, format!("{json}\n").as_bytes())
            .map_err(|e| SetupError(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(Verdict::Passed)
}

/// Blocks until SIGINT, SIGTERM or `duration`.
fn wait_for_stop(duration: Option<Duration>) -> Result<(), SetupError> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SetupError(format!("cannot start a runtime: {e}")))?;
    runtime
        .block_on(async {
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            let timer = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                () = timer => {}
            }
            Ok::<(), std::io::Error>(())
        })
        .map_err(|e| SetupError(format!("cannot catch signals: {e}")))
}
