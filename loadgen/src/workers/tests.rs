//! Unit tests of the worker split: how many processes and source addresses a run needs.

use super::*;

fn config(conns: usize) -> Config {
    Config {
        conns,
        ..Config::default()
    }
}

#[test]
fn the_descriptor_limit_decides_the_number_of_processes() {
    let range = Some((32768, 60999));
    assert_eq!(plan_for(&config(100), None, 1024, range).unwrap().procs, 1);
    // 136 connections per process under a limit of 200.
    assert_eq!(plan_for(&config(300), None, 200, range).unwrap().procs, 3);
    assert_eq!(
        plan_for(&config(50_000), None, 20_000, range)
            .unwrap()
            .procs,
        3
    );
    assert_eq!(
        plan_for(&config(300), Some(2), 200, range).unwrap().procs,
        2
    );
    assert!(plan_for(&config(3), Some(4), 200, range).is_err());
    assert!(plan_for(&config(3), Some(0), 200, range).is_err());
    assert!(plan_for(&config(3), None, 10, range).is_err());
    let e = plan_for(&config(100_000_000), None, 20_000, range).unwrap_err();
    assert!(e.to_string().contains("ulimit -n"), "{e}");
}

#[test]
fn loopback_targets_get_a_127_spread_when_ports_run_out() {
    let range = Some((32768, 60999));
    assert!(plan_for(&config(20_000), None, 1 << 20, range)
        .unwrap()
        .source_ips
        .is_empty());
    let split = plan_for(&config(50_000), None, 1 << 20, range).unwrap();
    let want: Vec<IpAddr> = ["127.0.0.1", "127.0.0.2"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(split.source_ips, want);
    // An explicit --source-ip wins.
    let explicit = Config {
        source_ips: vec!["127.0.0.9".parse().unwrap(); 2],
        ..config(50_000)
    };
    assert_eq!(
        plan_for(&explicit, None, 1 << 20, range)
            .unwrap()
            .source_ips,
        explicit.source_ips
    );
    // Not for a remote target: its addresses are not ours to invent.
    let remote = Config {
        addr: "10.203.0.1:7".parse().unwrap(),
        ..config(50_000)
    };
    assert!(plan_for(&remote, None, 1 << 20, range)
        .unwrap()
        .source_ips
        .is_empty());
}

#[test]
fn worker_args_share_rates_and_pass_the_load_through() {
    let c = Config {
        rate: Some(1000.0),
        messages: Some(7),
        duration: None,
        size: 128,
        ..config(10)
    };
    let a = worker_args(&c, 4, 3, "rid", 5, Path::new("/tmp/r.json")).join(" ");
    for want in [
        "--rate 250",
        "--messages 7",
        "--size 128",
        "--conns 3",
        "--run-id rid",
        "--worker-index 5",
        "--procs 1",
        "--max-session-failures 1",
    ] {
        assert!(a.contains(want), "{want} missing from {a}");
    }
}
