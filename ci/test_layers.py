#!/usr/bin/env python3
"""Tests of ci/layers.py: the real tree passes, and a temp copy of a crate with one deliberately
bad import (a layer its header does not allow, a crate it does not allow, a loop between folders)
fails, naming the layer; test code may import anything.

Usage: python3 ci/test_layers.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

CI = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(CI)
CHECKER = os.path.join(CI, "layers.py")


def run_checker(*crate_dirs):
    done = subprocess.run([sys.executable, CHECKER, *crate_dirs], capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


class LayerRules(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="layers-test-")
        self.crate = os.path.join(self.tmp, "harness")
        os.mkdir(self.crate)
        shutil.copy(os.path.join(REPO, "harness", "Cargo.toml"), self.crate)
        shutil.copytree(os.path.join(REPO, "harness", "src"), os.path.join(self.crate, "src"))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def append(self, rel, text):
        with open(os.path.join(self.crate, "src", rel), "a") as f:
            f.write(text)

    def edit(self, rel, old, new):
        path = os.path.join(self.crate, "src", rel)
        with open(path) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))

    def test_the_real_tree_passes(self):
        code, out = run_checker(*(os.path.join(REPO, c) for c in ("server", "loadgen", "harness")))
        self.assertEqual(code, 0, out)

    def test_the_unchanged_copy_passes(self):
        code, out = run_checker(self.crate)
        self.assertEqual(code, 0, out)

    def test_an_import_of_a_layer_the_header_does_not_list_fails(self):
        # render works on saved reports alone: it may not read the machine.
        self.append("render/text.rs", "\nuse crate::sys::procfs::census;\n")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 1, out)
        self.assertIn("layer `render` imports layer `sys`", out)

    def test_an_inline_path_counts_as_an_import(self):
        self.append("render/units.rs", "\nfn f() { let _ = crate::probe::client::connect; }\n")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 1, out)
        self.assertIn("layer `render` imports layer `probe`", out)

    def test_an_import_of_a_crate_the_header_does_not_list_fails(self):
        self.append("report/write.rs", "\nuse plotters::prelude::*;\n")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 1, out)
        self.assertIn("layer `report` imports crate `plotters`", out)

    def test_a_loop_between_folders_fails_even_when_the_headers_allow_it(self):
        self.append("capacity/fit.rs", "\nuse crate::report::AnyReport;\n")
        self.edit("capacity/mod.rs", "//! Layers it may import: none.",
                  "//! Layers it may import: `report`.")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 1, out)
        self.assertIn("layers import each other around a loop", out)
        self.assertIn("capacity", out)

    def test_a_header_that_lists_an_import_the_code_does_not_make_fails(self):
        self.edit("render/mod.rs", "//! Layers it may import: `report`, `capacity`.",
                  "//! Layers it may import: `report`, `capacity`, `sys`.")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 1, out)
        self.assertIn("lists layer `sys`, which the layer does not import", out)

    def test_a_layer_without_the_rule_lines_fails(self):
        self.edit("render/mod.rs", "//! Layers it may import: `report`, `capacity`.\n", "")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 1, out)
        self.assertIn("no 'Layers it may import:' line", out)

    def test_test_code_may_import_anything(self):
        self.append("render/units.rs",
                    "\n#[cfg(test)]\nmod more_tests {\n    use crate::sys::procfs;\n}\n")
        self.append("render/mod.rs", "\n#[cfg(test)]\nmod extra;\n")
        with open(os.path.join(self.crate, "src", "render", "extra.rs"), "w") as f:
            f.write("//! Test only.\nuse crate::probe::client;\nuse tempfile::TempDir;\n")
        code, out = run_checker(self.crate)
        self.assertEqual(code, 0, out)


if __name__ == "__main__":
    unittest.main(verbosity=1)
