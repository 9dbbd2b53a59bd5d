//! The `fork-echo-server` binary: everything lives in the library so the harness can start the
//! same server in-process; this file only hands the command line over and exits with its code.

fn main() {
    std::process::exit(fork_echo_server::main_with_args(std::env::args_os()));
}
