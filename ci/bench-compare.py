#!/usr/bin/env python3
"""The loadgen-vs-blocking-client comparison of ci/bench-loadgen.sh (issue 10).

Runs clients against process-per-connection servers (the careful C fork server, fork-echo-server)
and tokio-echo, alternating the clients round by round (A B, B A ...), and prints a table of medians.
Per run it records verified messages/s, the client's CPU per message from getrusage (wait4, via
/usr/bin/time) cross-checked with perf's task-clock, the server's CPU (its own plus its reaped
children's, from /proc/PID/stat), context switches and migrations of the client, echo p50 and max,
and the load average. Not a test: nothing here asserts a speed.

The references are blocking-echo-client (ours) and, when REB is set to its binary, rust_echo_bench
(../shared/anchors/rust_echo_bench, built by ci/bench-loadgen.sh compare into a temp dir): one OS
thread per connection, blocking write then read, no verification. It prints only its request
count, so its rate is responses / duration as it reports it (its duration includes its own
connect phase) and it has no latency figures.

Usage (normally through ci/bench-loadgen.sh compare): bench-compare.py BIN_DIR C_SERVER
Environment: REB (path of the echo_bench binary; unset = not run), DURATION (8s), CONNS (1000), SIZE (64), ROUNDS (3),
  SERVERS ("c-fork fork-echo-server tokio-echo"), SCENARIOS ("conns pinned single"; also "split"),
  VARIANTS: loadgen variants, "name=args;name=args", where args may start with ENV=VALUE words
  (default: just "loadgen=").
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab import alternate, busy_secs, children, cpu_secs, loadavg, median  # noqa: E402

BIN, C_SERVER = sys.argv[1], sys.argv[2]
DURATION = os.environ.get("DURATION", "8s")
CONNS = int(os.environ.get("CONNS", "1000"))
SIZE = int(os.environ.get("SIZE", "64"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SERVERS = os.environ.get("SERVERS", "c-fork fork-echo-server tokio-echo").split()
SCENARIOS = os.environ.get("SCENARIOS", "conns pinned single").split()
VARIANTS = [
    (v.split("=", 1)[0], shlex.split(v.split("=", 1)[1]))
    for v in os.environ.get("VARIANTS", "loadgen=").split(";")
    if v.strip()
]
# Pinned scenario: client and server share this one CPU. Split scenario: the server on PIN_CPU,
# the client on SPLIT_CPU (loadgen kept out of the server's way).
PIN_CPU = os.environ.get("PIN_CPU", "1")
SPLIT_CPU = os.environ.get("SPLIT_CPU", "0")
TCK = os.sysconf("SC_CLK_TCK")
REB = os.environ.get("REB", "")
# The reference the ratio columns divide by.
BASE = "reb" if REB else "blocking"
TMP = tempfile.mkdtemp(prefix="bench-compare.")


def server_ticks(pid):
    """utime + stime + cutime + cstime: a fork server's reaped children count in the last two."""
    return cpu_secs(pid, reaped_children=True)


def start_server(kind, pin):
    """Starts a server (on PIN_CPU when `pin`); returns the process and its address."""
    cmd = {
        "c-fork": [C_SERVER, "--port", "0"],
        "fork-echo-server": [f"{BIN}/fork-echo-server", "--port", "0", "-q"],
        "tokio-echo": [f"{BIN}/tokio-echo", "--port", "0"],
    }[kind]
    if pin:
        cmd = ["taskset", "-c", PIN_CPU] + cmd
    # Own session: the C server's SIGTERM handler signals its whole process group.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        sys.exit(f"bench-compare: {kind} did not announce its address: {line!r}")
    return proc, m.group(1)


