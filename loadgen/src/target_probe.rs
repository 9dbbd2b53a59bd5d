//! What kind of server is at the target, when it listens on this host: does each connection get
//! a process of its own (a fork-per-connection server), or is it served inside a process that
//! listens (an event loop, a thread pool)? `--engine auto` picks the engine by it (`cli`): the
//! threads engine measures a fork-per-connection server, the tokio engine an in-process one at
//! 2.4x the rate and under half the CPU per message (loadgen/BENCH.md, "`--engine auto`").
//!
//! The probe is one connection and one echoed byte. `/proc/net/tcp` and `tcp6` say which socket
//! is the listener and which one the server accepted for the probe; `/proc/PID/fd` says which
//! processes hold each. A connection held by a process that did not hold the listener before the
//! probe connected was handed to a new process: fork (or spawn) per connection.
//!
//! Layers it may import: none.
//! Crates it may import: none.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What the probe found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerModel {
    /// The probe's connection is held by a process that did not hold the listener.
    ProcessPerConnection {
        listener_pids: BTreeSet<u32>,
        connection_pids: BTreeSet<u32>,
    },
    /// The probe's connection is held only by processes that hold the listener.
    InProcess { pids: BTreeSet<u32> },
    /// Not decided, and why.
    Unknown(String),
}

impl ServerModel {
    /// One clause for the line that says which engine `auto` chose.
    pub fn describe(&self) -> String {
        let list = |pids: &BTreeSet<u32>| {
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            ServerModel::ProcessPerConnection {
                listener_pids,
                connection_pids,
            } => format!(
                "a process per connection: the probe's connection is served by pid {}, the \
                 listener is pid {}",
                list(connection_pids),
                list(listener_pids)
            ),
            ServerModel::InProcess { pids } => format!(
                "connections are served inside the listening process (pid {}): an event loop \
                 or threads",
                list(pids)
            ),
            ServerModel::Unknown(why) => format!("not probed ({why})"),
        }
    }
}

/// TCP states as `/proc/net/tcp` prints them.
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// One row of `/proc/net/tcp` or `tcp6`, IPv4-mapped addresses as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpRow {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    inode: u64,
}

/// Probes the server at `addr`, within `timeout` in all.
pub fn probe(addr: SocketAddr, timeout: Duration) -> ServerModel {
    let deadline = Instant::now() + timeout;
    let addr = unmapped(addr);
    let listeners: HashSet<u64> = tcp_rows()
        .iter()
        .filter(|r| r.state == LISTEN && r.inode != 0 && r.local.port() == addr.port())
        .filter(|r| r.local.ip() == addr.ip() || r.local.ip().is_unspecified())
        .map(|r| r.inode)
        .collect();
    if listeners.is_empty() {
        return ServerModel::Unknown(format!("{addr} is not a listener on this host"));
    }
    let Some(held) = holders(&listeners, deadline) else {
        return ServerModel::Unknown("looking through /proc took too long".into());
    };
    let listener_pids: BTreeSet<u32> = held.into_values().flatten().collect();
    if listener_pids.is_empty() {
        return ServerModel::Unknown(
            "no permission to see which process listens (/proc/PID/fd)".into(),
        );
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let mut stream = match TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1))) {
        Ok(s) => s,
        Err(e) => return ServerModel::Unknown(format!("the probe could not connect: {e}")),
    };
    let Ok(local) = stream.local_addr().map(unmapped) else {
        return ServerModel::Unknown("the probe's socket has no address".into());
    };
    // One byte there and back: once it is echoed, the process serving the connection holds it
    // (a fork server's parent may still hold its copy too, or may not have forked yet before).
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
    let mut byte = [0u8; 1];
    let _ = stream
        .write_all(b"\n")
        .and_then(|_| stream.read_exact(&mut byte));
    let accepted: HashSet<u64> = tcp_rows()
        .iter()
        .filter(|r| r.state == ESTABLISHED && r.inode != 0)
        .filter(|r| r.remote == local && r.local.port() == addr.port())
        .map(|r| r.inode)
        .collect();
    let connection_pids: BTreeSet<u32> = match holders(&accepted, deadline) {
        Some(held) => held.into_values().flatten().collect(),
        None => BTreeSet::new(),
    };
    drop(stream);
    let model = classify(listener_pids, connection_pids);
    if let ServerModel::ProcessPerConnection {
        listener_pids,
        connection_pids,
    } = &model
    {
        // A server at its process limit (`--max-children N` with `--conns N`) would turn the
        // run's last connection away while the probe's process was still alive or unreaped.
        let forked: Vec<u32> = connection_pids.difference(listener_pids).copied().collect();
        wait_until_reaped(&forked, Instant::now() + PROBE_EXIT_WAIT);
    }
    model
}

/// How long the probe waits for the process that served it to end and be reaped.
const PROBE_EXIT_WAIT: Duration = Duration::from_secs(1);

