//! `--metrics-file` and `--metrics-addr`: the OpenMetrics text parses (prometheus-parse, plus the
//! OpenMetrics rules that parser does not check), its counters are the SIGUSR1 stats line's, and
//! a stuck scraper cannot stall accepts. A module of the one integration-test binary.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::util::{echo, fork_lock, wait_until, ServerProcess};

/// Parses an exposition: `name{labels}` → value, after checking the OpenMetrics rules
/// prometheus-parse does not (one `# EOF` at the very end, `_total` on every counter sample).
fn parse(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("\n# EOF\n"), "no # EOF at the end: {text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as exposition text");
    let mut values = HashMap::new();
    for s in &scrape.samples {
        let value = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                for b in buckets {
                    values.insert(
                        format!("{}_bucket{{le={}}}", s.metric, b.less_than),
                        b.count,
                    );
                }
                continue;
            }
            prometheus_parse::Value::Summary(_) => panic!("no summaries are exported"),
        };
        if matches!(s.value, prometheus_parse::Value::Counter(_)) {
            assert!(
                s.metric.ends_with("_total"),
                "counter {} lacks _total",
                s.metric
            );
        }
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>();
        let key = match labels.is_empty() {
            true => s.metric.clone(),
            false => format!("{}{{{}}}", s.metric, labels.join(",")),
        };
        values.insert(key, value);
    }
    values
}

/// The metrics address the server logged at start.
fn metrics_addr(server: &ServerProcess) -> SocketAddr {
    let mut found = None;
    wait_until("the metrics address line", || {
        found = server.stderr_lines().iter().find_map(|l| {
            let rest = l.split("metrics at http://").nth(1)?;
            rest.strip_suffix("/metrics")?.parse().ok()
        });
        found.is_some()
    });
    found.unwrap()
}

/// GET `path` over a fresh connection; the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").expect("a response head");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "{head}");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The counters every exposition shares with the stats line.
fn assert_counters_match(metrics: &HashMap<String, f64>, stats: &serde_json::Value) {
    // Exported, but not equal: SIGUSR1 makes a reap pass of its own before it prints.
    assert!(metrics.contains_key("fork_echo_reap_passes_total"));
    for (metric, field) in [
        ("fork_echo_accepted_total", "accepted"),
        ("fork_echo_forked_total", "forked"),
        ("fork_echo_fork_failures_total", "fork_failures"),
        ("fork_echo_limit_hits_total", "limit_hits"),
        ("fork_echo_emfile_pauses_total", "emfile_pauses"),
        ("fork_echo_per_source_refused_total", "per_source_refused"),
        ("fork_echo_rate_limited_total", "rate_limited"),
        ("fork_echo_live_children", "live"),
        ("fork_echo_peak_live_children", "peak_live"),
    ] {
        assert_eq!(metrics[metric], stats[field].as_f64().unwrap(), "{metric}");
    }
    for reason in [
        "eof",
        "reset",
        "idle_timeout",
        "io_error",
        "signaled",
        "other",
    ] {
        let key = format!("fork_echo_reaped_total{{reason={reason}}}");
        assert_eq!(
            metrics[&key],
            stats["reaped"][reason].as_f64().unwrap(),
            "{key}"
        );
    }
}

#[test]
fn metrics_over_http_parse_and_match_the_stats_line() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&server);
    for _ in 0..5 {
        let mut c = server.connect();
        assert_eq!(echo(&mut c, b"hi"), b"hi");
    }
    let mut open = server.connect();
    assert_eq!(echo(&mut open, b"open"), b"open");
    wait_until("five sessions reaped", || {
        server.stats()["reaped"]["eof"] == 5
    });
    let stats = server.stats();
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let m = parse(&body);
    assert_counters_match(&m, &stats);
    assert_eq!(m["fork_echo_accepted_total"], 6.0);
    assert_eq!(m["fork_echo_live_children"], 1.0);
    // Every reaped session is in the duration histogram, each under 10 s.
    assert_eq!(m["fork_echo_session_duration_seconds_count"], 5.0);
    assert_eq!(m["fork_echo_session_duration_seconds_bucket{le=10}"], 5.0);
    assert_eq!(m["fork_echo_session_duration_seconds_bucket{le=inf}"], 5.0);
    assert!(m["fork_echo_session_duration_seconds_sum"] < 50.0);
    assert_eq!(get(addr, "/").0, "HTTP/1.1 404 Not Found");
}

#[test]
fn the_metrics_file_is_rewritten_and_written_at_exit() {
    let _lock = fork_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fork-echo.prom");
    let p = path.to_str().unwrap();
    let mut server = ServerProcess::start(&["--metrics-file", p, "--metrics-interval", "200ms"]);
    // Written at start, before any client.
    assert_eq!(
        parse(&std::fs::read_to_string(&path).unwrap())["fork_echo_accepted_total"],
        0.0
    );
    for _ in 0..3 {
        let mut c = server.connect();
        assert_eq!(echo(&mut c, b"x"), b"x");
    }
    wait_until("the file to count three reaped sessions", || {
        let text = std::fs::read_to_string(&path).unwrap();
        parse(&text)["fork_echo_session_duration_seconds_count"] == 3.0
    });
    let stats = server.stats();
    wait_until("the file to catch up with the stats line", || {
        let m = parse(&std::fs::read_to_string(&path).unwrap());
        m["fork_echo_reaped_total{reason=eof}"] == stats["reaped"]["eof"].as_f64().unwrap()
    });
    assert_counters_match(&parse(&std::fs::read_to_string(&path).unwrap()), &stats);
    // Only the file: no temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let last = server.stats_lines().pop().unwrap();
    assert_counters_match(&parse(&std::fs::read_to_string(&path).unwrap()), &last);
}

#[test]
fn a_stuck_scraper_never_stalls_accepts() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&server);
    let fds_before = server.fd_count();
    // Every scrape slot taken by a connection that sends half a request and never reads, plus
    // more waiting in the metrics backlog.
    let stuck: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    for i in 0..100u32 {
        let mut c = server.connect();
        let payload = i.to_be_bytes();
        assert_eq!(echo(&mut c, &payload), payload);
    }
    // Four scrape connections held open by the parent (the bound), the fifth still queued. The
    // parent also holds each echo connection for a moment, until it has forked and closed its
    // copy, and the child may have echoed by then (CI once counted one more): wait for the
    // count to settle instead of sampling it once.
    wait_until(
        "the parent to hold the four scrapes and no other connection",
        || server.fd_count() == fds_before + 4,
    );
    // A stuck scrape is closed at its deadline, and the next one is answered.
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(parse(&body)["fork_echo_accepted_total"] >= 100.0);
    drop(stuck);
}

#[test]
fn bad_metrics_flags_are_start_up_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = crate::util::run_to_exit(&["--metrics-addr", &port], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics-addr") && err.lines().count() == 1,
        "{err}"
    );
    let out = crate::util::run_to_exit(
        &["--metrics-file", "/nonexistent-dir/x.prom"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-file"));
}