def wait_children_gone(pid, deadline=10.0):
    """Waits until the server has no children left from the previous run (bounded)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and children(pid):
        time.sleep(0.05)


def run_client(name, argv, server, conns, pin_cpu):
    """Runs one client under perf stat (outer) and /usr/bin/time (inner, getrusage of the client)."""
    tfile, pfile = f"{TMP}/time", f"{TMP}/perf"
    env = dict(os.environ)
    while argv and re.match(r"^[A-Z_]+=", argv[0]):
        key, value = argv[0].split("=", 1)
        env[key] = value
        argv = argv[1:]
    cmd = argv
    if pin_cpu is not None:
        cmd = ["taskset", "-c", pin_cpu] + cmd
    cmd = (["perf", "stat", "-x,", "-o", pfile, "-e", "task-clock,context-switches,cpu-migrations",
            "--", "/usr/bin/time", "-o", tfile, "-f", "%U %S"] + cmd)
    wait_children_gone(server.pid)
    load_before = loadavg()
    s0, b0, w0 = server_ticks(server.pid), busy_secs(), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    w1 = time.monotonic()
    # A child's CPU reaches the server's cutime/cstime only once it is reaped.
    wait_children_gone(server.pid)
    s1, b1 = server_ticks(server.pid), busy_secs()
    with open(tfile) as f:
        user, sys_ = (float(x) for x in f.read().split()[-2:])
    perf = {}
    with open(pfile) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 3 and parts[2]:
                try:
                    perf[parts[2]] = float(parts[0])
                except ValueError:
                    pass
    r = {"client": name, "rc": out.returncode, "load": (load_before + loadavg()) / 2,
         "cpu": user + sys_, "task_clock": perf.get("task-clock", 0) / 1000,
         "cs": perf.get("context-switches", 0), "migr": perf.get("cpu-migrations", 0),
         "server_cpu": s1 - s0, "wall": w1 - w0}
    # CPU the rest of the box used meanwhile (other engineers' builds and benchmarks): the honest
    # noise figure here, since the load average also counts this benchmark's own 1000 children.
    r["others"] = max(0.0, (b1 - b0) - r["cpu"] - r["server_cpu"]) / (time.monotonic() - w0)
    if name == "reb":
        m = re.search(r"Responses: (\d+)", out.stdout)
        if not m:
            r.update(msgs=0, rate=0, p50=0, max=0, err=out.stderr.strip()[-200:])
            return r
        r.update(msgs=int(m.group(1)), rate=int(m.group(1)) / duration_secs(), p50=0, max=0)
    elif name == "blocking":
        m = re.search(r"(\d+) messages verified, ([\d.]+) messages/s, rtt p50 (\d+) us p99 (\d+) us max (\d+) us",
                      out.stdout)
        if not m:
            r.update(msgs=0, rate=0, p50=0, max=0, err=out.stderr.strip()[-200:])
            return r
        r.update(msgs=int(m.group(1)), rate=float(m.group(2)), p50=int(m.group(3)), max=int(m.group(5)))
    else:
        try:
            with open(f"{TMP}/report.json") as f:
                rep = json.load(f)
            os.unlink(f"{TMP}/report.json")
        except (OSError, ValueError):
            r.update(msgs=0, rate=0, p50=0, max=0, err=out.stderr.strip()[-200:])
            return r
        echo = rep["latency"]["echo"]

        r.update(msgs=rep["counters"]["messages_verified"], rate=rep["messages_per_sec"],
                 p50=echo["p50_us"], max=echo.get("max_us", 0),
                 failed=rep["counters"]["messages_failed"] + rep["counters"]["sessions_failed"])
    return r


def duration_secs():
    """DURATION in whole seconds, as rust_echo_bench's -t takes it (8s, 8)."""
    return int(DURATION.rstrip("s"))


def clients(addr, conns):
    if REB:
        yield "reb", [REB, "-a", addr, "-c", str(conns), "-l", str(SIZE), "-t", str(duration_secs())]
    yield "blocking", [f"{BIN}/blocking-echo-client", "--addr", addr, "-c", str(conns), "-s",
                       str(SIZE), "-d", DURATION]
    for name, extra in VARIANTS:
        env = [a for a in extra if re.match(r"^[A-Z_]+=", a)]
        extra = [a for a in extra if not re.match(r"^[A-Z_]+=", a)]
        yield name, env + [f"{BIN}/loadgen", "--addr", addr, "-c", str(conns), "-s", str(SIZE), "-d",
                     DURATION, "-q", "--no-progress", "--json", f"{TMP}/report.json"] + extra


