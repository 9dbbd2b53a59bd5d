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

/// On x86_64 glibc Linux the binary is linked as a static PIE (`server/static-pie-gcc`, named as
/// the workspace's linker in `.cargo/config.toml`): no ld.so and no libc.so, 11 fewer mappings
/// for every fork to copy. Only where glibc's static archive is installed; elsewhere the link
/// falls back to a dynamic one.
#[test]
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn the_server_maps_no_shared_library_where_static_glibc_is_installed() {
    let found = std::process::Command::new("cc")
        .arg("-print-file-name=libc.a")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    if !std::path::Path::new(&found).is_absolute() {
        eprintln!("no static glibc (cc -print-file-name=libc.a: {found:?}): the dynamic fallback");
        return;
    }
    let server = ServerProcess::start(&[]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.pid().as_raw()))
        .expect("server maps");
    // The mapped file's own name, not the whole line: the clone's directory may contain ".so".
    let is_shared_library = |line: &&str| {
        line.split_whitespace()
            .nth(5)
            .and_then(|path| path.rsplit('/').next())
            .is_some_and(|name| name.contains(".so"))
    };
    let shared: Vec<&str> = maps.lines().filter(is_shared_library).collect();
    assert!(
        shared.is_empty(),
        "fork-echo-server maps shared libraries (not linked by server/static-pie-gcc?): {shared:#?}"
    );
}

/// The span `[start, end)` of the mappings of `pid`'s own executable (`/proc/PID/exe`).
fn image_span(pid: i32) -> (u64, u64) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/PID/exe");
    let exe = exe.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mut span: Option<(u64, u64)> = None;
    for line in maps.lines().filter(|l| l.ends_with(&format!(" {exe}"))) {
        let range = line.split(' ').next().expect("a maps line has a range");
        let (from, to) = range.split_once('-').expect("a range has a dash");
        let from = u64::from_str_radix(from, 16).expect("hex start");
        let to = u64::from_str_radix(to, 16).expect("hex end");
        span = Some(span.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
    }
    span.unwrap_or_else(|| panic!("no mapping of {exe} in:\n{maps}"))
}

/// The image starts at a 2 MiB boundary (`load-align.ld`), so a release image (1.1 MiB) lies
/// in one 2 MiB region in every run and a child that runs code from all over it needs one
/// page-table page for it, not two in about half the runs (server/BENCH.md). A debug image is
/// larger than 2 MiB; it is only checked for its alignment.
#[test]
#[cfg(target_os = "linux")]
fn the_image_is_loaded_at_a_2_mib_boundary() {
    const REGION: u64 = 2 << 20;
    let _lock = fork_lock();
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    assert_eq!(echo(&mut client, b"held"), b"held");
    wait_until("one live child", || server.children().len() == 1);
    for pid in [server.pid().as_raw(), server.children()[0].pid] {
        let (start, end) = image_span(pid);
        assert_eq!(
            start % REGION,
            0,
            "process {pid}'s image starts at {start:#x}"
        );
        if end - start <= REGION {
            assert_eq!(
                start / REGION,
                (end - 1) / REGION,
                "process {pid}'s image {start:#x}-{end:#x} crosses a 2 MiB boundary"
            );
        }
    }
}