/// Waits (bounded by `deadline`) until none of `pids` exists any more: an exited process that
/// its parent has not reaped yet keeps its `/proc/PID` until it is reaped. Whether they did is
/// returned.
fn wait_until_reaped(pids: &[u32], deadline: Instant) -> bool {
    loop {
        if pids
            .iter()
            .all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn classify(listener_pids: BTreeSet<u32>, connection_pids: BTreeSet<u32>) -> ServerModel {
    if connection_pids.is_empty() {
        ServerModel::Unknown("cannot see which process holds the probe's connection".into())
    } else if connection_pids.is_subset(&listener_pids) {
        ServerModel::InProcess {
            pids: connection_pids,
        }
    } else {
        ServerModel::ProcessPerConnection {
            listener_pids,
            connection_pids,
        }
    }
}

/// Which processes hold a socket of `inodes` (`socket:[INODE]` links under `/proc/PID/fd`);
/// `None` if looking took past `deadline`. Processes whose descriptors cannot be read are
/// skipped.
fn holders(inodes: &HashSet<u64>, deadline: Instant) -> Option<HashMap<u64, Vec<u32>>> {
    let mut found: HashMap<u64, Vec<u32>> = HashMap::new();
    if inodes.is_empty() {
        return Some(found);
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Some(found);
    };
    for entry in procs.flatten() {
        if Instant::now() > deadline {
            return None;
        }
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i)) {
                found.entry(inode).or_default().push(pid);
            }
        }
    }
    Some(found)
}

/// Every row of `/proc/net/tcp` and `/proc/net/tcp6` this network namespace shows.
fn tcp_rows() -> Vec<TcpRow> {
    let mut rows = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(path) {
            rows.extend(text.lines().skip(1).filter_map(|l| parse_row(l, v6)));
        }
    }
    rows
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`
fn parse_row(line: &str, v6: bool) -> Option<TcpRow> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(TcpRow {
        local: parse_endpoint(fields.get(1)?, v6)?,
        remote: parse_endpoint(fields.get(2)?, v6)?,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// `0100007F:1F90`: the address as the kernel's 32-bit words in host order (little-endian
/// here), the port in hex.
fn parse_endpoint(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_le_bytes())
    };
    let ip = if v6 {
        if ip.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        if ip.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(unmapped(SocketAddr::new(ip, port)))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack socket's view of IPv4) as IPv4.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_both_files_parse() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0";
        let row = parse_row(v4, false).expect("v4 row");
        assert_eq!(row.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(row.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!((row.state, row.inode), (LISTEN, 41234));
        // ::1 port 8080, and a dual-stack socket's IPv4-mapped peer 127.0.0.1:40000.
        let v6 = "   1: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1";
        let row = parse_row(v6, true).expect("v6 row");
        assert_eq!(row.local, "[::1]:8080".parse().unwrap());
        assert_eq!(row.remote, "127.0.0.1:40000".parse().unwrap());
        assert_eq!((row.state, row.inode), (ESTABLISHED, 777));
        assert_eq!(
            parse_row("  sl  local_address rem_address   st", false),
            None
        );
    }

    #[test]
    fn a_connection_in_a_new_process_is_process_per_connection() {
        let set = |p: &[u32]| p.iter().copied().collect::<BTreeSet<u32>>();
        assert!(matches!(
            classify(set(&[10]), set(&[10, 11])),
            ServerModel::ProcessPerConnection { .. }
        ));
        // The tutorial server's children keep the listener too: still a new process.
        assert!(matches!(
            classify(set(&[10, 11]), set(&[12])),
            ServerModel::ProcessPerConnection { .. }
        ));
        assert_eq!(
            classify(set(&[10]), set(&[10])),
            ServerModel::InProcess { pids: set(&[10]) }
        );
        assert!(matches!(
            classify(set(&[10]), set(&[])),
            ServerModel::Unknown(_)
        ));
    }

    #[test]
    fn waiting_for_the_probes_process_ends_once_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        // Alive: not reaped within the wait.
        assert!(!wait_until_reaped(
            &[pid],
            Instant::now() + Duration::from_millis(20)
        ));
        // Exited but not reaped (a zombie keeps /proc/PID): still not.
        let zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !zombie() {
            assert!(Instant::now() < until, "sleep 0.2 never exited");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!wait_until_reaped(
            &[pid],
            Instant::now() + Duration::from_millis(20)
        ));
        child.wait().expect("reap");
        assert!(wait_until_reaped(
            &[pid],
            Instant::now() + Duration::from_secs(5)
        ));
    }

    #[test]
    fn a_port_nobody_listens_on_is_not_probed() {
        // Bound, never listening: nothing in /proc/net/tcp has it in LISTEN.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("addr");
        let model = probe(addr, Duration::from_secs(2));
        assert!(
            matches!(&model, ServerModel::Unknown(why) if why.contains("not a listener")),
            "{model:?}"
        );
    }

    #[test]
    fn a_listener_in_this_process_is_in_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut byte = [0u8; 1];
            if conn.read_exact(&mut byte).is_ok() {
                let _ = conn.write_all(&byte);
            }
            // Held until the probe has looked and closed its side.
            let _ = conn.read(&mut byte);
        });
        let model = probe(addr, Duration::from_secs(5));
        server.join().expect("server thread");
        assert_eq!(
            model,
            ServerModel::InProcess {
                pids: BTreeSet::from([std::process::id()])
            }
        );
    }
}
