#!/usr/bin/env bash
# Benchmark of the load generator itself: loadgen against the minimal tokio echo server
# (tokio-echo) on loopback, 1000 connections, 64-byte messages, closed loop.
# Prints messages/s, loadgen's own CPU seconds per million messages next to the echo server's,
# and loadgen's resident memory per connection. Not a test: nothing here asserts a speed.
#
# Usage: ci/bench-loadgen.sh [DURATION]      (default 10s; env CONNS=1000 SIZE=64)
#
# ci/bench-loadgen.sh compare [DURATION]      (default 8s)
#   Issues 10 and 18: loadgen against rust_echo_bench (/work/shared/anchors/rust_echo_bench, built
#   into a temp dir as its ORIGIN says; never vendored) and blocking-echo-client (both one OS thread
#   per connection) on the careful C fork server (/work/shared/anchors/c-fork-echo.c, compiled here into a temp
#   dir), fork-echo-server and tokio-echo; 1000 connections, pinned to one CPU, and one
#   connection; A B, B A rounds, medians. See ci/bench-compare.py for the environment knobs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "compare" ]; then
    C_SOURCE="${C_FORK_ECHO:-/work/shared/anchors/c-fork-echo.c}"
    [ -r "$C_SOURCE" ] || { echo "bench-loadgen: cannot read $C_SOURCE (set C_FORK_ECHO)" >&2; exit 2; }
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    gcc -O2 -o "$WORK/c-fork-echo" "$C_SOURCE"
    REB_SOURCE="${RUST_ECHO_BENCH:-/work/shared/anchors/rust_echo_bench}"
    [ -r "$REB_SOURCE/Cargo.toml" ] || { echo "bench-loadgen: cannot read $REB_SOURCE (set RUST_ECHO_BENCH)" >&2; exit 2; }
    cargo build --release --locked --manifest-path "$REB_SOURCE/Cargo.toml" --target-dir "$WORK/reb" >&2
    cargo build --release --locked -p loadgen -p fork-echo-server --bins >&2
    echo "== versions"
    echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "rustc:    $(rustc --version)"
    echo "gcc:      $(gcc --version | head -1)"
    echo "kernel:   $(uname -sr)"
    echo "cpu:      $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "echo_bench: $(cd "$REB_SOURCE" && head -1 ORIGIN)"
    REB="$WORK/reb/release/echo_bench" DURATION="${2:-8s}" python3 ci/bench-compare.py target/release "$WORK/c-fork-echo"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

DURATION="${1:-10s}"
CONNS="${CONNS:-1000}"
SIZE="${SIZE:-64}"
OUT="$(mktemp -d)"
trap 'kill "$ECHO_PID" 2>/dev/null || true; rm -rf "$OUT"' EXIT
ECHO_PID=""

cargo build --release --locked -p loadgen --bins >&2
BIN=target/release

echo "== versions"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "loadgen:  $($BIN/loadgen --version)"
echo "rustc:    $(rustc --version)"
echo "kernel:   $(uname -sr)"
echo "cpu:      $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"

"$BIN/tokio-echo" --port 0 > "$OUT/echo.out" &
ECHO_PID=$!
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$OUT/echo.out" 2>/dev/null && break
    sleep 0.05
done
ADDR="$(sed -n 's/^listening on //p' "$OUT/echo.out" | head -1)"
[ -n "$ADDR" ] || { echo "tokio-echo did not start" >&2; exit 2; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# Baseline resident memory with a single connection, to subtract from the real run.
/usr/bin/time -v "$BIN/loadgen" --addr "$ADDR" --conns 1 --duration 1s -q --no-progress \
    > /dev/null 2> "$OUT/time1.txt"

CMD=("$BIN/loadgen" --addr "$ADDR" --conns "$CONNS" --size "$SIZE" --duration "$DURATION"
     --no-progress -q --json "$OUT/report.json")
echo
echo "== command"
echo "${CMD[*]}"
ECHO_BEFORE="$(ticks "$ECHO_PID")"
/usr/bin/time -v "${CMD[@]}" > "$OUT/quiet.txt" 2> "$OUT/time.txt"
ECHO_AFTER="$(ticks "$ECHO_PID")"
cat "$OUT/quiet.txt"

field() { grep -o "\"$1\": [0-9.e+-]*" "$OUT/report.json" | head -1 | awk '{print $2}'; }
timev() { grep "$1" "$2" | awk -F': ' '{print $2}'; }
MESSAGES="$(field messages_verified)"
RATE="$(field messages_per_sec)"
USER="$(timev 'User time' "$OUT/time.txt")"
SYS="$(timev 'System time' "$OUT/time.txt")"
RSS="$(timev 'Maximum resident set size' "$OUT/time.txt")"
RSS1="$(timev 'Maximum resident set size' "$OUT/time1.txt")"

echo
echo "== results"
awk -v m="$MESSAGES" -v rate="$RATE" -v u="$USER" -v s="$SYS" -v rss="$RSS" -v rss1="$RSS1" \
    -v conns="$CONNS" -v eb="$ECHO_BEFORE" -v ea="$ECHO_AFTER" -v tck="$CLK_TCK" 'BEGIN {
    cpu = u + s; echo_cpu = (ea - eb) / tck;
    printf "messages verified:              %d\n", m;
    printf "messages/s:                     %.0f\n", rate;
    printf "loadgen CPU:                    %.2f s (user %.2f, sys %.2f)\n", cpu, u, s;
    printf "loadgen CPU per 1M messages:    %.3f s\n", cpu / m * 1e6;
    printf "tokio-echo CPU:                 %.2f s\n", echo_cpu;
    printf "tokio-echo CPU per 1M messages: %.3f s\n", echo_cpu / m * 1e6;
    printf "loadgen CPU / echo server CPU:  %.2f\n", cpu / echo_cpu;
    printf "loadgen max RSS:                %d KiB (%d KiB with 1 connection)\n", rss, rss1;
    printf "loadgen RSS per connection:     %.1f KiB\n", (rss - rss1) / (conns - 1);
}'
