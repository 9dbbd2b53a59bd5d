//! Links the unwinder statically (`libgcc_eh.a`) instead of `libgcc_s.so`, so the shipped
//! `target/release/fork-echo-server` maps one shared library fewer.
//!
//! Every fork copies the parent's mappings, and libgcc_s is five of them (33 -> 28; the careful C
//! server has 25), and copying mappings and their page tables is most of what a fork costs the
//! parent (server/BENCH.md, "Without libgcc_s": in one run the parent's CPU per 1,000
//! accept+forks fell from 78.2 to 69.0 ms against C's 76.7; in two busier ones all three were
//! within each other's spread). rustc always passes `-lgcc_s`, but after `--as-needed`:
//! with the unwinder's symbols already defined by the static archive (which comes first on the
//! link line, as this crate's native library), nothing is left for libgcc_s to provide and the
//! linker leaves it out. This is what `gcc -static-libgcc` does for a C program.
//!
//! Only where that archive exists (Linux, glibc, a gcc toolchain); anywhere else the build is
//! left as it was, with a warning.
//!
//! On Linux it also links the binary with `load-align.ld`, which makes the kernel load its image
//! at a 2 MiB boundary, so every child's page tables need one page for the whole image instead
//! of two in about half the runs (the script says why; server/BENCH.md has the figures).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        link_load_align();
    }
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    match static_unwinder() {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            // Not bundled into the rlib: each final link (the server, its tests) names it.
            println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
        }
        None => println!(
            "cargo:warning=libgcc_eh.a not found (cc -print-file-name): fork-echo-server links \
             libgcc_s dynamically, 5 more mappings copied per fork (server/BENCH.md)"
        ),
    }
}

/// Links the binary (not the tests, not the library's users) with `load-align.ld`. By
/// `-Xlinker`, so a checkout path with a comma in it reaches the linker whole.
fn link_load_align() {
    println!("cargo:rerun-if-changed=load-align.ld");
    let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") else {
        println!("cargo:warning=CARGO_MANIFEST_DIR is not set: the image is not 2 MiB-aligned");
        return;
    };
    let script = Path::new(&dir).join("load-align.ld");
    for arg in ["-Xlinker", "-T", "-Xlinker"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins={}", script.display());
}

/// The directory of the C compiler's `libgcc_eh.a`, if it has one.
fn static_unwinder() -> Option<PathBuf> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    // A compiler that does not know the file prints its bare name back.
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !out.status.success() || !path.is_absolute() || !path.is_file() {
        return None;
    }
    path.parent().map(PathBuf::from)
}
