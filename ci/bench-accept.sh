#!/usr/bin/env bash
# Connect-burst benchmark of the fork echo server's acceptor (issue 14): a burst of CONNS clients
# (loadgen's default: each echoes as soon as it is connected, then a closed-loop steady phase),
# against two or more server variants in the SAME run, alternating A B, B A ... for ROUNDS rounds,
# then the median of each figure per variant. Not a test: nothing here asserts a speed.
#
# Usage: ci/bench-accept.sh [-r ROUNDS] [-c CONNS] [-d DURATION] LABEL=COMMAND [LABEL=COMMAND...]
#   COMMAND is a server command line without --port (split on spaces), e.g.
#     base=/tmp/fes-base
#     nice10='target/release/fork-echo-server --child-nice 10'
#     fifo='chrt -f -R 1 target/release/fork-echo-server'      (the command must exec the server)
#   Every variant gets `--port 0 --max-children 12000 --backlog 4096` appended unless
#   SERVER_FLAGS says otherwise. Defaults: 3 rounds, 10000 connections, 3s steady phase.
#   Raw rows go to stdout as they finish, then one median table; RAW=FILE also keeps the rows.
#
# Per run it records: accept+fork/s (established / seconds until every connection echoed once,
# the harness's definition), connect p99, first-echo p99, failed connections + messages, steady
# messages/s, the kernel's ListenOverflows delta, and the server parent's own CPU time, minor
# faults and run-queue wait (/proc/PID/stat and /proc/PID/schedstat: how long it was runnable but
# not running), with the 1-minute load average when the run started and `others_cpu_pct`: the
# share of the machine's CPU time during the run that neither this server tree nor loadgen used
# (/proc/stat busy time minus the shell's `times` for its reaped children), i.e. how much other
# work (builds of other engineers) competed with the run. The load average alone cannot say: the
# burst's own thousands of runnable children raise it.
#
# Bounded: each loadgen run is capped by `timeout`, each server gets SIGTERM then SIGKILL, and the
# trap kills the current server's leftover children by parent pid.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
CONNS=10000
DURATION=3s
while getopts "r:c:d:" opt; do
    case "$opt" in
        r) ROUNDS="$OPTARG" ;;
        c) CONNS="$OPTARG" ;;
        d) DURATION="$OPTARG" ;;
        *) echo "usage: $0 [-r ROUNDS] [-c CONNS] [-d DURATION] LABEL=COMMAND..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-c CONNS] [-d DURATION] LABEL=COMMAND..." >&2; exit 2; }
SERVER_FLAGS="${SERVER_FLAGS:---max-children 12000 --backlog 4096}"
LOADGEN="${LOADGEN:-target/release/loadgen}"
command -v jq > /dev/null || { echo "$0: needs jq" >&2; exit 2; }
[ -x "$LOADGEN" ] || { echo "$0: $LOADGEN not built (cargo build --release --locked)" >&2; exit 2; }

TMP="$(mktemp -d)"
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2> /dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2> /dev/null || break
        sleep 0.1
    done
    # Children die with the parent (PR_SET_PDEATHSIG); these are belt and braces.
    pkill -KILL -P "$SERVER_PID" 2> /dev/null || true
    kill -KILL "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# /proc is read by ci/ab.py, the one reader the benchmarks share.
AB="python3 ci/ab.py"
listen_overflows() { $AB proc listen-overflows; }
# Busy CPU time of the whole machine in ms (not idle, not iowait).
machine_busy_ms() { $AB proc busy-ms; }
# CPU time of this shell's reaped children (server trees and loadgens) in ms. `times` must run
# in this shell itself: in a $(...) subshell it would report the subshell's children, none.
reaped_children_ms_to() {
    times > "$TMP/times"
    tail -1 "$TMP/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60000 + a[2] * 1000 } print int(t) }' > "$1"
}
now_ms() { date +%s%3N; }
# utime+stime (ms) and minflt of a pid.
cpu_and_faults() { $AB proc cpu-faults "$1"; }

