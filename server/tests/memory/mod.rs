//! What a child shares with the parent: the parent's per-fork state (counters, child table) sits
//! in mappings marked MADV_DONTFORK, so no child maps them and the parent's writes between forks
//! cost no copy-on-write page in any child.

use crate::util::{echo, fork_lock, wait_until, ServerProcess};

/// Start addresses of the mappings of `pid` whose VmFlags include `dc` (MADV_DONTFORK).
fn dont_fork_mappings(pid: i32) -> Vec<String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut found = Vec::new();
    let mut start = None;
    for line in smaps.lines() {
        let first = line.split(' ').next().unwrap_or("");
        let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
        if let Some((from, _)) = first.split_once('-').filter(|(a, b)| hex(a) && hex(b)) {
            start = Some(from.to_owned());
        } else if line.starts_with("VmFlags:") && line.split(' ').any(|flag| flag == "dc") {
            found.extend(start.take());
        }
    }
    found
}

#[test]
fn children_do_not_map_the_parents_per_fork_state() {
    let _lock = fork_lock();
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"held"), b"held");
    wait_until("one live child", || server.children().len() == 1);
    let parent_only = dont_fork_mappings(server.pid().as_raw());
    // The books (counters, flags, child table) and the table's pid slots; the kernel merges
    // the two when they are adjacent.
    assert!(
        !parent_only.is_empty(),
        "the parent has no MADV_DONTFORK mapping"
    );
    let child = server.children()[0].pid;
    let child_maps = std::fs::read_to_string(format!("/proc/{child}/maps")).expect("child maps");
    for start in &parent_only {
        assert!(
            !child_maps
                .lines()
                .any(|line| line.starts_with(&format!("{start}-"))),
            "the child maps the parent-only mapping at {start}:\n{child_maps}"
        );
    }
    // The child still echoes: it never touches what it does not have.
    assert_eq!(echo(&mut client, b"again"), b"again");
}

/// The unwinder is linked in statically (`build.rs`): libgcc_s would be five more mappings that
/// every fork copies, the largest single cost left in the parent's fork (server/BENCH.md).
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_server_maps_no_libgcc_s() {
    let server = ServerProcess::start(&[]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.pid().as_raw()))
        .expect("server maps");
    assert!(
        !maps.contains("libgcc_s"),
        "fork-echo-server maps libgcc_s (build.rs found no libgcc_eh.a?):\n{maps}"
    );
}
