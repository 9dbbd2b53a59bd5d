#!/usr/bin/env python3
"""Open-loop (--rate) pacing benchmark for loadgen: how late loadgen sends, and what it costs.

Starts target/release/fork-echo-server (--port 0) and a Python delay server that sleeps 20 ms
before each echo, then runs `loadgen -c CONNS -d DURATION --rate R --json ...` against each, for
every rate and every loadgen variant, alternating variants within a round (A B, B A ...) and taking
medians over the rounds. Prints one Markdown table: corrected, uncorrected and send-lag
percentiles from the JSON report, loadgen's CPU time from getrusage (os.wait4), and, against the
delay server, when each message arrived there relative to its connection's schedule (an
independent check of the send timing).

    ci/bench-rate-pacing.py [--rounds 3] [--rates 200,2000,20000] [--conns 10] [--duration 3s]
        [--variant NAME=PATH[,ENV=VALUE...]]... [--delay-rate 200] [--no-delay]

Loopback only; every run is bounded by --duration plus loadgen's own hard deadline.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab import alternate, median  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")


ARRIVALS = []  # (connection number, monotonic ns of each read) seen by the delay server


def delay_server(delay_s):
    """A thread-per-connection echo server that sleeps `delay_s` before echoing each read, and
    records when each read arrived: an independent check of loadgen's send timing."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)

    def serve(conn, number):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                ARRIVALS.append((number, time.monotonic_ns()))
                time.sleep(delay_s)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def accept():
        number = 0
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn, number), daemon=True).start()
            number += 1

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % listener.getsockname()[1]


def start_fork_server():
    proc = subprocess.Popen(
        [os.path.join(RELEASE, "fork-echo-server"), "--port", "0", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit("fork-echo-server did not announce its address: %r" % line)
    return proc, line[len("listening on "):]


def run_loadgen(variant, target, conns, duration, rate, workdir):
    path, env_extra = variant
    out = os.path.join(workdir, "report.json")
    cmd = [path, "--addr", target, "-c", str(conns), "-d", duration, "--rate", str(rate),
           "--no-progress", "-q", "--max-error-rate", "1", "--json", out]
    env = dict(os.environ, **env_extra)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    text = proc.stdout.read().decode()
    if proc.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(cmd), proc.returncode, err))
    with open(out) as f:
        report = json.load(f)
    lat = report["latency"]
    lag = lat.get("send_lag") or {}
    unc = lat.get("echo_uncorrected") or {}
    return {
        "corr_p50": lat["echo"]["p50_us"],
        "corr_p99": lat["echo"]["p99_us"],
        "unc_p50": unc.get("p50_us", 0),
        "unc_p99": unc.get("p99_us", 0),
        "lag_p50": lag.get("p50_us", -1),
        "lag_p99": lag.get("p99_us", -1),
        "lag_max": lag.get("max_us", -1),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "msgs": report["counters"]["measured_messages"],
        "warned": "warning: send lag" in text,
        "errors": report["counters"]["messages_failed"] + report["counters"]["connections_failed"],
    }


def arrival_jitter_us(interval_s):
    """How far each scheduled message arrived after the earliest-relative one of its connection:
    arrival_k - k * interval, minus that connection's minimum (p50, p99 in us). Precise pacing
    keeps this near the server's own read-wake jitter; a late, irregular pacer spreads it out."""
    by_conn = {}
    for number, t in ARRIVALS:
        by_conn.setdefault(number, []).append(t)
    ARRIVALS.clear()
    residuals = []
    for times in by_conn.values():
        scheduled = times[1:]  # the first message is the connect-phase echo, not on the schedule
        offsets = [t - k * interval_s * 1e9 for k, t in enumerate(scheduled)]
        if offsets:
            low = min(offsets)
            residuals.extend((o - low) / 1000 for o in offsets)
    if not residuals:
        return (-1, -1)
    residuals.sort()
    return (residuals[len(residuals) // 2], residuals[int(len(residuals) * 0.99)])


def parse_variant(text):
    name, _, rest = text.partition("=")
    parts = rest.split(",")
    env = dict(p.split("=", 1) for p in parts[1:])
    return name, (parts[0], env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rates", default="200,2000,20000")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--variant", action="append", type=parse_variant)
    ap.add_argument("--delay-rate", type=int, default=200)
    ap.add_argument("--no-delay", action="store_true")
    args = ap.parse_args()
    variants = args.variant or [("loadgen", (os.path.join(RELEASE, "loadgen"), {}))]
    rates = [int(r) for r in args.rates.split(",")]

    fork, fork_addr = start_fork_server()
    cases = [("fork-echo-server", fork_addr, r) for r in rates]
    if not args.no_delay:
        cases.append(("python 20 ms delay", delay_server(0.020), args.delay_rate))
    results = {}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            # Each case's variants alternate within a round (A B, then B A in the next).
            runs = [(case, name, variant) for case in cases for name, variant in variants]
            for rnd, (case, name, variant) in alternate(args.rounds, runs):
                ARRIVALS.clear()
                r = run_loadgen(variant, case[1], args.conns, args.duration, case[2], workdir)
                r["jit_p50"], r["jit_p99"] = arrival_jitter_us(args.conns / case[2])
                results.setdefault((case[0], case[2], name), []).append(r)
                print("round %d %s rate %d %s: %s" % (rnd + 1, case[0], case[2], name, r),
                      file=sys.stderr)
    finally:
        fork.terminate()
        fork.wait()

    def fmt(us):
        return "%d us" % us if us < 1000 else "%.2f ms" % (us / 1000)

    print("| server | --rate | loadgen | corrected p50 / p99 | uncorrected p50 / p99 "
          "| send lag p50 / p99 / max | loadgen CPU s | warned | failed msgs | arrival jitter p50 / p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (server, rate, name), runs in results.items():
        med = {k: median([r[k] for r in runs]) for k in runs[0] if k not in ("warned", "errors")}
        lag = ("%s / %s / %s" % (fmt(med["lag_p50"]), fmt(med["lag_p99"]), fmt(med["lag_max"]))
               if med["lag_p50"] >= 0 else "-")
        print("| %s | %d | %s | %s / %s | %s / %s | %s | %.2f | %d/%d | %d | %s |" % (
            server, rate, name, fmt(med["corr_p50"]), fmt(med["corr_p99"]), fmt(med["unc_p50"]),
            fmt(med["unc_p99"]), lag, med["cpu_s"], sum(r["warned"] for r in runs), len(runs),
            sum(r["errors"] for r in runs),
            "%s / %s" % (fmt(med["jit_p50"]), fmt(med["jit_p99"])) if med["jit_p50"] >= 0 else "-"))


if __name__ == "__main__":
    main()
