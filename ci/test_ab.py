#!/usr/bin/env python3
"""Tests of ci/ab.py, the A/B routine and /proc reader the benchmark scripts share.

Usage: python3 ci/test_ab.py
"""
import os
import subprocess
import sys
import tempfile
import unittest

CI = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, CI)
import ab  # noqa: E402


class Alternation(unittest.TestCase):
    def test_variants_alternate_within_every_round_and_swap_places_between_rounds(self):
        order = [f"{r}{v}" for r, v in ab.alternate(3, ["A", "B"])]
        self.assertEqual(order, ["0A", "0B", "1B", "1A", "2A", "2B"])
        order = [f"{r}{v}" for r, v in ab.alternate(2, ["A", "B", "C"])]
        self.assertEqual(order, ["0A", "0B", "0C", "1C", "1B", "1A"])

    def test_summary_is_median_min_max_per_label_in_first_seen_order(self):
        rows = [{"v": "B", "x": 5}, {"v": "A", "x": 1}, {"v": "B", "x": 1}, {"v": "A", "x": 3},
                {"v": "B", "x": 3}, {"v": "A", "x": None}]
        s = ab.summarize(rows, "v", ["x"])
        self.assertEqual(list(s), ["B", "A"])
        self.assertEqual(s["B"]["x"], (3, 1, 5))
        self.assertEqual(s["A"]["x"], (2, 1, 3))

    def test_paired_ratios_are_b_over_a_per_pair(self):
        self.assertEqual(ab.paired_ratios([(10, 11), (20, 18), (5, 5)]), (1.0, 0.9, 1.1))
        # A pair with a missing or zero figure is left out, not counted as a ratio.
        self.assertEqual(ab.paired_ratios([(0, 3), (4, None), (2, 3)]), (1.5, 1.5, 1.5))
        self.assertEqual(ab.paired_ratios([]), (None, None, None))

    def test_simultaneous_rounds_swap_who_starts_first(self):
        self.assertEqual(ab.swapped(0, ["A", "B"]), ["A", "B"])
        self.assertEqual(ab.swapped(1, ["A", "B"]), ["B", "A"])
        self.assertEqual(ab.swapped(2, ["A", "B"]), ["A", "B"])

    def test_medians_of_a_shell_benchmarks_tsv(self):
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write("round\tvariant\tmsgs\tkinds\n1\tA\t10\t-\n1\tB\t20\tx=1\n2\tA\t30\t-\n"
                    "2\tB\t20\t-\n")
        try:
            lines = ab.medians_of_tsv(f.name, label_col=1, from_col=2)
        finally:
            os.unlink(f.name)
        self.assertEqual(lines, ["A [2 runs]: msgs 20 (10..30), kinds -",
                                 "B [2 runs]: msgs 20, kinds -"])


class ProcReaders(unittest.TestCase):
    def test_figures_of_this_process_and_machine(self):
        self.assertGreater(ab.busy_secs(), 0)
        self.assertGreaterEqual(ab.cpu_secs(os.getpid()), 0)
        self.assertGreater(ab.minor_faults(os.getpid()), 0)
        self.assertGreaterEqual(ab.runq_wait_ns(os.getpid()), 0)
        self.assertGreaterEqual(ab.listen_overflows(), 0)
        total, missing = ab.meminfo("MemTotal", "NoSuchField")
        self.assertGreater(total, 0)
        self.assertEqual(missing, 0)
        self.assertGreater(ab.kib_field(os.getpid(), "Pss"), 0)
        self.assertGreater(ab.kib_field(os.getpid(), "VmRSS"), 0)

    def test_a_process_tree_is_summed_over_the_children(self):
        child = subprocess.Popen(["sleep", "30"])
        try:
            self.assertIn(child.pid, ab.children(os.getpid()))
            self.assertGreater(ab.tree_kib(os.getpid(), "Rss"), 0)
        finally:
            child.kill()
            child.wait()
        self.assertNotIn(child.pid, ab.children(os.getpid()))

    def test_the_command_line_prints_what_the_shell_scripts_read(self):
        out = subprocess.run([sys.executable, os.path.join(CI, "ab.py"), "proc", "cpu-faults",
                              str(os.getpid())], capture_output=True, text=True, check=True)
        cpu_ms, faults = out.stdout.split()
        self.assertGreaterEqual(int(cpu_ms), 0)
        self.assertGreater(int(faults), 0)
        bad = subprocess.run([sys.executable, os.path.join(CI, "ab.py"), "proc", "nonsense"],
                             capture_output=True, text=True)
        self.assertNotEqual(bad.returncode, 0)

    def test_the_command_line_gives_the_shell_scripts_each_rounds_order(self):
        def order(rnd):
            out = subprocess.run([sys.executable, os.path.join(CI, "ab.py"), "order", str(rnd),
                                  "a=x y", "b=z"], capture_output=True, text=True, check=True)
            return out.stdout.splitlines()
        self.assertEqual(order(0), ["a=x y", "b=z"])
        self.assertEqual(order(1), ["b=z", "a=x y"])
        bad = subprocess.run([sys.executable, os.path.join(CI, "ab.py"), "order", "x", "a"],
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=1)
