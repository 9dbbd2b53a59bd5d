//! Server metrics in the OpenMetrics text format, for the monitoring people already run:
//! `--metrics-file PATH` rewrites a file atomically (temp file + rename, the node_exporter
//! textfile-collector convention) every `--metrics-interval` and at exit, and `--metrics-addr`
//! serves the same text at GET /metrics (see `http`). Both are driven from the parent's poll loop
//! (`Metrics::deadline` joins its timeout, `Metrics::poll_fds` its fds), so there are no threads,
//! and a parent without either flag does no metrics work at all.
//!
//! Beside the loop: `server` drives it, `child_table` counts the session durations into it.
//!
//! Layers it may import: `config`, `log`, `stats`.
//! Crates it may import: `nix`.

pub mod durations;
pub mod http;
pub mod text;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use nix::poll::PollFd;

use crate::config::MetricsConfig;
use crate::log::{self, RateLimitedLog};
use crate::stats::Stats;
use durations::SessionDurations;
use http::Endpoint;

/// Most fds the metrics add to one poll: the listener and every scrape.
pub const MAX_POLL_FDS: usize = 1 + http::MAX_SCRAPES;

pub struct Metrics {
    file: Option<PathBuf>,
    interval: Duration,
    /// When the file is next rewritten.
    next_write: Instant,
    endpoint: Option<Endpoint>,
    write_log: RateLimitedLog,
}

impl Metrics {
    /// Binds `--metrics-addr` and writes the first file, so a bad address or an unwritable
    /// path is a start-up error; `None` when neither flag is given.
    pub fn start(config: &MetricsConfig, stats: &Stats) -> Result<Option<Metrics>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let endpoint = match config.addr {
            Some(addr) => Some(
                Endpoint::bind(addr)
                    .map_err(|e| format!("cannot listen for --metrics-addr on {addr}: {e}"))?,
            ),
            None => None,
        };
        let metrics = Metrics {
            file: config.file.clone(),
            interval: config.interval,
            next_write: Instant::now() + config.interval,
            endpoint,
            write_log: RateLimitedLog::new(Duration::from_secs(60)),
        };
        if let Some(path) = &metrics.file {
            write_atomically(
                path,
                text::render(stats, Some(&SessionDurations::default())).as_bytes(),
            )
            .map_err(|e| format!("cannot write --metrics-file {}: {e}", path.display()))?;
        }
        Ok(Some(metrics))
    }

    /// Where GET /metrics is served, if it is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().and_then(|e| e.local_addr().ok())
    }

    /// The next instant the loop must wake for the metrics: the file's rewrite or a scrape's
    /// deadline.
    pub fn deadline(&self) -> Option<Instant> {
        let file = self.file.as_ref().map(|_| self.next_write);
        let scrape = self.endpoint.as_ref().and_then(Endpoint::deadline);
        file.into_iter().chain(scrape).min()
    }

    /// Fills `out` with the fds to poll; returns how many.
    pub fn poll_fds<'a>(&'a self, out: &mut [PollFd<'a>]) -> usize {
        self.endpoint.as_ref().map_or(0, |e| e.poll_fds(out))
    }

    /// Rewrites the file when due and serves scrapes as far as they are ready. `ready` is the
    /// readiness of the fds of the last `poll_fds`, in order.
    pub fn service(
        &mut self,
        ready: &[bool],
        now: Instant,
        stats: &Stats,
        durations: Option<&SessionDurations>,
    ) {
        if let Some(endpoint) = self.endpoint.as_mut() {
            endpoint.service(ready, now, &|| text::render(stats, durations));
        }
        if self.file.is_some() && now >= self.next_write {
            self.next_write = now + self.interval;
            self.write_file(stats, durations);
        }
    }

    /// Writes the file now (at exit, and when due); a failure is logged (once a minute at
    /// most), never fatal: metrics must not stop the server.
    pub fn write_file(&mut self, stats: &Stats, durations: Option<&SessionDurations>) {
        let Some(path) = &self.file else {
            return;
        };
        if let Err(e) = write_atomically(path, text::render(stats, durations).as_bytes()) {
            if self.write_log.permit(Instant::now()).is_some() {
                crate::log_at!(
                    log::INFO,
                    "cannot write --metrics-file {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// Temp file beside `path`, then rename: readers (a textfile collector) see the old file or the
/// new one, never half of one. Not synced: a metrics file that a crash loses costs nothing, an
/// fsync in the poll loop could stall accepts. (loadgen has the workspace's synced writer; the
/// server does not depend on loadgen and its tokio.)
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".into());
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