def med(rows, key):
    return median([r[key] for r in rows]) or 0


def main():
    print(f"duration {DURATION}, size {SIZE} B, rounds {ROUNDS}, variants "
          + ", ".join(f"{n}=[{' '.join(a)}]" for n, a in VARIANTS))
    for scenario in SCENARIOS:
        pin = scenario in ("pinned", "split")
        client_cpu = {"pinned": PIN_CPU, "split": SPLIT_CPU}.get(scenario)
        conns = 1 if scenario == "single" else CONNS
        servers = SERVERS if scenario == "conns" else [s for s in SERVERS if s != "tokio-echo"][:1]
        for kind in servers:
            server, addr = start_server(kind, pin)
            try:
                results = []
                for rnd, (name, argv) in alternate(ROUNDS, list(clients(addr, conns))):
                    r = run_client(name, argv, server, conns, client_cpu)
                    r["round"] = rnd
                    results.append(r)
                    print(f"  [{scenario} {kind} round {rnd}] {name:>10}: {r['rate']:9.0f} msg/s "
                          f"cpu {r['cpu']:6.2f}s (task-clock {r['task_clock']:6.2f}s) "
                          f"{1e6 * r['cpu'] / max(r['msgs'], 1):6.2f} us/msg, server "
                          f"{1e6 * r['server_cpu'] / max(r['msgs'], 1):6.2f} us/msg, "
                          f"cs {r['cs']:.0f} migr {r['migr']:.0f}, p50 {r['p50']} us max {r['max']} us, "
                          f"load {r['load']:.1f}, others {r['others']:.2f} CPUs, rc {r['rc']}{' ' + r['err'] if 'err' in r else ''}",
                          flush=True)
            finally:
                server.terminate()
                server.wait()
            table(scenario, kind, conns, results)


def table(scenario, kind, conns, results):
    where = {"pinned": f", client and server on CPU {PIN_CPU}",
             "split": f", server on CPU {PIN_CPU}, client on CPU {SPLIT_CPU}"}.get(scenario, "")
    print(f"\n### {scenario}: {kind}, {conns} connection(s){where}")
    print("| client | msg/s (median) | CPU us/msg (getrusage) | task-clock us/msg | server CPU us/msg "
          f"| ctx switches/msg | echo p50 us | echo max us (worst) | x {BASE} msg/s | x {BASE} CPU "
          "| other CPUs busy | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    names = (["reb"] if REB else []) + ["blocking"] + [n for n, _ in VARIANTS]
    base = [r for r in results if r["client"] == BASE]
    for name in names:
        rows = [r for r in results if r["client"] == name]
        for r in rows:
            m = max(r["msgs"], 1)
            r["cpu_msg"], r["tc_msg"] = 1e6 * r["cpu"] / m, 1e6 * r["task_clock"] / m
            r["srv_msg"], r["cs_msg"] = 1e6 * r["server_cpu"] / m, r["cs"] / m
        rate, cpu = med(rows, "rate"), med(rows, "cpu_msg")
        brate, bcpu = med(base, "rate"), med(base, "cpu_msg")
        print(f"| {name} | {rate:.0f} | {cpu:.2f} | {med(rows, 'tc_msg'):.2f} | {med(rows, 'srv_msg'):.2f} "
              f"| {med(rows, 'cs_msg'):.3f} | {med(rows, 'p50'):.0f} | {max(r['max'] for r in rows)} "
              f"| {rate / brate if brate else 0:.2f} | {cpu / bcpu if bcpu else 0:.2f} "
              f"| {min(r['others'] for r in rows):.2f}-{max(r['others'] for r in rows):.2f} "
              f"| {min(r['load'] for r in rows):.1f}-{max(r['load'] for r in rows):.1f} |")
    print(flush=True)


if __name__ == "__main__":
    main()
