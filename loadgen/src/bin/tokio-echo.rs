//! `tokio-echo`: the minimal tokio echo server as a binary. Prints `listening on IP:PORT` as its
//! first stdout line (flushed), then echoes until killed.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;

/// A minimal tokio echo server (the loadgen's benchmark reference).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Port; 0 picks a free one.
    #[arg(long, default_value_t = 8888)]
    port: u16,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio-echo: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::new(args.bind, args.port);
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tokio-echo: cannot listen on {addr}: {e}");
                return ExitCode::from(2);
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        let mut out = std::io::stdout().lock();
        if writeln!(out, "listening on {local}")
            .and_then(|_| out.flush())
            .is_err()
        {
            return ExitCode::from(2);
        }
        drop(out);
        loadgen::echo_server::serve(listener).await;
        ExitCode::SUCCESS
    })
}
