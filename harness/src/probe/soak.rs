//! The soak's load and its samples: loadgen rounds through the fault proxy, one after another on a
//! thread of their own until the duration is over (each round opens fresh connections, so the
//! proxy's fraction of faulted connections holds throughout), while this thread reads the server's
//! descriptors, resident memory and children from /proc every second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::report::soak::{SoakLoad, SoakParameters, SoakSample};
use crate::sys::procfs;

/// How often the server is sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// What the soak's load and sampler produced.
pub struct SoakRun {
    pub samples: Vec<SoakSample>,
    pub load: SoakLoad,
    /// Why a round could not run at all (a setup error from loadgen); the rounds stop there.
    pub load_error: Option<String>,
}

/// Runs loadgen rounds against `target` (the proxy) for `params.duration_secs`, sampling the
/// server `server_pid` every second until the last round is over.
pub fn run(server_pid: i32, target: SocketAddr, params: &SoakParameters) -> SoakRun {
    let t0 = Instant::now();
    let duration = Duration::from_secs_f64(params.duration_secs);
    let config = loadgen::Config {
        addr: target,
        conns: params.conns,
        duration: None,
        messages: Some(params.messages),
        size: params.size,
        io_timeout: Duration::from_secs_f64(params.io_timeout_secs),
        progress: false,
        threads: Some(1),
        ..loadgen::Config::default()
    };
    let rounds = std::thread::Builder::new()
        .name("soak-load".into())
        .spawn(move || {
            let mut load = SoakLoad::default();
            while t0.elapsed() < duration && !loadgen::interrupt::requested() {
                match loadgen::run(config.clone()) {
                    Ok(report) => load.add(&report),
                    Err(e) => return (load, Some(e.to_string())),
                }
            }
            (load, None)
        });
    let rounds = match rounds {
        Ok(handle) => handle,
        Err(e) => {
            return SoakRun {
                samples: Vec::new(),
                load: SoakLoad::default(),
                load_error: Some(format!("cannot start the load thread: {e}")),
            }
        }
    };
    let mut samples = Vec::new();
    let mut next = t0;
    while !rounds.is_finished() {
        samples.push(sample(server_pid, t0));
        next += SAMPLE_INTERVAL;
        // A round ends between ticks: look again every 50 ms so the soak stops soon after it.
        while Instant::now() < next && !rounds.is_finished() {
            std::thread::sleep(
                Duration::from_millis(50).min(next.saturating_duration_since(Instant::now())),
            );
        }
    }
    samples.push(sample(server_pid, t0));
    let (load, load_error) = rounds
        .join()
        .unwrap_or_else(|_| (SoakLoad::default(), Some("the load thread panicked".into())));
    SoakRun {
        samples,
        load,
        load_error,
    }
}

/// One reading of the server from /proc.
fn sample(pid: i32, t0: Instant) -> SoakSample {
    let census = procfs::census(pid).unwrap_or_default();
    SoakSample {
        t_secs: t0.elapsed().as_secs_f64(),
        fds: procfs::open_fd_count(pid).ok(),
        rss_kib: procfs::memory_rollup(pid).map(|m| m.rss_kib),
        live_children: census.live.len(),
        zombies: census.zombies.len(),
    }
}
