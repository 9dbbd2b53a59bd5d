#!/usr/bin/env bash
# How long the fork echo server's parent spends in fork() with N live children (issue 14).
# For each server binary and each N: start the server, hold N sessions open with one loadgen,
# then trace the parent's clone() calls with `perf trace` while a second loadgen opens PROBES
# more connections slowly (so the forks measured do not queue behind each other), and print the
# median and p90 time inside clone(), with the parent's anonymous memory and page-table size at
# that moment. Needs root (perf trace) and perf. Not a test: nothing here asserts a speed.
#
# Usage: ci/fork-latency.sh SERVER_BINARY... (env: LIVE="1 1000 10000" PROBES=200)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 SERVER_BINARY..." >&2; exit 2; }
command -v perf > /dev/null || { echo "$0: needs perf" >&2; exit 2; }
LIVE="${LIVE:-1 1000 10000}"
PROBES="${PROBES:-200}"
LOADGEN=target/release/loadgen
TMP="$(mktemp -d)"
SERVER_PID=""
HOLD_PID=""
cleanup() {
    [ -z "$HOLD_PID" ] || kill "$HOLD_PID" 2> /dev/null || true
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2> /dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2> /dev/null || break; sleep 0.1; done
        pkill -KILL -P "$SERVER_PID" 2> /dev/null || true
        kill -KILL "$SERVER_PID" 2> /dev/null || true
        wait "$SERVER_PID" 2> /dev/null || true
    fi
    [ -z "$HOLD_PID" ] || wait "$HOLD_PID" 2> /dev/null || true
    SERVER_PID=""
    HOLD_PID=""
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD), $(uname -sr), $(nproc) cpus"
printf "%-40s %7s %10s %10s %10s %10s %8s\n" server live clone_p50 clone_p90 rss_anon vm_pte load1
for bin in "$@"; do
    for live in $LIVE; do
        "$bin" --port 0 --max-children 12000 --backlog 4096 > "$TMP/out" 2> /dev/null &
        SERVER_PID=$!
        for _ in $(seq 1 100); do grep -q '^listening on ' "$TMP/out" && break; sleep 0.05; done
        addr="$(sed -n 's/^listening on //p' "$TMP/out")"
        # Hold `live` sessions, nearly idle (100 messages/s in all), so the CPU is free for the forks.
        timeout 120 "$LOADGEN" --addr "$addr" --conns "$live" --rate 100 -d 60s --no-progress -q \
            > /dev/null 2>&1 &
        HOLD_PID=$!
        for _ in $(seq 1 600); do
            n="$(pgrep -c -P "$SERVER_PID" || true)"
            [ "$n" -ge "$live" ] && break
            sleep 0.1
        done
        anon="$(awk '/^RssAnon/ {print $2 " kB"}' "/proc/$SERVER_PID/status")"
        pte="$(awk '/^VmPTE/ {print $2 " kB"}' "/proc/$SERVER_PID/status")"
        load1="$(cut -d' ' -f1 /proc/loadavg)"
        perf trace --no-inherit -p "$SERVER_PID" -e clone,clone3 -o "$TMP/trace" 2> /dev/null &
        trace_pid=$!
        sleep 1
        timeout 60 "$LOADGEN" --addr "$addr" --conns "$PROBES" --connect-rate 100 -d 1s \
            --no-progress -q > /dev/null 2>&1 || true
        kill -INT "$trace_pid"
        wait "$trace_pid" 2> /dev/null || true
        stats="$(grep -o '( *[0-9.]* ms)' "$TMP/trace" | tr -d '( )ms' | sort -n \
            | awk '{ v[NR] = $1 } END { if (NR) printf "%.3fms %.3fms", v[int(NR * 0.5) + 1], v[int(NR * 0.9) + 1]; else printf "- -" }')"
        read -r p50 p90 <<< "$stats"
        printf "%-40s %7s %10s %10s %10s %10s %8s\n" "$(basename "$bin")" "$live" "$p50" "$p90" \
            "$anon" "$pte" "$load1"
        cleanup
    done
done
