//! The sweep's progress bar on stderr: one tick per step, and a message naming the step and its
//! phase (the burst, counting the server's children as they appear, then the steady phase with its
//! elapsed time). Drawn only when stderr is a terminal; otherwise one plain line per finished step,
//! so CI logs still show where a long sweep is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::sweep::SweepStep;

/// The progress display of one sweep: a bar on a terminal, one line per step otherwise.
pub struct SweepProgress {
    /// `None` when stderr is not a terminal.
    bar: Option<ProgressBar>,
    steps: usize,
}

/// Watches one step's load and updates the bar's message; dropping it stops the thread.
pub struct LoadWatch {
    /// Dropping the sender wakes the thread at once and makes it return.
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for LoadWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl SweepProgress {
    /// A bar of `steps` ticks, drawn when `draw` (the caller checks for a terminal).
    pub fn new(draw: bool, steps: usize) -> SweepProgress {
        let bar = draw.then(|| {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("sweep [{bar:20}] {pos}/{len} steps  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        SweepProgress { bar, steps }
    }

    /// `step 2/5, 10 connections`.
    fn step_name(&self, index: usize, conns: u64) -> String {
        let plural = if conns == 1 { "" } else { "s" };
        format!(
            "step {}/{}, {conns} connection{plural}",
            index + 1,
            self.steps
        )
    }

    pub fn start_step(&self, index: usize, conns: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{}: starting the server",
                self.step_name(index, conns)
            ));
        }
    }

    /// Follows the load of step `index`: burst until `conns` children are alive (as the step's
    /// sampler last counted them in `live_children`), then steady.
    pub fn watch_load(
        &self,
        index: usize,
        live_children: Arc<AtomicUsize>,
        conns: u64,
        duration: Duration,
    ) -> Option<LoadWatch> {
        let bar = self.bar.clone()?;
        let name = self.step_name(index, conns);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("sweep-progress".into())
            .spawn(move || {
                let mut steady_since: Option<Instant> = None;
                loop {
                    match steady_since {
                        None => {
                            let live = live_children.load(Ordering::Relaxed) as u64;
                            bar.set_message(format!("{name}: burst, {live}/{conns} children"));
                            if live >= conns {
                                steady_since = Some(Instant::now());
                            }
                        }
                        Some(t) => bar.set_message(format!(
                            "{name}: steady, {:.1}/{:.1} s",
                            t.elapsed().as_secs_f64().min(duration.as_secs_f64()),
                            duration.as_secs_f64()
                        )),
                    }
                    match stop_rx.recv_timeout(Duration::from_millis(250)) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .ok()?;
        Some(LoadWatch {
            stop: Some(stop_tx),
            handle: Some(handle),
        })
    }

    pub fn end_step(&self, step: &SweepStep) {
        let verdict = if step.ok { "ok" } else { "FAILED" };
        match &self.bar {
            Some(bar) => {
                bar.println(format!("step {} connections: {verdict}", step.conns));
                bar.inc(1);
            }
            None => eprintln!(
                "sweep: step {} connections: {verdict} ({:.1} s)",
                step.conns, step.wall_secs
            ),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
