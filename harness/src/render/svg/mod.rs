//! SVG charts of a sweep (latency, first-echo latency, memory stacked by component with the fitted
//! total, throughput against connections; every title names the server, the machine and the date),
//! the capacity charts (throughput with its USL fit, CPU per message and per connection), a run's
//! timeline (children, memory, throughput over time), and the conversion of each report kind into
//! the points they are drawn from.
//!
//! Drawn with plotters' SVG backend only: text goes into the file as `<text>` elements for the
//! viewer to render, so neither building nor drawing needs a system font. Every file is written to a
//! temporary name in the target directory and renamed into place, so a reader never sees half a chart.

mod capacity;
mod chart;
mod compare;
mod sweep;
mod timeline;

pub use capacity::CAPACITY_CHARTS;
pub use chart::PlotError;
pub use compare::{compare_svgs, COMPARE_CHARTS};
pub use sweep::{
    short_server_name, sweep_svg_texts, sweep_svgs, write_sweep_svgs, SweepModels, SweepPoint,
    SWEEP_CHARTS,
};
pub use timeline::{
    run_timeline, timeline_svg_text, write_timeline_svg, TimelinePoint, TIMELINE_CHART,
};

#[cfg(test)]
mod tests;
