#!/usr/bin/env python3
"""Tests of ci/sizes.py: the real tree passes; a function over 80 lines or a file over 600 lines
fails, while tests, braces in strings and comments do not count.

Usage: python3 ci/test_sizes.py
"""
import os
import subprocess
import sys
import tempfile
import unittest

CI = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(CI)


def check(*srcs):
    done = subprocess.run([sys.executable, os.path.join(CI, "sizes.py"), *srcs],
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def fn(name, body_lines):
    return f"fn {name}() {{\n" + "    let _ = 1;\n" * body_lines + "}\n"


class Sizes(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.src = os.path.join(self.tmp.name, "src")
        os.mkdir(self.src)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, rel, text):
        with open(os.path.join(self.src, rel), "w") as f:
            f.write(text)

    def test_the_real_tree_passes(self):
        code, out = check()
        self.assertEqual(code, 0, out)

    def test_a_function_of_81_lines_fails_and_80_passes(self):
        self.write("lib.rs", "//! Lib.\n" + fn("short", 78) + fn("long", 79))
        code, out = check(self.src)
        self.assertEqual(code, 1, out)
        self.assertIn("fn long is 81 lines", out)
        self.assertNotIn("fn short", out)

    def test_a_file_over_600_lines_fails_but_its_tests_do_not_count(self):
        body = "//! Lib.\n" + "".join(fn(f"f{i}", 3) for i in range(100))  # 501 lines
        tests = "#[cfg(test)]\nmod tests {\n" + fn("t", 300) + "}\n"
        self.write("lib.rs", body + tests)
        code, out = check(self.src)
        self.assertEqual(code, 0, out)
        self.write("lib.rs", body + "".join(fn(f"g{i}", 3) for i in range(25)))
        code, out = check(self.src)
        self.assertEqual(code, 1, out)
        self.assertIn("626 lines", out)

    def test_braces_in_strings_and_comments_do_not_end_a_function(self):
        text = 'fn tricky() {\n    let _ = "}";\n    // }\n    let _ = \'}\';\n' + \
            "    let _ = 1;\n" * 80 + "}\n"
        self.write("lib.rs", "//! Lib.\n" + text)
        code, out = check(self.src)
        self.assertEqual(code, 1, out)
        self.assertIn("fn tricky is 85 lines", out)

    def test_a_test_only_file_does_not_count(self):
        self.write("lib.rs", "//! Lib.\n#[cfg(test)]\nmod tests;\n")
        self.write("tests.rs", "//! Tests.\n" + fn("huge", 200))
        code, out = check(self.src)
        self.assertEqual(code, 0, out)


if __name__ == "__main__":
    unittest.main(verbosity=1)
