#!/usr/bin/env python3
"""The one A/B routine and the one /proc reader of the benchmark scripts in ci/.

Every benchmark here compares variants on a shared, noisy box the same way: alternate them within
each round, never all of A then all of B, so drift hits every variant alike, and reverse the
order every other round (A B, B A, A B ...), so that coming first or last in a round favours no
variant either; then report the median of each figure per variant with its range. And every one
reads the same /proc figures (busy CPU, a process's CPU and faults, run-queue wait,
ListenOverflows, meminfo, PSS and VmPTE of a process tree). Both live here once: Python scripts
import this module, shell scripts call its command line.

    ab.py medians FILE [--label-col N] [--from-col N]   medians (and min..max) of a TSV whose first
                                                        line names the columns, per label
    ab.py order ROUND VARIANT...                        round ROUND's order (0 first) of the variants,
                                                        one a line, for the shell scripts
    ab.py proc busy-ms                                  the machine's busy CPU time, ms
    ab.py proc cpu-faults PID                           utime+stime ms and minor faults of PID
    ab.py proc runq-wait-ms PID                         time PID was runnable but not running, ms
    ab.py proc listen-overflows                         TcpExt ListenOverflows (whole namespace)
    ab.py proc meminfo KEY...                           /proc/meminfo fields, KiB, in order
    ab.py proc children PID                             PIDs of PID's children, one a line
    ab.py proc tree-kib PID KEY                         sum over PID's children of smaps_rollup
                                                        (Pss, Rss...) or status (VmPTE...) KEY
Not a test and no timing assertion: this only measures and summarizes.
"""

import os
import statistics
import sys

TCK = os.sysconf("SC_CLK_TCK")


# --- alternation and medians -------------------------------------------------------------------


def alternate(rounds, variants):
    """(round, variant) pairs: every round runs every variant once, in the order of `swapped`
    (A B, B A, A B ...). A position effect is real here: in the 10,000-connect benchmark the
    server that ran first in its round made up to 1.5x the steady rate of the one after it
    (server/BENCH.md, "Issue 22 on a quiet box")."""
    for rnd in range(rounds):
        for variant in swapped(rnd, variants):
            yield rnd, variant


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rows, label, keys):
    """{label value: {key: (median, min, max)}} over `rows` (dicts), in first-seen label order."""
    out = {}
    for row in rows:
        out.setdefault(row[label], [])
        out[row[label]].append(row)
    return {
        name: {k: spread([r.get(k) for r in group]) for k in keys}
        for name, group in out.items()
    }


def spread(values):
    """(median, min, max) of the numeric values; (None, None, None) when there are none."""
    nums = [v for v in values if isinstance(v, (int, float))]
    if not nums:
        return (None, None, None)
    return (statistics.median(nums), min(nums), max(nums))


def paired_ratios(pairs):
    """(median, min, max) of B/A over pairs (a, b) measured at the same time: the ratio of two
    figures taken side by side cancels the box's drift, which sequential rounds do not."""
    return spread([b / a for a, b in pairs if a and b is not None])


def swapped(rnd, variants):
    """Round `rnd`'s order: reversed every other round, so that going first (in a simultaneous
    round, a head start on CPU and ports) favours no variant."""
    return list(variants) if rnd % 2 == 0 else list(reversed(variants))


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def medians_of_tsv(path, label_col=1, from_col=2):
    """Lines `LABEL: name median (min..max) ...` for a TSV written by a shell benchmark (columns
    counted from 0; columns before `from_col` other than the label are not figures)."""
    with open(path) as f:
        lines = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    header, body = lines[0], lines[1:]
    keys = header[from_col:]
    rows = [dict(zip(header, (r[:from_col] + [number(x) for x in r[from_col:]]))) for r in body]
    out = []
    for name, figures in summarize(rows, header[label_col], keys).items():
        parts = []
        for key, (med, lo, hi) in figures.items():
            if med is None:
                parts.append(f"{key} -")
            elif lo == hi:
                parts.append(f"{key} {med:g}")
            else:
                parts.append(f"{key} {med:g} ({lo:g}..{hi:g})")
        out.append(f"{name} [{len([r for r in rows if r[header[label_col]] == name])} runs]: "
                   + ", ".join(parts))
    return out


# --- /proc ------------------------------------------------------------------------------------


def loadavg():
    """The 1-minute load average."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def busy_secs():
    """CPU seconds all CPUs have spent busy (not idle, not iowait) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TCK


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3, `state`, is index 0)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_secs(pid, reaped_children=False):
    """utime + stime of PID in seconds; with `reaped_children`, plus cutime + cstime (a fork
    server's children count there once reaped)."""
    f = stat_fields(pid)
    last = 15 if reaped_children else 13
    return sum(int(x) for x in f[11:last]) / TCK


def minor_faults(pid):
    return int(stat_fields(pid)[7])


def runq_wait_ns(pid):
    """Time PID was runnable but not running (second field of /proc/PID/schedstat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1])


def listen_overflows():
    """TcpExt ListenOverflows of /proc/net/netstat (counts for the whole network namespace)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


def meminfo(*keys):
    """The /proc/meminfo fields `keys` (KiB), in order; 0 for one that is missing."""
    found = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            found[name] = int(rest.split()[0])
    return [found.get(k, 0) for k in keys]


def children(pid):
    """PIDs of PID's children (every thread's children file)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def kib_field(pid, key):
    """`key` (KiB) of /proc/PID/smaps_rollup (Pss, Rss, ...) or /proc/PID/status (VmPTE, ...);
    0 when the process is gone."""
    source = "status" if key.startswith("Vm") else "smaps_rollup"
    try:
        with open(f"/proc/{pid}/{source}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kib(pid, key):
    """Sum of `key` (KiB) over PID's children."""
    return sum(kib_field(c, key) for c in children(pid))


def proc_command(args):
    what, rest = args[0], args[1:]
    if what == "busy-ms":
        return [int(busy_secs() * 1000)]
    if what == "cpu-faults":
        pid = int(rest[0])
        return [int(cpu_secs(pid) * 1000), minor_faults(pid)]
    if what == "runq-wait-ms":
        return [runq_wait_ns(int(rest[0])) // 1_000_000]
    if what == "listen-overflows":
        return [listen_overflows()]
    if what == "meminfo":
        return meminfo(*rest)
    if what == "children":
        return children(int(rest[0]))
    if what == "tree-kib":
        return [tree_kib(int(rest[0]), rest[1])]
    raise SystemExit(f"ab.py proc: unknown figure {what!r}")


def main(argv):
    if len(argv) >= 2 and argv[0] == "medians":
        opts = dict(zip(argv[2::2], argv[3::2]))
        for line in medians_of_tsv(argv[1], int(opts.get("--label-col", 1)),
                                   int(opts.get("--from-col", 2))):
            print(line)
    elif len(argv) >= 2 and argv[0] == "order" and argv[1].isdigit():
        print("\n".join(swapped(int(argv[1]), argv[2:])))
    elif len(argv) >= 2 and argv[0] == "proc":
        values = proc_command(argv[1:])
        sep = "\n" if argv[1] == "children" else " "
        print(sep.join(str(v) for v in values))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
