//! `harness`: thin entry point. The hidden `__serve` subcommand runs the workspace's fork echo
//! server in this process; it is dispatched first, before clap or any thread exists, because the
//! server forks and fork is only safe in a single-threaded process. Everything else is `cli::main`.

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__serve") {
        let rest = args.iter().skip(2).skip_while(|a| *a == "--").cloned();
        let server_args = std::iter::once(OsString::from("fork-echo-server")).chain(rest);
        std::process::exit(serve(server_args));
    }
    std::process::exit(harness::cli::main(args));
}

fn serve(args: impl Iterator<Item = OsString>) -> i32 {
    fork_echo_server::main_with_args(args)
}
