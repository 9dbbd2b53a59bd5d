//! The cases of `harness check` that start a server instance of their own, because they end it
//! (SIGTERM, SIGKILL) or need a flag the shared one was not started with (`--idle-timeout`,
//! `--max-per-source`). `checks` runs them through `run_own`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::probe::case_support::{census, connect_and_echo, pid_list, Outcome};
use crate::probe::client;
use crate::subject::process::{ServerProcess, READY_TIMEOUT};
use crate::subject::spec::ServerSpec;

pub(super) fn idle_client_ended(spec: &ServerSpec) -> Outcome {
    if !spec.speaks_contract() {
        return Outcome::Skip("needs the fork echo server's --idle-timeout flag".into());
    }
    if !spec.supports_flag("--idle-timeout") {
        return Outcome::Skip("the server has no --idle-timeout flag".into());
    }
    let spec = spec.with_flag("--idle-timeout", "1");
    let server = match ServerProcess::spawn(&spec, READY_TIMEOUT) {
        Ok(server) => server,
        Err(e) => {
            return Outcome::Fail(format!(
                "could not start a server with --idle-timeout 1: {e}"
            ))
        }
    };
    let result = (|| {
        let mut stream = client::connect(server.addr())?;
        client::echo(&mut stream, b"then silence")?;
        let idle_since = Instant::now();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(6)));
        let mut buf = [0u8; 16];
        use std::io::Read;
        match stream.read(&mut buf) {
            Ok(0) => Ok(format!(
                "closed after {:.1}s idle",
                idle_since.elapsed().as_secs_f64()
            )),
            Ok(n) => Err(format!(
                "server sent {n} unexpected bytes to an idle client"
            )),
            Err(e) if client::is_timeout(&e) => Err(format!(
                "connection still open {:.1}s after going idle with --idle-timeout 1",
                idle_since.elapsed().as_secs_f64()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(format!(
                "reset after {:.1}s idle",
                idle_since.elapsed().as_secs_f64()
            )),
            Err(e) => Err(format!("read on idle connection: {e}")),
        }
    })();
    match result {
        Ok(note) => Outcome::Pass(Some(note)),
        Err(detail) => Outcome::Fail(detail),
    }
}

/// With `--max-per-source 2`, a third client from 127.0.0.2 is closed at once while a client from
/// 127.0.0.3 is still served: one address cannot take every child.
pub(super) fn per_source_limit(spec: &ServerSpec) -> Outcome {
    if !spec.speaks_contract() {
        return Outcome::Skip("needs the fork echo server's --max-per-source flag".into());
    }
    if !spec.supports_flag("--max-per-source") {
        return Outcome::Skip("the server has no --max-per-source flag".into());
    }
    let server = match ServerProcess::spawn(&spec.with_flag("--max-per-source", "2"), READY_TIMEOUT)
    {
        Ok(server) => server,
        Err(e) => {
            return Outcome::Fail(format!(
                "could not start a server with --max-per-source 2: {e}"
            ))
        }
    };
    let std::net::SocketAddr::V4(addr) = server.addr() else {
        return Outcome::Skip(format!("{} is not an IPv4 address", server.addr()));
    };
    if !addr.ip().is_loopback() {
        return Outcome::Skip(format!("{addr} is not on loopback"));
    }
    let result = (|| {
        let mut held = Vec::new();
        for i in 0..2 {
            let mut stream = connect_from([127, 0, 0, 2], addr)?;
            client::echo(&mut stream, b"within the limit")
                .map_err(|e| format!("client {} of 127.0.0.2: {e}", i + 1))?;
            held.push(stream);
        }
        let mut third = connect_from([127, 0, 0, 2], addr)?;
        let since = Instant::now();
        let _ = third.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 16];
        use std::io::Read;
        match third.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => return Err(format!("the third client of 127.0.0.2 got {n} bytes")),
            Err(e) if client::is_timeout(&e) => {
                return Err("the third client of 127.0.0.2 was kept waiting, not closed".into())
            }
            Err(e) => return Err(format!("third client of 127.0.0.2: {e}")),
        }
        let closed_after = since.elapsed();
        let mut other = connect_from([127, 0, 0, 3], addr)?;
        client::echo(&mut other, b"another address")
            .map_err(|e| format!("127.0.0.3 was not served beside 127.0.0.2: {e}"))?;
        Ok(format!(
            "third client of 127.0.0.2 closed after {:.0} ms; 127.0.0.3 served",
            closed_after.as_secs_f64() * 1000.0
        ))
    })();
    match result {
        Ok(note) => Outcome::Pass(Some(note)),
        Err(detail) => Outcome::Fail(detail),
    }
}

/// A client bound to `source` (any 127.0.0.0/8 address is local on Linux) connected to `to`.
fn connect_from(source: [u8; 4], to: std::net::SocketAddrV4) -> Result<TcpStream, String> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let from = std::net::SocketAddrV4::new(source.into(), 0);
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(from)).map_err(|e| format!("bind {from}: {e}"))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(to))
        .map_err(|e| format!("connect from {from} to {to}: {e}"))?;
    let stream = TcpStream::from(fd);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    Ok(stream)
}

/// Sends `signal` to a server holding three open sessions, then looks for anything left running
/// in its session or process group.
pub(super) fn killed_leaves_no_orphans(spec: &ServerSpec, signal: Signal) -> Outcome {
    let mut exit_wait = Duration::from_secs(15);
    let spec = if signal == Signal::SIGTERM && spec.supports_flag("--shutdown-grace") {
        exit_wait = Duration::from_secs(6);
        spec.with_flag("--shutdown-grace", "1")
    } else {
        spec.clone()
    };
    let mut server = match ServerProcess::spawn(&spec, READY_TIMEOUT) {
        Ok(server) => server,
        Err(e) => return Outcome::Fail(format!("could not start a server: {e}")),
    };
    // The sessions stay open across the signal: a server that just walks away leaves their
    // children running.
    let clients = match connect_and_echo(&server, 3) {
        Ok(clients) => clients,
        Err(e) => return Outcome::Fail(e),
    };
    let children = census(&server).map(|c| c.live.len()).unwrap_or(0);
    if let Err(e) = server.signal(signal) {
        return Outcome::Fail(format!("cannot send {signal}: {e}"));
    }
    let Some(exit) = server.wait_exit(exit_wait) else {
        return Outcome::Fail(format!(
            "the server was still running {}s after {signal}",
            exit_wait.as_secs()
        ));
    };
    let left = server.leftovers(Duration::from_secs(3));
    drop(clients);
    if !left.orphans.is_empty() {
        return Outcome::Fail(format!(
            "after {signal} the server exited ({exit}) but {} of its processes still run 3s later (orphans, pids {})",
            left.orphans.len(),
            pid_list(&left.orphans)
        ));
    }
    if signal == Signal::SIGTERM && spec.speaks_contract() && !exit.success() {
        return Outcome::Fail(format!(
            "after SIGTERM the server ended with {exit}, expected exit code 0"
        ));
    }
    Outcome::Pass(Some(format!(
        "{exit} with {children} live children; none left after it"
    )))
}
