#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test in the workspace.
# Run it from anywhere; it works on the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
