//! Unit tests of the charts: each file written, its series, its axes, the edge cases.

use std::fs;

use super::chart::*;
use super::sweep::*;
use super::timeline::*;
use crate::capacity::LinearFit;
use crate::render::units::{bytes_unit, fmt_bytes};
use crate::render::units::{KIB, MIB};
use std::path::Path;

/// A ladder like the default sweep: memory grows by 150 KiB a child, latency rises past 1000.
fn sweep() -> Vec<SweepPoint> {
    [1u64, 10, 100, 1000, 4000]
        .iter()
        .map(|&c| {
            let cf = c as f64;
            SweepPoint {
                conns: c,
                echo_p50_us: 40.0 + cf * 0.05,
                echo_p99_us: 90.0 + cf * 0.5,
                echo_p999_us: 200.0 + cf * 4.0,
                first_echo_p50_us: 300.0 + cf * 2.0,
                first_echo_p99_us: 900.0 + cf * 20.0,
                total_pss_bytes: 2.0 * MIB + cf * 150.0 * KIB,
                live_children: c,
                messages_per_sec: 20_000.0 * cf.min(200.0) / (1.0 + cf / 2000.0),
                total_bytes: f64::NAN,
                components: None,
                drop_bytes: f64::NAN,
                sreclaimable_bytes: f64::NAN,
            }
        })
        .collect()
}

/// The old (schema 1) chart input: PSS and its fit only.
fn pss_only(fit: Option<&LinearFit>) -> SweepModels<'_> {
    SweepModels {
        server: "fork-echo-server",
        pss_fit: fit,
        ..SweepModels::default()
    }
}

fn fit() -> LinearFit {
    LinearFit {
        slope: 150.0 * KIB,
        intercept: 2.0 * MIB,
        r_squared: 0.9987,
        n: 5,
    }
}

/// Every piece of text in the SVG, after checking it parses as XML.
fn texts(path: &Path) -> Vec<String> {
    let svg = fs::read_to_string(path).expect("read svg");
    let doc = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect()
}

fn assert_has(texts: &[String], wanted: &[&str], path: &Path) {
    for w in wanted {
        assert!(
            texts.iter().any(|t| t == w),
            "{} lacks text {w:?}; has {texts:?}",
            path.display()
        );
    }
}

#[test]
fn sweep_svgs_have_series_and_labelled_axes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths =
        write_sweep_svgs(dir.path(), "sweep-x", &sweep(), &pss_only(Some(&fit()))).expect("plot");
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "sweep-x-echo-latency.svg",
            "sweep-x-first-echo-latency.svg",
            "sweep-x-memory.svg",
            "sweep-x-throughput.svg"
        ]
    );

    let t = texts(&paths[0]);
    assert_has(
        &t,
        &[
            "echo p50",
            "echo p99",
            "echo p99.9",
            "concurrent connections",
            "latency (ms)",
        ],
        &paths[0],
    );
    // Log x: the decades are ticks.
    assert_has(&t, &["1", "10", "100", "1k"], &paths[0]);

    let t = texts(&paths[1]);
    assert_has(
        &t,
        &["first-echo p50", "first-echo p99", "latency (ms)"],
        &paths[1],
    );

    let t = texts(&paths[2]);
    assert_has(
        &t,
        &[
            "total PSS (user space only)",
            "PSS fit: 150.0 KiB per connection, intercept 2.0 MiB, R² = 0.999",
            "memory (MiB)",
            "Server memory, PSS only (user space): fork-echo-server",
            "live connections (server children)",
        ],
        &paths[2],
    );

    // Measured PSS is drawn as dots (one per step, plus the legend's), the fit as a line.
    let pss_svg = fs::read_to_string(&paths[2]).expect("read");
    assert_eq!(pss_svg.matches("<circle").count(), sweep().len() + 1);

    let t = texts(&paths[3]);
    assert_has(
        &t,
        &["messages/s (steady phase)", "messages per second"],
        &paths[3],
    );

    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn small_linear_ladder_uses_linear_axes_and_microseconds() {
    let points: Vec<SweepPoint> = sweep()
        .into_iter()
        .take(3)
        .map(|mut p| {
            p.conns = p.conns.max(5) * 2; // 10, 20, 200 -> 10, 20, 200
            p
        })
        .collect();
    assert_eq!(scale_for(&[10.0, 20.0, 200.0], LOG_X_RATIO), Scale::Linear);
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = write_sweep_svgs(dir.path(), "s", &points, &pss_only(None)).expect("plot");
    let t = texts(&paths[0]);
    assert_has(&t, &["latency (µs)", "echo p99.9"], &paths[0]);
    // Without a fit there is no fit series.
    let t = texts(&paths[2]);
    assert!(!t.iter().any(|s| s.contains("fit:")), "{t:?}");
    assert_has(&t, &["total PSS (user space only)"], &paths[2]);
}

