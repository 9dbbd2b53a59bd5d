#!/usr/bin/env python3
"""Fails (exit 1) on a source file over 600 lines or a function over 80 lines, tests aside.

Checked: every `.rs` file under each crate's `src/` (not `tests/`, not files declared
`#[cfg(test)] mod x;`, and `#[cfg(test)]` items are left out of function lengths; a file's length
counts its lines without its `#[cfg(test)] mod tests { ... }` block). A function is measured from
its `fn` line to its closing brace, strings, chars and comments removed first so that braces in
them do not count.

Usage: ci/sizes.py [-v] [CRATE_SRC_DIR ...]   (default: server/src loadgen/src harness/src)
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from import_cycles import modules, strip_tests  # noqa: E402
from layers import test_only  # noqa: E402

MAX_FILE_LINES = 600
MAX_FN_LINES = 80


def blank_literals(text):
    """Comments, strings and char literals replaced by spaces (newlines kept, so line numbers
    hold)."""
    pattern = re.compile(
        r'//[^\n]*|/\*.*?\*/|r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|b?\'(?:\\.|[^\\\'])\'', re.S)
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def functions(text):
    """(name, first line, line count) of every fn with a body."""
    code = blank_literals(text)
    out = []
    for m in re.finditer(r"\bfn\s+(\w+)", code):
        # The body starts at the first `{` after the signature, unless a `;` ends it first.
        i = m.end()
        depth_paren = 0
        while i < len(code):
            c = code[i]
            if c in "(<[":
                depth_paren += 1
            elif c in ")>]":
                depth_paren -= 1
            elif c == ";" and depth_paren <= 0:
                i = -1
                break
            elif c == "{" and depth_paren <= 0:
                break
            i += 1
        if i < 0 or i >= len(code):
            continue
        depth, j = 0, i
        while j < len(code):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, j) + 1
        out.append((m.group(1), first, last - first + 1))
    return out


def check(src):
    problems = []
    mods = modules(src)
    skip = test_only(mods)
    for name, path in sorted(mods.items()):
        if name in skip:
            continue
        text = open(path).read()
        kept = strip_tests(blank_literals(text))
        lines = kept.count("\n") + (0 if kept.endswith("\n") else 1)
        rel = os.path.relpath(path)
        if lines > MAX_FILE_LINES:
            problems.append(f"{rel}: {lines} lines (tests aside), over {MAX_FILE_LINES}")
        # Tests blanked out (braces matched on the literal-free text, lines kept by padding).
        code = blank_literals(text)
        no_tests = strip_tests(code, keep_lines=True)
        for fn, first, count in functions(no_tests):
            if count > MAX_FN_LINES:
                problems.append(f"{rel}:{first}: fn {fn} is {count} lines, over {MAX_FN_LINES}")
    return problems


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    srcs = args or [os.path.join(repo, c, "src") for c in ("server", "loadgen", "harness")]
    problems = []
    for src in srcs:
        problems += check(src)
    for p in problems:
        print(p)
    print(f"{len(problems)} file(s) or function(s) over the limits "
          f"({MAX_FILE_LINES} lines a file, {MAX_FN_LINES} a function, tests aside)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
