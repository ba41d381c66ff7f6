#!/usr/bin/env python3
"""Import cycles between cronmgr's top-level modules: print the module graph, exit 1 on any cycle.

Run by .ci/run (right after clippy). A top-level module is src/<name>.rs or src/<name>/; every
reference `crate::<name>` in a file of module A (a `use` line, a path inside a function body, a
doc link is skipped) is an edge A -> <name>. The house map (docs: STYLE.md "The house") wants
arrows pointing one way only: cli -> store <- runner -> executor, everyone -> model, so the graph
must have no cycle at all. Comments are ignored; `super::` stays inside a module and is not an edge.

Usage: scripts/check-cycles.py [SRC_DIR]   (default: src next to this script's parent)
"""
import os
import re
import sys

# No allow-list: every cycle fails. (If one must ever be tolerated, list it here as
# ("a", "b") with the reason and the issue that removes it.)
ALLOWED_EDGES = set()

# A name followed by `!` is a macro exported at the crate root (`crate::invalid!`), not a module.
REF = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)\b(?!\s*!)")
# `use crate::{a, b::c}` groups name several modules at once.
GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def strip_comments(text):
    """Drop // comments (doc comments included) and /* */ blocks; keep string contents."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*$", "", line) for line in text.splitlines())


def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def graph(src):
    modules = set()
    edges = {}
    for root, _dirs, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            module = top_module(src, path)
            if module in ("lib", "main"):
                continue  # the crate root lists every module; it is not one
            modules.add(module)
            with open(path, encoding="utf-8") as f:
                text = strip_comments(f.read())
            targets = set(REF.findall(text))
            for group in GROUP.findall(text):
                for item in group.split(","):
                    head = item.strip().split("::")[0].strip()
                    if re.fullmatch(r"[a-z_][a-z0-9_]*", head):
                        targets.add(head)
            for target in targets:
                if target == module:
                    continue
                edges.setdefault(module, {}).setdefault(target, set()).add(
                    os.path.relpath(path, os.path.dirname(src))
                )
    # Only modules count: a crate-root macro (`use crate::invalid;`) or item is no edge.
    for module in edges:
        edges[module] = {t: f for t, f in edges[module].items() if t in modules}
    return modules, edges


def cycles(modules, edges):
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if (v, w) in ALLOWED_EDGES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "src")
    src = os.path.normpath(src)
    modules, edges = graph(src)
    print("module graph (A -> modules A uses):")
    for module in sorted(modules):
        print(f"  {module} -> {', '.join(sorted(edges.get(module, {}))) or '(leaf)'}")
    found = cycles(modules, edges)
    if not found:
        print(f"{len(modules)} modules, 0 import cycles")
        return 0
    for component in found:
        members = set(component)
        print(f"cycle between: {', '.join(component)}", file=sys.stdout)
        for a in component:
            for b in sorted(edges.get(a, {})):
                if b in members and (a, b) not in ALLOWED_EDGES:
                    files = ", ".join(sorted(edges[a][b]))
                    print(f"  {a} -> {b}  ({files})", file=sys.stdout)
    print(f"{len(found)} import cycle(s) between top-level modules", file=sys.stdout)
    return 1


if __name__ == "__main__":
    sys.exit(main())