#[test]
fn unmeasured_figures_are_left_out_not_drawn() {
    let mut points = sweep();
    points[2].echo_p99_us = f64::NAN;
    points[4].first_echo_p50_us = f64::NAN;
    points[4].first_echo_p99_us = f64::NAN;
    points[0].live_children = 0; // a zero on the ladder
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = write_sweep_svgs(dir.path(), "s", &points, &pss_only(Some(&fit()))).expect("plot");
    for path in &paths {
        let svg = fs::read_to_string(path).expect("read");
        assert!(
            !svg.contains("NaN") && !svg.contains("inf"),
            "{}",
            path.display()
        );
        texts(path);
    }
}

/// A sweep with the kernel's counters: each step's components, and a total fit whose
/// intercept is negative (as a wide ladder gives when the smallest steps are noisy).
fn sweep_with_components() -> (Vec<SweepPoint>, LinearFit) {
    let points = sweep()
        .into_iter()
        .map(|mut p| {
            let n = p.live_children as f64;
            let c = [31.0, 50.0, 16.0, 27.0, 1.0, 5.0].map(|k| k * KIB * n);
            p.components = Some(c);
            p.total_bytes = c[..5].iter().sum();
            p.drop_bytes = p.total_bytes + c[5];
            p
        })
        .collect();
    let fit = LinearFit {
        slope: 125.0 * KIB,
        intercept: -7.8 * MIB,
        r_squared: 0.9967,
        n: 5,
    };
    (points, fit)
}

/// Every `(x, y)` of the chart's polylines (lines and fit).
fn polyline_points(path: &Path) -> Vec<(f64, f64)> {
    let svg = fs::read_to_string(path).expect("read svg");
    let doc = roxmltree::Document::parse(&svg).expect("xml");
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter_map(|n| n.attribute("points"))
        .flat_map(|pts| {
            pts.split_whitespace()
                .filter_map(|xy| {
                    let (x, y) = xy.split_once(',')?;
                    Some((x.parse().ok()?, y.parse().ok()?))
                })
                .collect::<Vec<(f64, f64)>>()
        })
        .collect()
}

#[test]
fn memory_chart_stacks_components_and_clips_a_negative_intercept() {
    let (points, fit) = sweep_with_components();
    let validation = SweepPoint {
        live_children: 10_000,
        total_bytes: 125.0 * KIB * 10_000.0,
        ..points[4]
    };
    let models = SweepModels {
        server: "socat TCP-LISTEN:{port},fork PIPE",
        pss_fit: None,
        total_fit: Some(&fit),
        validation: Some(validation),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = write_sweep_svgs(dir.path(), "s", &points, &models).expect("plot");
    let t = texts(&paths[2]);
    assert_has(
        &t,
        &[
            "Memory by component (user space + kernel): socat TCP-LISTEN:{port},fork PIPE",
            "user space (private)",
            "page tables",
            "kernel stacks",
            "slab (task, files, sockets)",
            "socket buffers",
            "total fit: 125.0 KiB per connection, intercept -7.8 MiB, R² = 0.997",
            "validation step, not fitted (10000 children)",
            "memory (GiB)",
        ],
        &paths[2],
    );
    // Every chart names the server.
    for path in &paths {
        let t = texts(path);
        assert!(
            t.iter()
                .any(|s| s.ends_with(": socat TCP-LISTEN:{port},fork PIPE")),
            "{}: {t:?}",
            path.display()
        );
    }
    // The rest is not stacked: five bands, drawn as polygons.
    let svg = fs::read_to_string(&paths[2]).expect("read");
    assert_eq!(svg.matches("<polygon").count(), 5, "{svg}");
    // The fit is one straight segment from the smallest to the largest fitted step, and no
    // line leaves the 900x560 chart.
    let line = clipped_fit_line(&fit, &[1.0, 10.0, 4000.0], MIB);
    assert_eq!(line.len(), 2);
    assert_eq!((line[0].0, line[1].0), (1.0, 4000.0));
    for (x, y) in polyline_points(&paths[2]) {
        assert!(
            (0.0..=900.0).contains(&x) && (0.0..=560.0).contains(&y),
            "({x}, {y})"
        );
    }
}

#[test]
fn short_server_names_drop_the_harness_port() {
    assert_eq!(
        short_server_name("fork-echo-server (built in) --port 0 --backlog 4096"),
        "fork-echo-server --backlog 4096"
    );
    let long = format!("socat {}", "x".repeat(100));
    assert_eq!(short_server_name(&long).chars().count(), 60);
}

#[test]
fn redrawing_replaces_the_files_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write_sweep_svgs(dir.path(), "s", &sweep(), &pss_only(Some(&fit()))).expect("plot");
    let before = fs::read_to_string(&first[2]).expect("read");
    fs::write(&first[2], "truncated <svg").expect("clobber");
    let second =
        write_sweep_svgs(dir.path(), "s", &sweep(), &pss_only(Some(&fit()))).expect("replot");
    assert_eq!(first, second);
    assert_eq!(fs::read_to_string(&second[2]).expect("read"), before);
}

