#!/usr/bin/env python3
"""Two loadgen variants side by side: each round runs A and B at the same time, each against a
server of its own, and reports B's CPU per measured echo (getrusage of the loadgen process, its
worker processes included) and its rate, as ratios to A's.

Why at the same time: on a shared 2-CPU box, sequential A B A B rounds of `bench-loadgen.sh
compare` move 30% and more from round to round (the box's state drifts over tens of seconds), so a
few per cent between two builds of loadgen cannot be seen. Two runs side by side share that state;
the same build against itself gives ratios within a few per cent (loadgen/BENCH.md, "Side by
side"). What it measures is relative: each variant gets about half the box, so the absolute
figures are not those of a run alone. Who starts first alternates between rounds.

    ci/bench-paired.py [--rounds N] [--duration SECS] [--conns N] SERVER A_CMD B_CMD

SERVER is a server command with `{port}` in it (e.g. 'target/release/fork-echo-server --port
{port}'); A_CMD and B_CMD are loadgen command lines, to which `--addr`, `--conns`, `-d` and
`--json` are added. Not a test and no timing assertion: this only measures and summarizes.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(template):
    """(process, port) once the server accepts connections; None (and it is stopped) if not."""
    port = free_port()
    argv = shlex.split(template.replace("{port}", str(port)))
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.05)
    stop(server)
    return None


def stop(server):
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait()


def finish(proc, report_path, limit):
    """(CPU seconds, measured echoes, messages/s) of one loadgen run, or None if it failed."""
    while time.monotonic() < limit:
        pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here: keep Popen from waiting on it again
    try:
        with open(report_path) as f:
            report = json.load(f)
        echoes = report["counters"]["measured_messages"]
        return usage.ru_utime + usage.ru_stime, echoes, report["messages_per_sec"]
    except (OSError, ValueError, KeyError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("server")
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    cpu_pairs, rate_pairs = [], []
    reports = tempfile.mkdtemp(prefix="bench-paired.")
    for rnd in range(args.rounds):
        order = ab.swapped(rnd, ["A", "B"])
        servers, ports, procs = {}, {}, {}
        # Both servers listen before either load starts; one that never does stops the other.
        for name in order:
            started = start_server(args.server)
            if started is None:
                for server in servers.values():
                    stop(server)
                shutil.rmtree(reports, ignore_errors=True)
                sys.exit(f"bench-paired: the server did not listen: {args.server}")
            servers[name], ports[name] = started
        for name in order:
            cmd = shlex.split(getattr(args, name.lower())) + [
                "--addr", f"127.0.0.1:{ports[name]}", "--conns", str(args.conns),
                "-d", f"{args.duration}s", "--json", os.path.join(reports, name)]
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        limit = time.monotonic() + args.duration + 120
        runs = {name: finish(proc, os.path.join(reports, name), limit)
                for name, proc in procs.items()}
        for name in runs:
            if os.path.exists(os.path.join(reports, name)):
                os.remove(os.path.join(reports, name))
        for server in servers.values():
            stop(server)
        if None in runs.values():
            print(f"round {rnd}: a run failed ({runs}); left out", flush=True)
            continue
        per_echo = {n: cpu * 1e6 / max(echoes, 1) for n, (cpu, echoes, _) in runs.items()}
        cpu_pairs.append((per_echo["A"], per_echo["B"]))
        rate_pairs.append((runs["A"][2], runs["B"][2]))
        print(f"round {rnd}: A {per_echo['A']:.2f} us/echo {runs['A'][2]:.0f} msg/s   "
              f"B {per_echo['B']:.2f} us/echo {runs['B'][2]:.0f} msg/s   "
              f"B/A CPU per echo {per_echo['B'] / per_echo['A']:.3f}", flush=True)
        time.sleep(1)
    os.rmdir(reports)
    for what, pairs in (("CPU per echo", cpu_pairs), ("messages/s", rate_pairs)):
        med, lo, hi = ab.paired_ratios(pairs)
        if med is None:
            sys.exit("bench-paired: no round completed")
        print(f"B/A {what}: median {med:.3f} ({lo:.3f}..{hi:.3f}) over {len(pairs)} rounds")


if __name__ == "__main__":
    main()
