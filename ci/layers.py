#!/usr/bin/env python3
"""Checks each crate's layer rules: what every top-level module may import, as its header says.

A layer is a top-level module of a crate (`src/x/mod.rs` with everything under `src/x/`, or
`src/x.rs`). Its file opens with a `//!` paragraph that holds two machine-read lines:

    //! Layers it may import: `report`, `capacity`.
    //! Crates it may import: `serde`, `loadgen`.

(`none.` where it may import nothing; a list may wrap onto the next `//!` lines.) This script fails
(exit 1) when a layer imports another layer or an external crate its header does not list, when a
header lists a layer or crate the code does not import (so the header stays true), when a listed
crate is not a dependency, when a layer has no such lines, and when layers import each other
around a loop (a cycle at folder level, which file-level cycle checks do not see).

Imports are found as `ci/import_cycles.py` finds them (`use` trees, inline `crate::`/`super::`
paths, names re-exported at the crate root resolved to their module), plus external crate paths
(`serde::`, `use nix;`). Test code is left out: `#[cfg(test)]` items and files declared
`#[cfg(test)] mod x;`. The crate root (`lib.rs`) is the code map and may re-export anything; every
layer may use what the root itself defines. `std`, `core` and `alloc` are always allowed.

Usage: ci/layers.py [-v] [CRATE_DIR ...]   (default: server loadgen harness; a CRATE_DIR holds
Cargo.toml and src/)
"""
import os
import re
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from import_cycles import (  # noqa: E402
    modules, paths_in, resolve, root_reexports, sccs, strip_comments, strip_tests)

ALWAYS = {"std", "core", "alloc"}
RULE = re.compile(r"^(Layers|Crates) it may import:\s*(.*)$")


def dependencies(crate_dir):
    """Names (as written in Rust) of the crate's [dependencies] (dev-dependencies are for tests)."""
    with open(os.path.join(crate_dir, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    # The key is the name code uses (a `package = ...` rename included), with `-` read as `_`.
    return {key.replace("-", "_") for key in manifest.get("dependencies", {})}


def header(path):
    """The leading `//!` lines of a file, without the `//! ` prefix."""
    out = []
    for line in open(path):
        if not line.startswith("//!"):
            break
        out.append(line[3:].strip())
    return out


def rules(path):
    """{'Layers': set|None, 'Crates': set|None} from a layer's header (None: no such line)."""
    found = {"Layers": None, "Crates": None}
    lines = header(path)
    for i, line in enumerate(lines):
        m = RULE.match(line)
        if not m:
            continue
        text = m.group(2)
        j = i + 1
        while not text.rstrip().endswith(".") and j < len(lines) and lines[j]:
            text += " " + lines[j]
            j += 1
        found[m.group(1)] = set(re.findall(r"`([\w:]+)`", text))
    return found


def test_only(mods):
    """Modules declared `#[cfg(test)] mod x;` in their parent, and everything under them."""
    skip = set()
    for name, path in mods.items():
        text = strip_comments(open(path).read())
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            skip.add(f"{name}::{m.group(1)}" if name else m.group(1))
    return {k for k in mods if any(k == s or k.startswith(s + "::") for s in skip)}


def layer_of(module):
    return module.split("::")[0]


def check_crate(crate_dir, verbose=False):
    """Problems found in one crate, as lines."""
    src = os.path.join(crate_dir, "src")
    crate = os.path.basename(os.path.abspath(crate_dir))
    deps = dependencies(crate_dir)
    mods = modules(src)
    for t in test_only(mods):
        del mods[t]
    reexports = root_reexports(mods)
    layers = sorted({layer_of(k) for k in mods if k})
    used_layers = {l: {} for l in layers}
    used_crates = {l: {} for l in layers}
    for name, path in mods.items():
        if not name:
            continue
        text = strip_tests(strip_comments(open(path).read()))
        here = layer_of(name)
        prefix = name + "::"
        children = [k[len(prefix):] for k in mods
                    if k.startswith(prefix) and "::" not in k[len(prefix):]]
        for p in paths_in(text, children):
            target = resolve(p, name, mods, reexports, path.endswith("mod.rs"))
            if target and layer_of(target) != here:
                used_layers[here].setdefault(layer_of(target), (path, target))
        for dep in deps:
            if re.search(r"(?<![\w:])%s::|\buse\s+%s\b|\bextern\s+crate\s+%s\b" % ((dep,) * 3),
                         text):
                used_crates[here].setdefault(dep, path)
    problems = []
    rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(crate_dir)))
    for layer in layers:
        file = mods.get(layer)
        if file is None:
            # A folder without mod.rs cannot happen in this layout; say so rather than guess.
            problems.append(f"{crate}: layer `{layer}` has no mod.rs or {layer}.rs")
            continue
        allowed = rules(file)
        for kind, used in (("Layers", used_layers[layer]), ("Crates", used_crates[layer])):
            if allowed[kind] is None:
                problems.append(f"{rel(file)}: no '{kind} it may import:' line in the `//!` header")
                continue
            for name, where in sorted(used.items()):
                if name not in allowed[kind]:
                    detail = (f"{rel(where[0])} uses {where[1]}" if kind == "Layers"
                              else f"{rel(where)} uses {name}::")
                    problems.append(f"{crate}: layer `{layer}` imports {kind.lower()[:-1]} "
                                    f"`{name}`, which its header does not allow ({detail})")
            for name in sorted(allowed[kind] - set(used)):
                if kind == "Crates" and name not in deps and name not in ALWAYS:
                    problems.append(f"{rel(file)}: header lists crate `{name}`, which is not a "
                                    f"dependency of {crate}")
                elif kind == "Layers" and name not in layers:
                    problems.append(f"{rel(file)}: header lists layer `{name}`, which {crate} "
                                    f"does not have")
                elif name not in ALWAYS:
                    problems.append(f"{rel(file)}: header lists {kind.lower()[:-1]} `{name}`, "
                                    f"which the layer does not import (keep the header true)")
    edges = {l: set(used_layers[l]) for l in layers}
    for cycle in (c for c in sccs(layers, edges) if len(c) > 1):
        problems.append(f"{crate}: layers import each other around a loop: " + " <-> ".join(cycle))
    if verbose:
        for layer in layers:
            print(f"  {crate}::{layer} -> layers {sorted(used_layers[layer]) or '-'}, "
                  f"crates {sorted(used_crates[layer]) or '-'}")
    return problems


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    verbose = "-v" in sys.argv[1:]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = args or [os.path.join(repo, c) for c in ("server", "loadgen", "harness")]
    problems = []
    for crate_dir in crates:
        found = check_crate(crate_dir, verbose)
        name = os.path.basename(os.path.abspath(crate_dir))
        print(f"{name}: {len(found)} layer rule violation(s)")
        problems += found
    for p in problems:
        print("  " + p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
