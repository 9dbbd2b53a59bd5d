#!/usr/bin/env bash
# The scale benchmark of issue 11: N concurrent fork sessions (default 50,000) against the release
# fork-echo-server on loopback, loadgen splitting itself over worker processes. Prints the loadgen
# figures (accept+fork rate, connect and first-echo p99, messages/s, burst wall time), the memory
# the whole load took from /proc/meminfo (MemAvailable before vs. its lowest during the run, per
# connection: server children + both socket ends + loadgen; other processes on the box move it
# too), the server's own stats line, and the box's load average. CONNECT_TIMEOUT and IO_TIMEOUT
# (default 60s) stretch the burst on a busy box; the server's idle timeout is off, since a slow
# burst would otherwise end the earliest sessions before the measured phase begins. It never
# changes a sysctl: it checks the ones the load needs and names the command when one is too low
# (README "Tuning for large bursts"). Usage: ci/bench-scale.sh [CONNS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-50000}
duration=${2:-10s}
# MESSAGES=N: N messages per connection instead of a duration (no end-of-run cut-off: every
# session ends after its last verified echo, however long 50,000 closes take on a busy box).
if [ -n "${MESSAGES:-}" ]; then length="--messages $MESSAGES"; else length="-d $duration"; fi
need_pids=$((conns + 20000))

problems=()
[ "$(cat /proc/sys/kernel/pid_max)" -ge "$need_pids" ] || problems+=("sysctl -w kernel.pid_max=$((need_pids > 131072 ? need_pids : 131072))")
[ "$(cat /proc/sys/net/core/somaxconn)" -ge 65535 ] || problems+=("sysctl -w net.core.somaxconn=65535")
[ "$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog)" -ge 65535 ] || problems+=("sysctl -w net.ipv4.tcp_max_syn_backlog=65535")
if [ "${#problems[@]}" -gt 0 ]; then
  echo "bench-scale: the kernel is not tuned for $conns sessions; as root run: ${problems[*]}" >&2
  exit 2
fi

[ -n "${NO_BUILD:-}" ] || cargo build --quiet --release --locked -p fork-echo-server -p loadgen --bins
bin=target/release
work=$(mktemp -d)
server_pid=""
sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2> /dev/null || true
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2> /dev/null && wait "$server_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/fork-echo-server" --port 0 --max-children $((conns + 1000)) --backlog 65535 --idle-timeout 0 -q \
  > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/server.out")
[ -n "$addr" ] || { echo "bench-scale: the server did not start: $(cat "$work/server.err")" >&2; exit 2; }

avail() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
before=$(avail)
( lowest=$before; while true; do a=$(avail); [ "$a" -lt "$lowest" ] && lowest=$a && echo "$lowest" > "$work/lowest"; sleep 0.5; done ) &
sampler_pid=$!
echo "bench-scale: $conns connections ($length) against $addr; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
set +e
"$bin/loadgen" --addr "$addr" --conns "$conns" $length --connect-timeout "${CONNECT_TIMEOUT:-60s}" --io-timeout "${IO_TIMEOUT:-60s}" \
  --no-progress --json "$work/load.json"
load_rc=$?
set -e
end=$(date +%s.%N)
kill -USR1 "$server_pid"
sleep 0.5
kill "$sampler_pid" 2> /dev/null || true
sampler_pid=""
lowest=$(cat "$work/lowest" 2> /dev/null || echo "$before")
echo "bench-scale: loadgen exit $load_rc, wall $(echo "$end - $start" | bc) s; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-scale: MemAvailable $before KiB before, lowest $lowest KiB: $(( (before - lowest) / 1024 )) MiB for the load, $(( (before - lowest) * 1024 / conns )) bytes per connection"
echo "bench-scale: server stats: $(grep '"event":"stats"' "$work/server.err" | tail -1)"
mkdir -p results
cp "$work/load.json" "results/bench-scale-$conns.json"
echo "bench-scale: loadgen report kept in results/bench-scale-$conns.json"
exit "$load_rc"