#[test]
fn nothing_to_plot_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        write_sweep_svgs(dir.path(), "s", &[], &pss_only(None)),
        Err(PlotError::NoData(_))
    ));
    assert!(matches!(
        write_timeline_svg(dir.path(), "s", &[]),
        Err(PlotError::NoData(_))
    ));
}

#[test]
fn unwritable_directory_is_a_write_error() {
    let err = write_sweep_svgs(
        Path::new("/nonexistent/dir"),
        "s",
        &sweep(),
        &pss_only(None),
    )
    .expect_err("cannot write");
    assert!(matches!(err, PlotError::Write { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent/dir/s-echo-latency.svg"),
        "{err}"
    );
}

#[test]
fn timeline_has_three_panels() {
    let points: Vec<TimelinePoint> = (0..100)
        .map(|i| {
            let t = f64::from(i) * 0.1;
            let children = (i * 12).min(1000) as u64;
            TimelinePoint {
                t_secs: t,
                children,
                zombies: u64::from(i % 17 == 0),
                total_pss_bytes: 2.0 * MIB + children as f64 * 150.0 * KIB,
                messages_per_sec: if i == 0 { f64::NAN } else { 180_000.0 },
            }
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_timeline_svg(dir.path(), "run-x", &points).expect("plot");
    assert_eq!(path, dir.path().join("run-x-timeline.svg"));
    let t = texts(&path);
    assert_has(
        &t,
        &[
            "live children",
            "zombies",
            "total PSS",
            "messages/s",
            "total PSS (MiB)",
            "processes",
            "messages per second",
            "time since load start (s)",
        ],
        &path,
    );
}

#[test]
fn a_failed_runs_timeline_says_no_data_and_counts_have_whole_ticks() {
    let flat: Vec<TimelinePoint> = (0..20)
        .map(|i| TimelinePoint {
            t_secs: f64::from(i),
            children: 0,
            zombies: 0,
            total_pss_bytes: f64::NAN,
            messages_per_sec: f64::NAN,
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_timeline_svg(dir.path(), "failed", &flat).expect("plot");
    let t = texts(&path);
    // Memory and throughput were never measured; zero children is a reading, in whole ticks.
    assert_eq!(
        t.iter().filter(|s| s.starts_with("no data")).count(),
        2,
        "{t:?}"
    );
    assert!(!t.iter().any(|s| s == "0.2"), "{t:?}");

    let few: Vec<TimelinePoint> = (0..20)
        .map(|i| TimelinePoint {
            // Whole seconds, so no time tick is a fraction either.
            t_secs: f64::from(i),
            children: (i % 2) as u64,
            zombies: 0,
            total_pss_bytes: MIB,
            messages_per_sec: 10.0,
        })
        .collect();
    let path = write_timeline_svg(dir.path(), "few", &few).expect("plot");
    let t = texts(&path);
    for fraction in ["0.2", "0.4", "0.5", "0.6", "0.8"] {
        assert!(!t.iter().any(|s| s == fraction), "{fraction} in {t:?}");
    }
    assert!(t
        .iter()
        .any(|s| s.contains("second 0 includes the connect phase")));
}

#[test]
fn ticks_and_units_read_well() {
    assert_eq!(fmt_tick(1.0), "1");
    assert_eq!(fmt_tick(0.5), "0.5");
    assert_eq!(fmt_tick(1000.0), "1k");
    assert_eq!(fmt_tick(1500.0), "1.5k");
    assert_eq!(fmt_tick(20_000.0), "20k");
    assert_eq!(fmt_tick(2_500_000.0), "2.5M");
    assert_eq!(fmt_bytes(153_600.0), "150.0 KiB");
    assert_eq!(bytes_unit([3.0 * MIB].into_iter()).0, "KiB");
    assert_eq!(bytes_unit([600.0 * MIB].into_iter()).0, "MiB");
    assert_eq!(scale_for(&[1.0, 10.0, 100.0], LOG_X_RATIO), Scale::Log);
    assert_eq!(scale_for(&[0.0, 10.0, 1000.0], LOG_X_RATIO), Scale::Linear);
}
