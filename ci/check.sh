#!/usr/bin/env bash
# The project's test command: formatting, lints, import cycles and layer rules, the README's
# `cargo run` commands, and every test in the workspace. Run it from anywhere; it works on the
# repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== no import cycles between the modules of a crate"
python3 ci/import_cycles.py
echo "== each layer imports only what its header lists; no loop between layers"
python3 ci/layers.py
python3 ci/test_layers.py
echo "== no source file over 600 lines, no function over 80 (tests aside)"
python3 ci/sizes.py
python3 ci/test_sizes.py
echo "== the benchmarks' shared A/B routine and /proc reader"
python3 ci/test_ab.py
echo "== the README's cargo run commands resolve to one binary each"
for package in fork-echo-server loadgen harness; do
  cargo run --quiet --locked -p "$package" -- --help > /dev/null
done
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole workspace (cargo prints one per test binary, the last of which
# is a doc-test run with nothing in it).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
echo "== several load hosts in network namespaces (root only; skipped with one line otherwise)"
bash ci/netns-test.sh
echo "== deploy/ manifests against the Kubernetes schemas (offline)"
bash ci/validate-deploy.sh