echo "== versions"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:    $(git rev-parse --short HEAD 2> /dev/null || echo unknown)"
echo "kernel:    $(uname -sr); cpus $(nproc); somaxconn $(cat /proc/sys/net/core/somaxconn); pid_max $(cat /proc/sys/kernel/pid_max); autogroup $(cat /proc/sys/kernel/sched_autogroup_enabled 2> /dev/null || echo -)"
echo "loadgen:   $LOADGEN --conns $CONNS -d $DURATION; server flags: $SERVER_FLAGS"
for variant in "$@"; do echo "variant:   $variant"; done
echo
HEADER="round\tvariant\tload1\tothers_cpu_pct\taccept_fork_per_s\tconnect_p99_ms\tfirst_echo_p99_ms\tfailed\tmsgs_per_s\tlisten_overflows\tparent_cpu_ms\tparent_minflt\tparent_runq_wait_ms\terror_kinds"
printf "%b\n" "$HEADER" | tee "$TMP/rows.tsv"

for round in $(seq 1 "$ROUNDS"); do
    # A B, then B A: going first in a round favours no variant (ci/ab.py).
    mapfile -t ORDER < <($AB order "$((round - 1))" "$@")
    for variant in "${ORDER[@]}"; do
        label="${variant%%=*}"
        read -r -a cmd <<< "${variant#*=}"
        read -r -a flags <<< "$SERVER_FLAGS"
        : > "$TMP/out"
        busy0="$(machine_busy_ms)"
        reaped_children_ms_to "$TMP/ours0"
        t0="$(now_ms)"
        "${cmd[@]}" --port 0 "${flags[@]}" > "$TMP/out" 2> "$TMP/err" &
        SERVER_PID=$!
        for _ in $(seq 1 200); do
            grep -q '^listening on ' "$TMP/out" 2> /dev/null && break
            sleep 0.05
        done
        addr="$(sed -n 's/^listening on //p' "$TMP/out" | head -1)"
        [ -n "$addr" ] || { echo "$label did not start: $(head -3 "$TMP/err")" >&2; exit 2; }
        load1="$(cut -d' ' -f1 /proc/loadavg)"
        read -r cpu0 flt0 < <(cpu_and_faults "$SERVER_PID")
        wait0="$($AB proc runq-wait-ms "$SERVER_PID")"
        lo0="$(listen_overflows)"
        timeout 120 "$LOADGEN" --addr "$addr" --conns "$CONNS" -d "$DURATION" --no-progress -q \
            --json "$TMP/report.json" > /dev/null 2>&1 || true
        read -r cpu1 flt1 < <(cpu_and_faults "$SERVER_PID")
        wait1="$($AB proc runq-wait-ms "$SERVER_PID")"
        lo1="$(listen_overflows)"
        stop_server
        reaped_children_ms_to "$TMP/ours1"
        others="$(awk -v b="$(( $(machine_busy_ms) - busy0 ))" -v o="$(( $(cat "$TMP/ours1") - $(cat "$TMP/ours0") ))" \
            -v w="$(( $(now_ms) - t0 ))" -v n="$(nproc)" 'BEGIN { x = (b - o) / (w * n) * 100; printf "%.0f", x < 0 ? 0 : x }')"
        if [ -s "$TMP/report.json" ]; then
            fig="$(jq -r '[
                (if (.all_first_echo_secs // 0) > 0
                 then (.counters.connections_established / .all_first_echo_secs | floor) else "-" end),
                (.latency.connect.p99_us / 1000), (.latency.first_echo.p99_us / 1000),
                (.counters.connections_failed + .counters.messages_failed),
                (.messages_per_sec | floor)] | @tsv' "$TMP/report.json")"
            kinds="$(jq -r '[(.errors.connect, .errors.session) | to_entries[]
                | select((.value | type) == "number" and .value > 0) | "\(.key)=\(.value)"]
                | if length == 0 then "-" else join(",") end' "$TMP/report.json")"
        else
            fig="-\t-\t-\t-\t-"
            kinds="no-report"
        fi
        rm -f "$TMP/report.json"
        printf "%s\t%s\t%s\t%s\t%b\t%s\t%s\t%s\t%s\t%s\n" "$round" "$label" "$load1" "$others" "$fig" \
            "$((lo1 - lo0))" "$((cpu1 - cpu0))" "$((flt1 - flt0))" \
            "$((wait1 - wait0))" "$kinds" | tee -a "$TMP/rows.tsv"
    done
done
[ -z "${RAW:-}" ] || cp "$TMP/rows.tsv" "$RAW"

echo
echo "== medians of $ROUNDS rounds (min..max), per variant"
# The last column (error kinds) is text, shown as '-'.
$AB medians "$TMP/rows.tsv" --label-col 1 --from-col 2
