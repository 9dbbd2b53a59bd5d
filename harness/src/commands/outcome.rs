//! How a command ends: a [`Verdict`] when it ran to the end (`cli` turns it into exit 0 or 1), or
//! a [`SetupError`] (one line on stderr, exit 2).

/// Whether a command that ran to the end found what it looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed, the load ran without error, no regression.
    Passed,
    /// A check or the load failed, a sweep step failed, or `compare` found a regression.
    Failed,
}

impl Verdict {
    pub fn failed_if(failed: bool) -> Verdict {
        if failed {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }
}

/// A usage or setup problem: printed as one line, exit 2.
#[derive(Debug)]
pub struct SetupError(pub String);

impl<E: std::fmt::Display> From<E> for SetupError {
    fn from(e: E) -> Self {
        SetupError(e.to_string())
    }
}
