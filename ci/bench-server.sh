#!/usr/bin/env bash
# Benchmark of fork-echo-server against the careful C reference server
# (shared/anchors/c-fork-echo.c, compiled here with gcc -O2 into a temp dir): a burst of CONNS
# simultaneous connects each echoing one SIZE-byte message (time until all are echoed, connect
# p99, accept+fork rate), then CONNS sessions held open (PSS per child, the children's page
# tables and kernel stacks, the kernel's slab growth). Servers alternate, A B then B A
# (ci/ab.py); medians of ROUNDS. Not a test: nothing here asserts a speed. Where `perf` is
# installed (and allowed), the burst also records the parent's own CPU time and page faults
# (`perf stat --no-inherit`: accept, fork and reap of CONNS clients, not the children's work).
#
# Usage: ci/bench-server.sh
#   env: ROUNDS=3 CONNS=1000 SIZE=32 HOLD_CONNECT_RATE=500 (connects/s of the held sessions)
#        C_SRC=path/to/c-fork-echo.c   (default: the first shared/anchors found above the repo)
#        SERVERS='label=CMD ARGS;label=CMD ARGS'  (default: fork-echo-server and careful-C;
#                 labels without spaces; @C@ is the compiled C reference; CMD gets --port 0
#                 appended and must print "listening on IP:PORT" first)
# Loopback only; bounded: every loadgen run has a deadline, every wait a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-1000}"
SIZE="${SIZE:-32}"
HOLD_CONNECT_RATE="${HOLD_CONNECT_RATE:-500}"
# PERF=0 turns the parent's CPU/fault figures off; they need perf and permission to attach.
PERF="${PERF:-1}"
if [ "$PERF" = 0 ] || ! command -v perf > /dev/null; then PERF=""; fi
OUT="$(mktemp -d)"
SERVER_PID=""
HOLD_PID=""
cleanup() {
    [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

if [ -z "${C_SRC:-}" ]; then
    for candidate in ../shared/anchors ../../shared/anchors /work/shared/anchors; do
        if [ -f "$candidate/c-fork-echo.c" ]; then
            C_SRC="$candidate/c-fork-echo.c"
            break
        fi
    done
fi
[ -f "${C_SRC:-}" ] || { echo "c-fork-echo.c not found; set C_SRC" >&2; exit 2; }
command -v gcc > /dev/null || { echo "gcc is needed for the C reference" >&2; exit 2; }
command -v jq > /dev/null || { echo "jq is needed to read loadgen's report" >&2; exit 2; }

cargo build --release --locked -p fork-echo-server -p loadgen --bins >&2
gcc -O2 -o "$OUT/c-fork-echo" "$C_SRC"
BIN=target/release
LOADGEN="$BIN/loadgen"

SERVERS="${SERVERS:-fork-echo-server=$BIN/fork-echo-server;careful-C=@C@}"
# @C@ stands for the C reference compiled above.
SERVERS="${SERVERS//@C@/$OUT/c-fork-echo}"
IFS=';' read -r -a SERVER_LIST <<< "$SERVERS"

echo "== versions"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "rustc:    $(rustc --version)"
echo "gcc:      $(gcc --version | head -1)"
echo "C source: $C_SRC ($(sha256sum "$C_SRC" | cut -c1-12))"
echo "kernel:   $(uname -sr)"
echo "cpu:      $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "somaxconn: $(cat /proc/sys/net/core/somaxconn)"
echo "loadavg:  $(cat /proc/loadavg)"
echo "servers:"
for entry in "${SERVER_LIST[@]}"; do echo "  ${entry%%=*}: ${entry#*=} --port 0"; done

start_server() { # CMD...: starts it, sets SERVER_PID and ADDR
    # Its own session: the C reference ends with kill(0, SIGTERM), its whole process group.
    setsid "$@" --port 0 > "$OUT/server.out" 2> "$OUT/server.err" &
    SERVER_PID=$!
    ADDR=""
    for _ in $(seq 1 200); do
        ADDR="$(sed -n 's/^listening on //p' "$OUT/server.out" | head -1)"
        [ -n "$ADDR" ] && return 0
        sleep 0.05
    done
    echo "server did not start: $*" >&2
    exit 2
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# /proc is read by ci/ab.py, the one reader the benchmarks share.
AB="python3 ci/ab.py"
children() { $AB proc children "$SERVER_PID"; }

kernel_kib() { # PageTables + KernelStack, and Slab, from /proc/meminfo
    $AB proc meminfo PageTables KernelStack Slab | awk '{print $1 + $2, $3}'
}

measure() { # LABEL CMD...: one round of one server; appends a line to $OUT/results
    local label="$1"
    shift
    start_server "$@"
    local load1
    load1="$(cut -d' ' -f1 /proc/loadavg)"
    # 1. The burst: every connect at once, one echo each, then close.
    rm -f "$OUT/burst.json" "$OUT/perf.csv"
    local perf_pid=""
    if [ -n "$PERF" ]; then
        perf stat --no-inherit -x, -e task-clock,page-faults -o "$OUT/perf.csv" -p "$SERVER_PID" \
            > /dev/null 2>&1 &
        perf_pid=$!
        sleep 0.2 # perf attaches before the first connect
    fi
    "$LOADGEN" --addr "$ADDR" --conns "$CONNS" --messages 1 --size "$SIZE" \
        --connect-timeout 10s --io-timeout 10s --deadline 60s \
        --no-progress -q --json "$OUT/burst.json" > /dev/null 2>&1 || true
    local echoed all p99 verified
    verified="$(jq '.counters.first_echoes' "$OUT/burst.json" 2>/dev/null || echo 0)"
    all="$(jq '.all_first_echo_secs // -1' "$OUT/burst.json" 2>/dev/null || echo -1)"
    p99="$(jq '.latency.connect.p99_us' "$OUT/burst.json" 2>/dev/null || echo -1)"
    # Let the burst's children exit before the memory phase.
    for _ in $(seq 1 200); do [ -z "$(children)" ] && break; sleep 0.05; done
    local cpu_ms=-1 faults=-1
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        cpu_ms="$(awk -F, '$3 == "task-clock" || $3 ~ /^task-clock/ {print $1}' "$OUT/perf.csv" 2>/dev/null | head -1)"
        faults="$(awk -F, '$3 ~ /^page-faults/ {print $1}' "$OUT/perf.csv" 2>/dev/null | head -1)"
        cpu_ms="${cpu_ms:--1}"
        faults="${faults:--1}"
    fi
    # 2. CONNS sessions held open (one slow message stream keeps them alive), arriving at
    # HOLD_CONNECT_RATE a second as clients of a real server do: spread over many turns of the
    # accept loop, every page the parent writes between forks shows in the children's PSS.
    read -r k0 s0 < <(kernel_kib)
    "$LOADGEN" --addr "$ADDR" --conns "$CONNS" --connect-rate "$HOLD_CONNECT_RATE" \
        --duration 30s --rate 200 --size "$SIZE" \
        --connect-timeout 10s --deadline 60s --no-progress -q > /dev/null 2>&1 &
    HOLD_PID=$!
    local live=0
    for _ in $(seq 1 400); do
        live="$(children | wc -l)"
        [ "$live" -ge "$CONNS" ] && break
        sleep 0.05
    done
    sleep 1
    read -r k1 s1 < <(kernel_kib)
    local pss pte
    live="$(children | grep -c . || true)"
    # PSS from smaps_rollup; page tables once more per process from status (VmPTE), as a check
    # on the meminfo delta.
    pss="$($AB proc tree-kib "$SERVER_PID" Pss)"
    pte="$($AB proc tree-kib "$SERVER_PID" VmPTE)"
    kill "$HOLD_PID" 2>/dev/null || true
    wait "$HOLD_PID" 2>/dev/null || true
    HOLD_PID=""
    stop_server
    awk -v l="$label" -v a="$all" -v p="$p99" -v c="$CONNS" -v n="$live" -v pss="$pss" \
        -v pte="$pte" -v k="$((k1 - k0))" -v s="$((s1 - s0))" -v cpu="$cpu_ms" -v f="$faults" 'BEGIN {
        printf "%s\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\n", l, a * 1000, p / 1000,
            (a > 0 ? c / a : 0), (n ? pss / n : 0), (n ? pte / n : 0), (n ? k / n : 0),
            (n ? s / n : 0), (cpu >= 0 ? cpu : "-"), (f >= 0 ? sprintf("%.2f", f / c) : "-") }' >> "$OUT/results.tsv"
    awk -v l="$label" -v v="$verified" -v a="$all" -v p="$p99" -v n="$live" -v pss="$pss" \
        -v pte="$pte" -v k="$((k1 - k0))" -v s="$((s1 - s0))" -v c="$cpu_ms" -v f="$faults" -v conns="$CONNS" -v load1="$load1" 'BEGIN {
        printf "  %-28s echoed %5d  all echoed %7.1f ms  connect p99 %6.1f ms  live %5d  PSS/child %5.1f KiB  VmPTE/child %4.1f KiB  PT+stack/child %5.1f KiB  slab/conn %5.1f KiB  parent CPU %6.1f ms  faults/accept %5.2f  load1 %s\n",
            l, v, a * 1000, p / 1000, n, (n ? pss / n : 0), (n ? pte / n : 0), (n ? k / n : 0), (n ? s / n : 0), c, (f >= 0 ? f / conns : -1), load1 }'
}

echo
echo "== rounds (servers alternate; CONNS=$CONNS SIZE=$SIZE HOLD_CONNECT_RATE=$HOLD_CONNECT_RATE)"
printf "server\tall_echoed_ms\tconnect_p99_ms\taccept_fork_per_s\tpss_per_child_kib\tvmpte_per_child_kib\tpt_stack_per_child_kib\tslab_per_conn_kib\tparent_cpu_ms\tfaults_per_accept\n" > "$OUT/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round"
    # A B, then B A: going first in a round favours no server (ci/ab.py).
    mapfile -t ORDER < <($AB order "$((round - 1))" "${SERVER_LIST[@]}")
    for entry in "${ORDER[@]}"; do
        read -r -a cmd <<< "${entry#*=}"
        measure "${entry%%=*}" "${cmd[@]}"
    done
done

echo
echo "== medians of $ROUNDS rounds (min..max), per server"
$AB medians "$OUT/results.tsv" --label-col 0 --from-col 1
echo
echo "loadavg at the end: $(cat /proc/loadavg)"
