#!/usr/bin/env bash
# Several "hosts" on one machine, over real network stacks: one server namespace and three load
# namespaces (each with its own host name), joined by veth pairs to a bridge that lives in a
# namespace of its own, so no traffic and no link ever touches the caller's namespace. Runs
# fork-echo-server in the server namespace and one loadgen per load namespace, all told to start
# measuring at the same --start-at; merges the three reports and checks that the merged counts
# equal the sum of the parts and the server's own stats line (accepted, reaped), and that the
# measured phases began together. Needs root and `ip netns`; without them it says so in one line
# and exits 0. Every namespace it creates (names carry this shell's pid, so concurrent runs do not
# collide) is removed on exit, failure included. Addresses: 10.203.0.0/24, private to these
# namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "netns-test: skipped (needs root to create network namespaces)"
  exit 0
fi
if ! ip netns list > /dev/null 2>&1 || ! command -v unshare > /dev/null; then
  echo "netns-test: skipped (no \`ip netns\` or unshare on this machine)"
  exit 0
fi

LOADS=3
CONNS=40
MESSAGES=200
PORT=7000
SERVER_IP=10.203.0.1
tag="fe$$"
bridge_ns="${tag}-br"
server_ns="${tag}-srv"
work=$(mktemp -d)
pids=()
namespaces=()

cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2> /dev/null || true
  done
  for ns in "${namespaces[@]}"; do
    ip netns pids "$ns" 2> /dev/null | xargs -r kill -KILL 2> /dev/null || true
    ip netns del "$ns" 2> /dev/null || true
  done
  rm -rf "$work"
  if [ "$rc" != 0 ]; then
    echo "netns-test: FAILED (everything it created is removed)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

fail() {
  echo "netns-test: $*" >&2
  exit 1
}

cargo build --quiet --locked -p fork-echo-server -p loadgen --bins
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

add_ns() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# The switch: a bridge in its own namespace.
add_ns "$bridge_ns"
ip -n "$bridge_ns" link add br0 type bridge
ip -n "$bridge_ns" link set br0 up

# Plug namespace $1 into the bridge as eth0 with address $2.
plug() {
  local ns=$1 addr=$2 port=$3
  ip -n "$bridge_ns" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$bridge_ns" link set "$port" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

add_ns "$server_ns"
plug "$server_ns" "$SERVER_IP" p-srv
for i in $(seq 1 "$LOADS"); do
  add_ns "${tag}-l$i"
  plug "${tag}-l$i" "10.203.0.$((10 + i))" "p-l$i"
done

ip netns exec "$server_ns" "$bin/fork-echo-server" --bind "$SERVER_IP" --port "$PORT" \
  > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/server.out" 2> /dev/null && break
  sleep 0.1
done
grep -q "listening on $SERVER_IP:$PORT" "$work/server.out" || fail "server did not start: $(cat "$work/server.err")"

# Connect now, measure together: a start time a few seconds ahead for every load host.
start_at=$(($(date +%s) + 4))
for i in $(seq 1 "$LOADS"); do
  ip netns exec "${tag}-l$i" unshare --uts sh -c \
    'hostname "$1"; shift; exec "$@"' sh "load-host-$i" \
    timeout 120 "$bin/loadgen" --addr "$SERVER_IP:$PORT" -c "$CONNS" --messages "$MESSAGES" \
    --start-at "$start_at" --run-id "netns-$$" --worker-index "$i" --no-progress -q \
    --json "$work/load-$i.json" > "$work/load-$i.out" 2>&1 &
  pids+=($!)
done
load_failed=0
for pid in "${pids[@]:1}"; do
  wait "$pid" || load_failed=1
done
[ "$load_failed" = 0 ] || fail "a loadgen failed: $(cat "$work"/load-*.out)"

"$bin/loadgen" merge "$work"/load-*.json --json "$work/merged.json" > "$work/merged.txt" \
  || fail "merge failed: $(cat "$work/merged.txt")"

kill -TERM "$server_pid"
wait "$server_pid" || fail "server exited with an error: $(tail -3 "$work/server.err")"
grep '"event":"stats"' "$work/server.err" | tail -1 > "$work/server-stats.json" \
  || fail "no stats line from the server"

python3 - "$work" "$LOADS" "$CONNS" "$MESSAGES" "$start_at" << 'EOF'
import json, sys
work, loads, conns, messages, start_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
parts = [json.load(open(f"{work}/load-{i}.json")) for i in range(1, loads + 1)]
merged = json.load(open(f"{work}/merged.json"))
server = json.load(open(f"{work}/server-stats.json"))
problems = []
def same(what, got, want):
    if got != want:
        problems.append(f"{what}: {got} != {want}")
for key in ["connections_attempted", "connections_established", "messages_sent", "messages_verified",
            "bytes_sent", "bytes_received"]:
    same(f"merged {key} vs sum of parts", merged["counters"][key], sum(p["counters"][key] for p in parts))
c = merged["counters"]
same("established", c["connections_established"], loads * conns)
same("verified", c["messages_verified"], loads * conns * messages)
same("failed connections", c["connections_failed"], 0)
same("server accepted vs merged established", server["accepted"], c["connections_established"])
same("server reaped vs accepted", sum(server["reaped"].values()), server["accepted"])
same("merged workers", merged["merge"]["workers"], loads)
same("merged hosts", merged["merge"]["hosts"], loads)
hosts = sorted(p["identity"]["host"] for p in parts)
same("host names", hosts, [f"load-host-{i}" for i in range(1, loads + 1)])
for p in parts:
    start = p["identity"]["measured_start_unix_secs"]
    if not (start_at - 0.05 <= start <= start_at + 1.0):
        problems.append(f"{p['identity']['host']} measured from {start}, not at --start-at {start_at}")
if problems:
    print("netns-test: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"netns-test: ok: {loads} load namespaces x {conns} connections x {messages} messages; "
      f"merged {c['connections_established']} established = server accepted {server['accepted']} = reaped; "
      f"{c['messages_verified']} echoes verified")
EOF
