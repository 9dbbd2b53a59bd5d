#!/usr/bin/env python3
"""Counts import cycles between the modules of each workspace crate.

A module is one source file (`a/b.rs` or `a/b/mod.rs` is module `a::b`). An edge A -> B is any path
in A that names B: `use crate::b::...`, `crate::b::x` written inline, `super::...` (resolved against
A's parent), and names re-exported at the crate root (`pub use b::{X, Y}` in lib.rs) resolved to the
module that defines them. `#[cfg(test)] mod tests` blocks are left out: tests may reach anywhere.
A cycle is a strongly connected component of more than one module. Prints each crate's modules
with their line counts and edges (with -v), then the cycles; exits 1 if any.

Usage: ci/import_cycles.py [-v] [CRATE_SRC_DIR ...]   (default: server/src loadgen/src harness/src)
"""
import os
import re
import sys


def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[0] == "bin":
                continue
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel == ["lib"]:
                rel = []
            elif rel == ["main"]:
                # The binary is a crate of its own; it reaches the library by name, not `crate::`.
                continue
            mods["::".join(rel)] = path
    return mods


def strip_tests(text, keep_lines=False):
    """Drops `#[cfg(test)]` items (a `mod tests { ... }` block) by brace matching; with
    `keep_lines` they are blanked instead, newlines kept, so line numbers still hold."""
    out, i = [], 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = text.find("{", j)
        semi = text.find(";", j)
        end = len(text)
        if semi != -1 and (k == -1 or semi < k):
            end = semi + 1
        else:
            depth = 0
            for m in range(k, len(text)):
                if text[m] == "{":
                    depth += 1
                elif text[m] == "}":
                    depth -= 1
                    if depth == 0:
                        end = m + 1
                        break
        if keep_lines:
            out.append(re.sub(r"[^\n]", " ", text[j:end]))
        i = end


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix = tree[:start]
                inner = tree[start + 1 : i]
                parts, d, last = [], 0, 0
                for k, c in enumerate(inner):
                    if c == "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    elif c == "," and d == 0:
                        parts.append(inner[last:k])
                        last = k + 1
                parts.append(inner[last:])
                res = []
                for p in parts:
                    if p:
                        res += expand_use(prefix + p)
                return res
    return [tree.split(" as ")[0]]


def paths_in(text, children):
    """Every `crate::...`/`super::...`/`self::...` path, and paths through a child module of this
    one (`check::CheckReport` in `report/mod.rs`), `use` trees expanded."""
    found = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        found += expand_use(m.group(1).split(" as ")[0] if "{" not in m.group(1) else m.group(1))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    found += re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", body)
    if children:
        found += re.findall(r"(?<![\w:])((?:%s)(?:::\w+)+)" % "|".join(children), body)
    keep = ("crate", "super", "self") + tuple(children)
    return [p if p.split("::")[0] in ("crate", "super", "self") else "self::" + p
            for p in found if p.split("::")[0] in keep]


def root_reexports(mods):
    """Names `pub use`d at the crate root -> the module they come from."""
    names = {}
    root = mods.get("")
    if not root:
        return names
    text = strip_comments(open(root).read())
    for m in re.finditer(r"\bpub\s+use\s+([^;]+);", text):
        for p in expand_use(m.group(1)):
            segs = p.split("::")
            if segs[0] in ("crate", "self"):
                segs = segs[1:]
            if segs and segs[0] in {k.split("::")[0] for k in mods if k}:
                names[segs[-1]] = segs[0]
    return names


def resolve(path, here, mods, reexports, is_dir_mod):
    segs = path.split("::")
    if segs[0] == "crate":
        segs = segs[1:]
    else:
        base = here.split("::") if here else []
        # In `a/b.rs` (module a::b) `super` is a; in `a/b/mod.rs` also a.
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        segs = base + segs
    best = None
    for n in range(len(segs), 0, -1):
        cand = "::".join(segs[:n])
        if cand in mods:
            best = cand
            break
    if best is None and segs and segs[0] in reexports and len(segs) == 1:
        best = reexports[segs[0]]
    if best is None and len(segs) >= 1 and segs[0] in reexports:
        best = reexports[segs[0]]
    return best


def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    verbose = "-v" in sys.argv[1:]
    here_dir = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here_dir)
    srcs = args or [os.path.join(repo, c, "src") for c in ("server", "loadgen", "harness")]
    total = 0
    for src in srcs:
        mods = modules(src)
        reexports = root_reexports(mods)
        edges = {}
        for name, path in mods.items():
            text = strip_tests(strip_comments(open(path).read()))
            is_dir = path.endswith("mod.rs")
            prefix = name + "::" if name else ""
            children = [k[len(prefix):] for k in mods
                        if k.startswith(prefix) and k != name and "::" not in k[len(prefix):]]
            for p in paths_in(text, children):
                target = resolve(p, name, mods, reexports, is_dir)
                if target is not None and target != name and target != "":
                    edges.setdefault(name, set()).add(target)
        cycles = [c for c in sccs(mods.keys(), edges) if len(c) > 1]
        crate = os.path.basename(os.path.dirname(os.path.abspath(src)))
        print(f"{crate}: {len(mods)} modules, {sum(len(v) for v in edges.values())} edges, "
              f"{len(cycles)} import cycle(s)")
        if verbose:
            for name in sorted(mods):
                print(f"  {name or '(root)'} -> {', '.join(sorted(edges.get(name, ()))) or '-'}")
        for c in cycles:
            print("  cycle: " + " <-> ".join(c))
        total += len(cycles)
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
