//! The `loadgen` binary: everything happens in [`loadgen::cli::main`].

fn main() -> std::process::ExitCode {
    loadgen::cli::main()
}
