//! The live progress line on stderr, drawn only when stderr is a terminal (so logs, pipes and
//! the harness never see control characters).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner with running counts; absent when not wanted or not on a TTY.
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(wanted: bool) -> Option<Progress> {
        if !wanted || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(Progress { bar })
    }

    pub fn update(&self, established: usize, echoes: u64, errors: u64) {
        self.bar.set_message(format!(
            "{established} connections open, {echoes} echoes verified, {errors} errors"
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
