//! `blocking-echo-client`: the reference client loadgen's own cost is measured against in
//! `ci/bench-loadgen.sh`. It is the rust_echo_bench kind of client and nothing more: one OS
//! thread per connection, closed loop, `write_all` then `read_exact`, every echoed byte compared
//! with what was sent. It prints one line: verified messages, messages/s and the round-trip p50,
//! p99 and max. Exit 0 when every connection ran clean, 1 when any failed or mismatched, 2 on a
//! usage or setup error. Not a replacement for loadgen: no ramp-up, warmup, report or histograms
//! beyond that line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;

/// One OS thread per connection, write_all then read_exact: the blocking reference client.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Target HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:8888")]
    addr: String,
    /// Connections (one thread each).
    #[arg(short = 'c', long, default_value_t = 100)]
    conns: usize,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// How long every connection sends, counted from when all have connected.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// A connect or echo slower than this fails the connection.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    io_timeout: Duration,
}

/// What one connection's thread did.
struct Outcome {
    messages: u64,
    latency_us: hdrhistogram::Histogram<u64>,
    error: Option<String>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.conns == 0 || args.size == 0 || args.duration.is_zero() || args.io_timeout.is_zero() {
        eprintln!(
            "blocking-echo-client: --conns, --size, --duration and --io-timeout must be above 0"
        );
        return ExitCode::from(2);
    }
    let addr = match args.addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!("blocking-echo-client: cannot resolve {}", args.addr);
            return ExitCode::from(2);
        }
    };
    // Every thread connects, then all start together; the last one through the barrier starts the
    // clock. `stop` is set once the duration has passed; threads check it between messages.
    let start = Arc::new(Barrier::new(args.conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(args.conns);
    for conn in 0..args.conns {
        let (start, run_stop) = (start.clone(), stop.clone());
        let (size, timeout) = (args.size, args.io_timeout);
        let spawned = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || connection(addr, conn as u64, size, timeout, &start, &run_stop));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("blocking-echo-client: cannot start thread {conn}: {e}");
                // The spawned threads wait at the barrier for the missing ones; exit outright.
                return ExitCode::from(2);
            }
        }
    }
    start.wait();
    let began = Instant::now();
    std::thread::sleep(args.duration);
    stop.store(true, Ordering::Relaxed);
    let mut messages = 0;
    let mut failed = 0;
    let mut first_error = None;
    let mut latency = loadgen::new_histogram();
    for t in threads {
        let outcome = t.join().unwrap_or_else(|_| Outcome {
            messages: 0,
            latency_us: loadgen::new_histogram(),
            error: Some("thread panicked".into()),
        });
        messages += outcome.messages;
        let _ = latency.add(&outcome.latency_us);
        if let Some(e) = outcome.error {
            failed += 1;
            first_error.get_or_insert(e);
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{} connections, {} failed, {} messages verified, {:.1} messages/s, rtt p50 {} us p99 {} us max {} us",
        args.conns,
        failed,
        messages,
        messages as f64 / secs,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max(),
    );
    match first_error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("blocking-echo-client: FAILED: {failed} connection(s), first: {e}");
            ExitCode::from(1)
        }
    }
}

/// Connects, waits for every other connection, then echoes until `stop`.
fn connection(
    addr: SocketAddr,
    conn: u64,
    size: usize,
    timeout: Duration,
    start: &Barrier,
    stop: &AtomicBool,
) -> Outcome {
    let mut outcome = Outcome {
        messages: 0,
        latency_us: loadgen::new_histogram(),
        error: None,
    };
    let stream = TcpStream::connect_timeout(&addr, timeout).and_then(|s| {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(s)
    });
    // Wait at the barrier even after a failed connect, so the others are not held up.
    start.wait();
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            outcome.error = Some(format!("connect: {e}"));
            return outcome;
        }
    };
    let mut sent = vec![0u8; size];
    let mut got = vec![0u8; size];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        loadgen::payload::fill(conn, seq, &mut sent);
        let t = Instant::now();
        if let Err(e) = stream
            .write_all(&sent)
            .and_then(|_| stream.read_exact(&mut got))
        {
            outcome.error = Some(format!("message {seq}: {e}"));
            return outcome;
        }
        outcome
            .latency_us
            .saturating_record(t.elapsed().as_micros() as u64);
        if got != sent {
            let at = loadgen::payload::first_difference(&sent, &got).unwrap_or(0);
            outcome.error = Some(format!("message {seq}: echoed byte {at} differs"));
            return outcome;
        }
        outcome.messages += 1;
        seq += 1;
    }
    outcome
}
